package branch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"cbs/data"
	"cbs/model"
)

// TrainConfig is the TOML file of `cbs train --config`: one run. Every table is optional except
// [data] and [train]; unknown keys are errors.
type TrainConfig struct {
	Experiment struct {
		Name string `toml:"name"`
		Seed uint64 `toml:"seed"`
		Out  string `toml:"out"`
	} `toml:"experiment"`
	Model     *ModelInit `toml:"model"`
	Parent    ParentConfig
	Objective struct {
		Name    string   `toml:"name"`
		MaskEps *float64 `toml:"mask_eps"`
	} `toml:"objective"`
	Data      data.SourceConfig `toml:"data"`
	Optimizer *Optim            `toml:"optimizer"`
	Schedule  *Schedule         `toml:"schedule"`
	Train     struct {
		Budget          Tokens `toml:"budget"`
		Batch           Tokens `toml:"batch"`
		MicroBatch      int    `toml:"micro_batch"`
		CheckpointEvery Tokens `toml:"checkpoint_every"`
	} `toml:"train"`
	Eval struct {
		Every  Tokens `toml:"every"`
		Tokens Tokens `toml:"tokens"`
	} `toml:"eval"`
	Run struct {
		Threads int    `toml:"threads"`
		Device  string `toml:"device"`
	} `toml:"run"`
}

// ParentConfig is the [parent] table.
type ParentConfig struct {
	Checkpoint     string `toml:"checkpoint"`
	OptimizerState string `toml:"optimizer_state"`
}

// ConfigError is a rejected config: bad usage, exit code 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErrorf(format string, args ...any) error {
	return &ConfigError{fmt.Errorf(format, args...)}
}

// DefaultOptimizer returns the [optimizer] defaults.
func DefaultOptimizer() Optim {
	d := model.DefaultOptim()
	return Optim{LR: d.LR, Betas: [2]float64{d.Beta1, d.Beta2}, Eps: d.Eps, WeightDecay: d.WeightDecay, Clip: d.Clip, DecayEmbedding: true}
}

// LoadTrainConfig reads and validates a train config and resolves it into a Spec. Relative
// paths in it are relative to the config file's directory, except experiment.out, which is
// relative to the working directory (default runs/<name>).
func LoadTrainConfig(path string) (*Spec, string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	var c TrainConfig
	c.Parent.OptimizerState = "keep"
	opt := DefaultOptimizer()
	c.Optimizer = &opt
	sch := Schedule{Shape: ShapeCosine, MinLRRatio: 0.1}
	c.Schedule = &sch
	md, err := toml.Decode(string(raw), &c)
	if err != nil {
		return nil, "", configErrorf("%s: %v", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return nil, "", configErrorf("%s: unknown key %s (allowed tables: experiment, model, parent, objective, data, optimizer, schedule, train, eval, run)", path, strings.Join(keys, ", "))
	}
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
	out := c.Experiment.Out
	if out == "" {
		out = filepath.Join("runs", c.Experiment.Name)
	}
	if c.Objective.Name == "" {
		c.Objective.Name = model.AR
	}
	maskEps := 1e-3
	if c.Objective.MaskEps != nil {
		maskEps = *c.Objective.MaskEps
	}
	d := c.Data
	d.Glob, d.Path, d.CacheDir = rel(d.Glob), rel(d.Path), rel(d.CacheDir)
	if d.Source == "" {
		return nil, "", configErrorf("%s: data.source is required (synthetic, files, goroot or npy)", path)
	}
	d.Seed = c.Experiment.Seed
	d.EvalTokens = int64(c.Eval.Tokens)
	if d, err = d.Resolve(); err != nil {
		return nil, "", &ConfigError{fmt.Errorf("%s: %w", path, err)}
	}
	spec := &Spec{
		ID: c.Experiment.Name, Seed: c.Experiment.Seed, Objective: c.Objective.Name, MaskEps: maskEps,
		Data: d, Optim: *c.Optimizer, Schedule: *c.Schedule, Budget: c.Train.Budget,
		BatchTokens: c.Train.Batch, MicroBatch: c.Train.MicroBatch, LRScale: 1,
		EvalEvery: c.Eval.Every, EvalSeed: c.Experiment.Seed, CheckpointEvery: c.Train.CheckpointEvery,
		Threads: c.Run.Threads, Device: c.Run.Device,
	}
	if spec.Device == "" {
		spec.Device = "cpu"
	}
	if spec.Device != "cpu" && spec.Device != "auto" {
		return nil, "", configErrorf("%s: run.device = %q: only \"cpu\" (or \"auto\", which means cpu in this build) is available", path, spec.Device)
	}
	if c.Parent.Checkpoint != "" {
		spec.Parent = rel(c.Parent.Checkpoint)
		spec.OptimizerState = c.Parent.OptimizerState
		if _, err := os.Stat(filepath.Join(spec.Parent, model.WeightsFile)); err != nil {
			return nil, "", configErrorf("%s: parent.checkpoint = %q: %v", path, c.Parent.Checkpoint, errors.Unwrap(err))
		}
		if c.Model != nil {
			return nil, "", configErrorf("%s: give either parent.checkpoint or a [model] table, not both", path)
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
	}
	if c.Train.MicroBatch == 0 && c.Train.Batch > 0 && d.SeqLen > 0 {
		spec.MicroBatch = int(c.Train.Batch) / d.SeqLen
	}
	if err := spec.Validate(); err != nil {
		return nil, "", &ConfigError{fmt.Errorf("%s: %w", path, err)}
	}
	return spec, out, nil
}
