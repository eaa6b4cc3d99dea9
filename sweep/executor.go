package sweep

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"cbs/branch"
)

// Executors: who trains the branches and where.
const (
	// ExecutorLocal trains every branch with cbs on this machine, run.parallel at a time.
	ExecutorLocal = "local"
	// ExecutorSlurm submits one sbatch array job, one task per branch running cbs train --branch.
	ExecutorSlurm = "slurm"
	// ExecutorExternal runs a user's trainer, a command template, once per branch.
	ExecutorExternal = "external"
)

// SlurmTable is the [slurm] table: how the array job asks for resources. Empty strings and zero
// numbers leave the choice to the cluster's defaults.
type SlurmTable struct {
	Partition string `toml:"partition" doc:"sbatch --partition; empty: the cluster's default."`
	Account   string `toml:"account" doc:"sbatch --account."`
	// Time is the limit per task, in a form sbatch --time accepts ("90", "4:00:00", "1-12").
	Time        string `toml:"time" doc:"Time limit per task, as sbatch --time takes it: \"90\", \"4:00:00\", \"1-12\"."`
	GPUsPerTask int    `toml:"gpus_per_task" doc:"GPUs per array task."`
	// CPUsPerTask is also the thread count of each task's trainer.
	CPUsPerTask int `toml:"cpus_per_task" doc:"CPUs per array task, also the thread count of its trainer."`
	// Mem is the memory per node (sbatch --mem): "16G", "4000M".
	Mem string `toml:"mem" doc:"Memory per node, as sbatch --mem takes it: \"16G\", \"4000M\"."`
	// MaxConcurrent caps the tasks running at once (the %N of --array); 0: no cap.
	MaxConcurrent int `toml:"max_concurrent" default:"0 (no cap)" doc:"The most tasks running at once (the %N of --array)."`
	// Extra lines are copied into both job scripts as "#SBATCH <line>".
	Extra []string `toml:"extra" doc:"Lines copied into both job scripts as \"#SBATCH <line>\"."`
	// Requeue lets the scheduler requeue a preempted task, which resumes from its checkpoint;
	// default true.
	Requeue *bool `toml:"requeue" default:"true" doc:"Let the scheduler requeue a preempted task; it resumes from its checkpoint."`
	// Fit submits the afterok job that runs cbs fit and cbs plot once every task succeeded;
	// default true.
	Fit *bool `toml:"fit" default:"true" doc:"Submit an afterok job that runs cbs fit and cbs plot once every task succeeded."`
}

// ExternalTable is the [external] table: the trainer that is not cbs.
type ExternalTable struct {
	// Command is the trainer's command line with {placeholders}; see Placeholders.
	Command Command `toml:"command" default:"required" doc:"The trainer's command line with {placeholders}: a string run by /bin/sh -c, or a list of arguments (see docs/executors.md)."`
	// Via is where each branch's command runs: "local" (this machine, run.parallel at a time)
	// or "slurm" (one array task per branch, with the [slurm] options).
	Via string `toml:"via" default:"\"local\"" doc:"Where each branch's command runs: \"local\" (run.parallel at a time) or \"slurm\" (one array task per branch, with [slurm])."`
	// Workdir is the command's working directory; default: the config file's directory.
	Workdir string `toml:"workdir" default:"the config file's folder" doc:"The command's working directory, relative to the config file's folder."`
}

// Command is a command template: a string run by /bin/sh -c (placeholders expand to quoted
// words), or a list of arguments run directly (each placeholder expands inside its argument).
type Command struct {
	Shell string
	Argv  []string
}

// UnmarshalTOML accepts a string or a list of strings.
func (c *Command) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		*c = Command{Shell: x}
	case []any:
		*c = Command{}
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("external.command[%d] = %v, want a string", i, e)
			}
			c.Argv = append(c.Argv, s)
		}
	default:
		return fmt.Errorf("external.command = %v, want a string (run by /bin/sh -c) or a list of arguments", v)
	}
	return nil
}

// MarshalTOML writes the command back in the form it was given.
func (c Command) MarshalTOML() ([]byte, error) {
	if c.Argv == nil {
		return []byte(tomlString(c.Shell)), nil
	}
	q := make([]string, len(c.Argv))
	for i, a := range c.Argv {
		q[i] = tomlString(a)
	}
	return []byte("[" + strings.Join(q, ", ") + "]"), nil
}

func tomlString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`, "\r", `\r`)
	return `"` + r.Replace(s) + `"`
}

func (c Command) empty() bool { return strings.TrimSpace(c.Shell) == "" && len(c.Argv) == 0 }

var (
	slurmTime = regexp.MustCompile(`^(\d+-)?\d+(:\d+){0,2}$|^\d+-\d+$`)
	slurmMem  = regexp.MustCompile(`^\d+[KMGT]?$`)
)

// resolveExecutor checks run.executor and fills in the table it needs.
func (c *Config) resolveExecutor(path string) error {
	bad := func(format string, args ...any) error {
		return branch.ConfigErrorf("%s: "+format, append([]any{path}, args...)...)
	}
	switch c.Run.Executor {
	case ExecutorLocal, ExecutorSlurm:
	case ExecutorExternal:
		if c.External == nil || c.External.Command.empty() {
			return bad("run.executor = \"external\" needs [external] command, the trainer's command line with {placeholders} (allowed: %s)", placeholderNames())
		}
	default:
		return bad("run.executor = %q, want \"local\", \"slurm\" or \"external\"", c.Run.Executor)
	}
	if e := c.External; e != nil {
		switch e.Via {
		case "":
			e.Via = ExecutorLocal
		case ExecutorLocal, ExecutorSlurm:
		default:
			return bad("external.via = %q, want \"local\" or \"slurm\"", e.Via)
		}
		if e.Workdir == "" {
			e.Workdir = "."
		}
		e.Workdir = branch.ConfigPath(path, e.Workdir)
		if err := checkTemplate(e.Command); err != nil {
			return bad("%v", err)
		}
	}
	if c.Slurm == nil && c.usesSlurm() {
		c.Slurm = &SlurmTable{}
	}
	if s := c.Slurm; s != nil {
		switch {
		case s.Time != "" && !slurmTime.MatchString(s.Time):
			return bad("slurm.time = %q, want minutes, HH:MM:SS or D-HH:MM:SS", s.Time)
		case s.Mem != "" && !slurmMem.MatchString(s.Mem):
			return bad("slurm.mem = %q, want a size like \"16G\" or \"4000M\"", s.Mem)
		case s.CPUsPerTask < 0:
			return bad("slurm.cpus_per_task = %d, want >= 1 (0: one)", s.CPUsPerTask)
		case s.GPUsPerTask < 0:
			return bad("slurm.gpus_per_task = %d, want >= 0", s.GPUsPerTask)
		case s.MaxConcurrent < 0:
			return bad("slurm.max_concurrent = %d, want >= 0 (0: no cap)", s.MaxConcurrent)
		}
		if s.CPUsPerTask == 0 {
			s.CPUsPerTask = 1
		}
		yes := true
		if s.Requeue == nil {
			s.Requeue = &yes
		}
		if s.Fit == nil {
			s.Fit = &yes
		}
		for i, l := range s.Extra {
			if !strings.HasPrefix(l, "-") || strings.ContainsAny(l, "\n\r") {
				return bad("slurm.extra[%d] = %q, want one sbatch option such as \"--qos=high\"", i, l)
			}
		}
	}
	return nil
}

// usesSlurm reports whether the branches are submitted to Slurm.
func (c *Config) usesSlurm() bool {
	return c.Run.Executor == ExecutorSlurm || (c.Run.Executor == ExecutorExternal && c.External.Via == ExecutorSlurm)
}

// resolveExternal is Common.Resolve for a trainer that is not cbs: the data, the model and the
// parent checkpoint are the trainer's business, so only what the placeholders need is checked.
func (c *Config) resolveExternal(path string) (*branch.Spec, error) {
	bad := func(format string, args ...any) error {
		return branch.ConfigErrorf("%s: "+format, append([]any{path}, args...)...)
	}
	if c.Eval.WeightAverage != 0 {
		return nil, bad("eval.weight_average = %v: the external executor's trainer evaluates its own weights; remove the key or run the branches locally", c.Eval.WeightAverage)
	}
	if c.Experiment.Name == "" {
		c.Experiment.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	rel := func(p string) string { return branch.ConfigPath(path, p) }
	c.Data.Glob, c.Data.Path, c.Data.CacheDir = rel(c.Data.Glob), rel(c.Data.Path), rel(c.Data.CacheDir)
	d := c.Data
	if d.SeqLen < 2 {
		return nil, bad("data.seq_len = %d: the external executor needs the tokens per sequence (>= 2) to give batches in sequences", d.SeqLen)
	}
	d.Seed = c.Experiment.Seed
	d.EvalTokens = int64(c.Eval.Tokens)
	if d.Source != "" {
		var err error
		if d, err = d.Resolve(); err != nil {
			return nil, bad("%v", err)
		}
	}
	s := &branch.Spec{
		ID: c.Experiment.Name, Seed: c.Experiment.Seed, InitSeed: c.Experiment.Seed, EvalSeed: c.Experiment.Seed,
		Objective: c.Objective.Name, MaskEps: c.Objective.MaskEps, Data: d, Optim: c.Optimizer,
		Schedule: c.Schedule, LRScale: 1, EvalEvery: c.Eval.Every, Threads: c.Run.Threads, Device: c.Run.Device,
		Init: c.Model,
	}
	if c.Run.Threads < 0 {
		return nil, bad("run.threads = %d, want >= 0 (0: the trainer's default)", c.Run.Threads)
	}
	if given := c.Parent.Checkpoint; given != "" {
		p := rel(given)
		if _, err := os.Stat(p); err != nil {
			return nil, bad("parent.checkpoint = %q (resolved against the config's folder to %s): %v", given, p, errors.Unwrap(err))
		}
		c.Parent.Checkpoint = p
		s.Parent, s.OptimizerState = p, c.Parent.OptimizerState
	}
	return s, nil
}

// validate is Spec.Validate, except that an external trainer may start from its own
// initialisation: it needs neither a parent checkpoint nor a [model] table.
func validate(s *branch.Spec, executor string) error {
	if executor == ExecutorExternal && s.Init == nil && s.Parent == "" {
		v := *s
		v.Init = &branch.ModelInit{}
		return v.Validate()
	}
	return s.Validate()
}

// ConfigType says what a config accepts for a command.
func (Command) ConfigType() string { return "string or list of strings" }
