package branch

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"cbs/compute/cuda"
	"cbs/data"
	"cbs/model"
)

// Common holds the tables a train config and a sweep config share. Each config embeds it and
// adds its own tables ([train] for one run; [branches] and [analysis] for a sweep).
type Common struct {
	Experiment Experiment        `toml:"experiment"`
	Model      *ModelInit        `toml:"model"`
	Parent     ParentConfig      `toml:"parent"`
	Objective  ObjectiveConfig   `toml:"objective"`
	Data       data.SourceConfig `toml:"data"`
	Optimizer  Optim             `toml:"optimizer"`
	Schedule   Schedule          `toml:"schedule"`
	Eval       EvalConfig        `toml:"eval"`
	Run        RunConfig         `toml:"run"`
}

// Experiment is the [experiment] table.
type Experiment struct {
	Name string `toml:"name"`
	Seed uint64 `toml:"seed"`
	Out  string `toml:"out"`
}

// ParentConfig is the [parent] table.
type ParentConfig struct {
	Checkpoint     string `toml:"checkpoint"`
	OptimizerState string `toml:"optimizer_state"`
}

// ObjectiveConfig is the [objective] table.
type ObjectiveConfig struct {
	Name    string  `toml:"name"`
	MaskEps float64 `toml:"mask_eps"`
}

// EvalConfig is the [eval] table.
type EvalConfig struct {
	Every  Tokens `toml:"every"`
	Tokens Tokens `toml:"tokens"`
	// WeightAverage, when > 0, evaluates an exponential moving average of the weights with this
	// time constant in tokens instead of the weights themselves (see Spec.EvalEWA).
	WeightAverage Tokens `toml:"weight_average,omitzero"`
}

// RunConfig is the [run] table: how a run executes, never what it computes.
type RunConfig struct {
	Executor string `toml:"executor"`
	Parallel int    `toml:"parallel"`
	Device   string `toml:"device"`
	Threads  int    `toml:"threads"`
}

// DefaultCommon returns the defaults of the shared tables.
func DefaultCommon() Common {
	return Common{
		Parent:    ParentConfig{OptimizerState: "keep"},
		Objective: ObjectiveConfig{Name: model.AR, MaskEps: data.DefaultMaskEps},
		Optimizer: DefaultOptimizer(),
		Schedule:  Schedule{Shape: ShapeCosine, MinLRRatio: 0.1},
		Run:       RunConfig{Executor: "local", Parallel: 1, Device: "cpu"},
	}
}

// DefaultOptimizer returns the [optimizer] defaults.
func DefaultOptimizer() Optim {
	d := model.DefaultOptim()
	return Optim{LR: d.LR, Betas: [2]float64{d.Beta1, d.Beta2}, Eps: d.Eps, WeightDecay: d.WeightDecay, Clip: d.Clip, DecayEmbedding: true}
}

// ConfigError is a rejected config: bad usage, exit code 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// ConfigErrorf builds a ConfigError.
func ConfigErrorf(format string, args ...any) error {
	return &ConfigError{fmt.Errorf(format, args...)}
}

// DecodeStrict decodes TOML text into v (which holds its defaults) and refuses unknown keys,
// listing them with their full paths and the tables allowed.
func DecodeStrict(path, text string, v any, tables string) error {
	_, err := DecodeStrictMeta(path, text, v, tables)
	return err
}

// DecodeStrictMeta is DecodeStrict that also returns the keys the text defines, for defaults
// that depend on whether a key was given rather than on its value.
func DecodeStrictMeta(path, text string, v any, tables string) (toml.MetaData, error) {
	md, err := toml.Decode(text, v)
	if err != nil {
		return md, ConfigErrorf("%s: %v", path, err)
	}
	// TOML integers are signed and the seed is not: -3 would become 2^64 - 3 without a word.
	var seed struct {
		Experiment struct {
			Seed any `toml:"seed"`
		} `toml:"experiment"`
	}
	if _, err := toml.Decode(text, &seed); err == nil {
		if v, ok := seed.Experiment.Seed.(int64); ok && v < 0 {
			return md, ConfigErrorf("%s: experiment.seed = %d, want an integer >= 0", path, v)
		}
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return md, ConfigErrorf("%s: unknown key %s (allowed tables: %s)", path, strings.Join(keys, ", "), tables)
	}
	return md, nil
}

// Resolve checks the shared tables and fills a Spec with everything but the batch, budget and
// micro-batch. Relative paths are taken relative to the config file's directory (base).
func (c *Common) Resolve(path string) (*Spec, error) {
	base := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	if c.Experiment.Name == "" {
		c.Experiment.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	d := c.Data
	if d.Source == "" {
		return nil, ConfigErrorf("%s: data.source is required (synthetic, files, goroot or npy)", path)
	}
	d.Glob, d.Path, d.CacheDir = rel(d.Glob), rel(d.Path), rel(d.CacheDir)
	d.Seed = c.Experiment.Seed
	d.EvalTokens = int64(c.Eval.Tokens)
	d, err := d.Resolve()
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("%s: %w", path, err)}
	}
	// A missing corpus is found here, where the config is checked, not when a branch starts.
	switch d.Source {
	case data.SourceNPY:
		if _, err := os.Stat(d.Path); err != nil {
			return nil, ConfigErrorf("%s: data.path = %q: %v (resolved against the config's folder to %s)", path, c.Data.Path, errors.Unwrap(err), d.Path)
		}
	case data.SourceFiles:
		if m, err := filepath.Glob(d.Glob); err != nil || len(m) == 0 {
			return nil, ConfigErrorf("%s: data.glob = %q matches no file (resolved against the config's folder to %s)", path, c.Data.Glob, d.Glob)
		}
	}
	spec := &Spec{
		ID: c.Experiment.Name, Seed: c.Experiment.Seed, InitSeed: c.Experiment.Seed, EvalSeed: c.Experiment.Seed,
		Objective: c.Objective.Name, MaskEps: c.Objective.MaskEps, Data: d, Optim: c.Optimizer,
		Schedule: c.Schedule, LRScale: 1, EvalEvery: c.Eval.Every, EvalEWA: c.Eval.WeightAverage, Threads: c.Run.Threads, Device: c.Run.Device,
	}
	if _, _, err := cuda.ParseDevice(spec.Device); err != nil {
		return nil, ConfigErrorf("%s: run.device = %q: want \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"", path, c.Run.Device)
	}
	if c.Run.Threads < 0 {
		return nil, ConfigErrorf("%s: run.threads = %d, want >= 0 (0: all cores)", path, c.Run.Threads)
	}
	if c.Parent.Checkpoint != "" {
		if c.Model != nil {
			return nil, ConfigErrorf("%s: give either parent.checkpoint or a [model] table, not both", path)
		}
		spec.Parent = rel(c.Parent.Checkpoint)
		spec.OptimizerState = c.Parent.OptimizerState
		if _, err := os.Stat(filepath.Join(spec.Parent, model.WeightsFile)); err != nil {
			return nil, ConfigErrorf("%s: parent.checkpoint = %q: %v", path, c.Parent.Checkpoint, errors.Unwrap(err))
		}
		if _, err := model.LoadConfig(filepath.Join(spec.Parent, model.ConfigFile)); err != nil {
			return nil, ConfigErrorf("%s: parent.checkpoint: %v", path, err)
		}
	} else if c.Model != nil {
		m := *c.Model
		if m.KVHeads == 0 {
			m.KVHeads = m.Heads
		}
		if m.HeadDim == 0 && m.Heads > 0 {
			m.HeadDim = m.Hidden / m.Heads
		}
		if m.InitStd == 0 {
			m.InitStd = 0.02
		}
		if m.RopeTheta == 0 {
			m.RopeTheta = 10000
		}
		if m.RMSNormEps == 0 {
			m.RMSNormEps = 1e-6
		}
		spec.Init = &m
	} else {
		return nil, ConfigErrorf("%s: parent.checkpoint or a [model] table is required", path)
	}
	return spec, nil
}

// Overrides replace parts of a config after it is read: how `cbs reproduce` points a stage at
// its run directory and at the checkpoint of the stage before it.
type Overrides struct {
	Out    string  // experiment.out
	Parent string  // parent.checkpoint (absolute, or relative to the working directory)
	Scale  float64 // token quantities x Scale (sweeps; 0 or 1: unchanged)
	Device string  // run.device
}

// Apply sets the overridden fields of c.
func (o Overrides) Apply(c *Common) {
	if o.Out != "" {
		c.Experiment.Out = o.Out
	}
	if o.Parent != "" {
		if abs, err := filepath.Abs(o.Parent); err == nil {
			c.Parent.Checkpoint = abs
		}
	}
	if o.Device != "" {
		c.Run.Device = o.Device
	}
}

// TrainConfig is the TOML file of `cbs train --config`: one run.
type TrainConfig struct {
	Common
	Train TrainTable `toml:"train"`
}

// TrainTable is the [train] table.
type TrainTable struct {
	Budget          Tokens `toml:"budget"`
	Batch           Tokens `toml:"batch"`
	MicroBatch      int    `toml:"micro_batch"`
	CheckpointEvery Tokens `toml:"checkpoint_every"`
}

const trainTables = "experiment, model, parent, objective, data, optimizer, schedule, train, eval, run"

// LoadTrainConfig reads and validates a train config and resolves it into a Spec and the run
// directory (experiment.out, else runs/<name>, relative to the working directory).
func LoadTrainConfig(path string) (*Spec, string, error) {
	return LoadTrainConfigWith(path, Overrides{})
}

// LoadTrainConfigWith is LoadTrainConfig with overrides; Scale multiplies the budget, warmup,
// decay and the eval and checkpoint intervals (the batch stays).
func LoadTrainConfigWith(path string, o Overrides) (*Spec, string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	c := TrainConfig{Common: DefaultCommon()}
	if err := DecodeStrict(path, string(raw), &c, trainTables); err != nil {
		return nil, "", err
	}
	o.Apply(&c.Common)
	if o.Scale != 0 && o.Scale != 1 {
		mul := func(t *Tokens) { *t = Tokens(math.Round(float64(*t) * o.Scale)) }
		mul(&c.Train.Budget)
		mul(&c.Train.CheckpointEvery)
		mul(&c.Schedule.Warmup)
		mul(&c.Schedule.Decay)
		mul(&c.Eval.Every)
		mul(&c.Eval.WeightAverage)
	}
	if c.Run.Executor != "local" {
		return nil, "", ConfigErrorf("%s: run.executor = %q: cbs train runs locally; executors belong to sweeps", path, c.Run.Executor)
	}
	spec, err := c.Resolve(path)
	if err != nil {
		return nil, "", err
	}
	spec.Budget, spec.BatchTokens, spec.MicroBatch = c.Train.Budget, c.Train.Batch, c.Train.MicroBatch
	spec.CheckpointEvery = c.Train.CheckpointEvery
	if spec.MicroBatch == 0 && c.Train.Batch > 0 {
		spec.MicroBatch = int(c.Train.Batch) / spec.SeqLen()
	}
	if err := spec.Validate(); err != nil {
		return nil, "", &ConfigError{fmt.Errorf("%s: %w", path, err)}
	}
	out := c.Experiment.Out
	if out == "" {
		out = filepath.Join("runs", c.Experiment.Name)
	}
	return spec, out, nil
}
