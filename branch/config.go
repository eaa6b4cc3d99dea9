package branch

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"cbs/compute/device"
	"cbs/data"
	"cbs/internal/configref"
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
	Name string `toml:"name" default:"the config file's name" doc:"Names the run in reports, figures and the default run directory."`
	Seed uint64 `toml:"seed" default:"0" doc:"Seeds everything random: initial weights, the order of the data, the eval set's masks; seed replicate r of a sweep adds r."`
	Out  string `toml:"out" default:"runs/NAME under the working directory" doc:"The run directory, relative to the config file's folder."`
}

// ParentConfig is the [parent] table.
type ParentConfig struct {
	Checkpoint     string `toml:"checkpoint" doc:"A checkpoint directory to start from (config.json, model.safetensors, optionally optimizer.safetensors and trainer.json), relative to the config file's folder. Give either this or a [model] table."`
	OptimizerState string `toml:"optimizer_state" doc:"\"keep\" continues the parent's AdamW moments and step count; \"reset\" starts them from zero."`
}

// ObjectiveConfig is the [objective] table.
type ObjectiveConfig struct {
	Name    string  `toml:"name" doc:"\"ar\": next-token prediction with causal attention; \"mdm\": masked diffusion with bidirectional attention (an AR parent gains a mask token)."`
	MaskEps float64 `toml:"mask_eps" doc:"mdm only: the masking rate t of each sequence is drawn uniformly from [mask_eps, 1]; 0 < mask_eps < 1."`
}

// EvalConfig is the [eval] table.
type EvalConfig struct {
	Every  Tokens `toml:"every" default:"sweeps: the largest multiple of every batch that gives at least 16 marks and divides the budget; train: only at the end" doc:"Evaluate every this many training tokens; a multiple of every batch, so the marks fall on step boundaries in every branch."`
	Tokens Tokens `toml:"tokens" doc:"The size of the frozen held-out eval set, rounded up to whole sequences; 0: no eval set (train loss only)."`
	// WeightAverage, when > 0, evaluates an exponential moving average of the weights with this
	// time constant in tokens instead of the weights themselves (see Spec.EvalEWA).
	WeightAverage Tokens `toml:"weight_average,omitzero" doc:"When set, eval measures an exponential moving average of the weights with this time constant in tokens instead of the weights themselves (CPU only)."`
}

// RunConfig is the [run] table: how a run executes, never what it computes.
type RunConfig struct {
	Executor string `toml:"executor" doc:"Where a sweep's branches run: \"local\" (this machine), \"slurm\" (one array task per branch, see [slurm]) or \"external\" (your own trainer, see [external]); train configs run locally."`
	Parallel int    `toml:"parallel" doc:"How many branches train at once on this machine, sharing run.threads; once no branch waits to start, the threads of finished branches go to those still running (results do not depend on it)."`
	Device   string `toml:"device" doc:"\"cpu\", \"cuda\", \"cuda:N\" or \"auto\" (a GPU when one is usable, else the CPU)."`
	Threads  int    `toml:"threads" default:"0 (all cores)" doc:"CPU threads in all; a local sweep divides them among its parallel branches."`
	// Precision is omitted from a resolved config when empty, so the resolved configs of
	// sweeps that never set it keep their bytes.
	Precision string `toml:"precision,omitempty" default:"\"fp32\" on the CPU, \"bf16\" on a GPU" doc:"The operands of the matrix products, accumulated in fp32 either way: \"fp32\" or \"bf16\" (needs oneDNN) on the CPU; \"bf16\", \"tf32\" or \"fp32\" on a GPU. Like the device, it changes how a run's numbers round, not what they measure; segments.jsonl records it."`
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
// naming each with the closest known key and the keys of its table. kind names the config in
// messages ("sweep config").
func DecodeStrict(path, text string, v any, kind string) error {
	_, err := DecodeStrictMeta(path, text, v, kind)
	return err
}

// DecodeStrictMeta is DecodeStrict that also returns the keys the text defines, for defaults
// that depend on whether a key was given rather than on its value.
func DecodeStrictMeta(path, text string, v any, kind string) (toml.MetaData, error) {
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
	if len(md.Undecoded()) > 0 {
		msg := configref.Unknown(md, configref.Keys(v), kind, otherKindHint(kind))
		return md, ConfigErrorf("%s: %s; `cbs config keys` lists every key", path, msg)
	}
	return md, nil
}

// Config kinds, as messages name them.
const (
	KindTrain = "train config"
	KindSweep = "sweep config"
)

// otherKindHint explains a table that belongs to the other kind of config, the likeliest cause
// of an unknown table.
func otherKindHint(kind string) func(table string) string {
	return func(table string) string {
		switch {
		case kind == KindSweep && table == "train":
			return "[train] belongs to a train config (cbs train); a sweep config sets its budget and batch sizes in [branches]"
		case kind == KindTrain && (table == "branches" || table == "analysis" || table == "slurm" || table == "external"):
			return fmt.Sprintf("[%s] belongs to a sweep config (cbs sweep); a train config sets its budget and batch in [train]", table)
		}
		return ""
	}
}

// ConfigPath resolves a path given in the config file at path: relative to the file's folder,
// wherever cbs runs from, and absolute, so the same file named two ways is one path.
func ConfigPath(path, p string) string {
	if p == "" {
		return ""
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(path), p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

// OutDir is the run directory: experiment.out relative to the config file's folder, else
// runs/<name> under the working directory.
func (c *Common) OutDir(path string) string {
	if c.Experiment.Out == "" {
		return filepath.Join("runs", c.Experiment.Name)
	}
	return ConfigPath(path, c.Experiment.Out)
}

// Resolve checks the shared tables and fills a Spec with everything but the batch, budget and
// micro-batch. Every path is resolved against the config file's folder (ConfigPath), in the
// Spec and in c, so that a resolved config compares paths rather than spellings.
func (c *Common) Resolve(path string) (*Spec, error) {
	if c.Experiment.Name == "" {
		c.Experiment.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	d, err := c.resolveData(path)
	if err != nil {
		return nil, err
	}
	spec := &Spec{
		ID: c.Experiment.Name, Seed: c.Experiment.Seed, InitSeed: c.Experiment.Seed, EvalSeed: c.Experiment.Seed,
		Objective: c.Objective.Name, MaskEps: c.Objective.MaskEps, Data: d, Optim: c.Optimizer,
		Schedule: c.Schedule, LRScale: 1, EvalEvery: c.Eval.Every, EvalEWA: c.Eval.WeightAverage, Threads: c.Run.Threads, Device: c.Run.Device,
		Precision: c.Run.Precision,
	}
	target, err := device.Parse(spec.Device)
	if err != nil {
		return nil, ConfigErrorf("%s: run.device = %q: %v", path, c.Run.Device, err)
	}
	if err := device.CheckPrecision(target, spec.Precision); err != nil {
		return nil, ConfigErrorf("%s: run.precision = %q with run.device = %q: %v", path, c.Run.Precision, c.Run.Device, err)
	}
	if c.Run.Threads < 0 {
		return nil, ConfigErrorf("%s: run.threads = %d, want >= 0 (0: all cores)", path, c.Run.Threads)
	}
	if err := c.resolveStart(path, spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// resolveData resolves the data table's paths against the config's folder, in c too, and
// checks that the corpus is there.
func (c *Common) resolveData(path string) (data.SourceConfig, error) {
	rel := func(p string) string { return ConfigPath(path, p) }
	given := c.Data
	if c.Data.Source == "" {
		return given, ConfigErrorf("%s: data.source is required (synthetic, files, goroot, npy or tokens)", path)
	}
	c.Data.Glob, c.Data.Path, c.Data.CacheDir = rel(c.Data.Glob), rel(c.Data.Path), rel(c.Data.CacheDir)
	if data.IsTokenizerFile(c.Data.Tokenizer) {
		c.Data.Tokenizer = rel(c.Data.Tokenizer)
	}
	d := c.Data
	d.Seed = c.Experiment.Seed
	d.EvalTokens = int64(c.Eval.Tokens)
	d, err := d.Resolve()
	if err != nil {
		return d, &ConfigError{fmt.Errorf("%s: %w", path, err)}
	}
	// A missing corpus is found here, where the config is checked, not when a branch starts.
	switch d.Source {
	case data.SourceNPY, data.SourceTokens:
		if _, err := os.Stat(d.Path); err != nil {
			return d, ConfigErrorf("%s: data.path = %q: %v (resolved against the config's folder to %s)", path, given.Path, errors.Unwrap(err), d.Path)
		}
	case data.SourceFiles:
		if m, err := filepath.Glob(d.Glob); err != nil || len(m) == 0 {
			return d, ConfigErrorf("%s: data.glob = %q matches no file (resolved against the config's folder to %s)", path, given.Glob, d.Glob)
		}
	}
	return d, nil
}

// resolveStart sets where spec's weights start: the parent checkpoint (resolved against the
// config's folder, in c too, and checked), or the [model] table with its defaults filled.
func (c *Common) resolveStart(path string, spec *Spec) error {
	switch {
	case c.Parent.Checkpoint != "":
		if c.Model != nil {
			return ConfigErrorf("%s: give either parent.checkpoint or a [model] table, not both", path)
		}
		given := c.Parent.Checkpoint
		spec.Parent = ConfigPath(path, given)
		c.Parent.Checkpoint = spec.Parent
		spec.OptimizerState = c.Parent.OptimizerState
		if err := parentWeights(spec.Parent); err != nil {
			return ConfigErrorf("%s: parent.checkpoint = %q (resolved against the config's folder to %s): %v", path, given, spec.Parent, err)
		}
		if _, err := model.LoadConfig(filepath.Join(spec.Parent, model.ConfigFile)); err != nil {
			return ConfigErrorf("%s: parent.checkpoint = %q (resolved to %s): %v", path, given, spec.Parent, err)
		}
	case c.Model != nil:
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
	default:
		return ConfigErrorf("%s: parent.checkpoint or a [model] table is required", path)
	}
	return nil
}

// Overrides replace parts of a config after it is read: how `cbs reproduce` points a stage at
// its run directory and at the checkpoint of the stage before it.
type Overrides struct {
	Out    string  // experiment.out (absolute, or relative to the working directory)
	Parent string  // parent.checkpoint (absolute, or relative to the working directory)
	Scale  float64 // token quantities x Scale (sweeps; 0 or 1: unchanged)
	Device string  // run.device
}

// Apply sets the overridden fields of c.
func (o Overrides) Apply(c *Common) {
	if o.Out != "" {
		if abs, err := filepath.Abs(o.Out); err == nil {
			c.Experiment.Out = abs
		}
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
	Budget          Tokens `toml:"budget" default:"required" doc:"Training tokens; a multiple of the batch."`
	Batch           Tokens `toml:"batch" default:"required" doc:"The global batch in tokens; a multiple of micro_batch x data.seq_len."`
	MicroBatch      int    `toml:"micro_batch" default:"the whole batch" doc:"Sequences per forward pass; gradients of the micro-batches of a step are accumulated."`
	CheckpointEvery Tokens `toml:"checkpoint_every" default:"at the end and when interrupted" doc:"Also checkpoint every this many tokens (a multiple of the batch)."`
}

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
	if err := DecodeStrict(path, string(raw), &c, KindTrain); err != nil {
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
	return spec, c.OutDir(path), nil
}

// parentWeights checks that a parent checkpoint holds its weights: model.safetensors, or the
// index and every shard it names.
func parentWeights(dir string) error {
	files, err := model.WeightFiles(dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return errors.Unwrap(err)
		}
	}
	return nil
}
