package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"cbs/branch"
	"cbs/runfmt"
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

// Options say how to execute a plan.
type Options struct {
	// RetryFailed reruns failed and diverged branches (from their last checkpoint).
	RetryFailed bool
	// Log receives progress and log lines (stderr).
	Log io.Writer
	// Terminal redraws one progress line per running branch instead of printing log lines.
	Terminal bool
	// CodeVersion is recorded in the manifest.
	CodeVersion string
	// DryRun writes to Stdout what would run (for Slurm: the job scripts and the sbatch command
	// lines) and changes nothing.
	DryRun bool
	Stdout io.Writer
	// Binary is the cbs executable that Slurm job scripts call, by absolute path so the nodes
	// need no installed cbs; default: this process's executable.
	Binary string
}

// Outcome is what became of each branch.
type Outcome struct {
	States map[string]string // branch id -> final state
	// Failed lists failed or diverged branches with their reasons: those left alone, then those
	// that failed in this run, each in plan order.
	Failed []string
	// Submitted is the Slurm submission made, nil when nothing was submitted; the branches then
	// finish after Execute returns.
	Submitted *Submission
}

// AnyFailed reports whether a branch failed or diverged.
func (o *Outcome) AnyFailed() bool { return len(o.Failed) > 0 }

// ErrInterrupted: the context was cancelled; running branches checkpointed.
var ErrInterrupted = branch.ErrInterrupted

// An executor has the branches of a plan trained: by cbs in this process (local), by an external
// trainer that this process runs (external), or by Slurm array tasks, which run cbs or the
// external trainer (slurm). What they share, Execute does.
type executor interface {
	// backend says, for the manifest, what trains the branches before any has run. named is
	// true when that is the trainer itself, which records no backend of its own (an external
	// trainer); otherwise the branches' segments.jsonl say later what they ran on.
	backend() (desc string, named bool)
	// dryRun writes to Options.Stdout what run would do with todo, and changes nothing.
	dryRun(ctx context.Context, todo []*branch.Spec) error
	// run has the branches of todo trained, or submitted, and records in out what became of
	// them. It returns ErrInterrupted when ctx was cancelled before every branch ended.
	run(ctx context.Context, todo []*branch.Spec, out *Outcome) error
}

// executor is the executor of run.executor (and external.via).
func (p *Plan) executor(opts Options, corpora *corpusCache) (executor, error) {
	switch {
	case p.Config.usesSlurm():
		return newSlurm(p, opts)
	case p.Config.Run.Executor == ExecutorExternal:
		return &external{p: p, opts: opts}, nil
	}
	return newLocal(p, opts, corpora), nil
}

// Execute runs the plan's branches with run.executor. Done branches are skipped, interrupted
// ones continue from their checkpoints, failed and diverged ones are left alone unless
// RetryFailed. The local executor trains them in this process, run.parallel at a time, sharing
// run.threads cores; the external one runs the [external] command per branch; Slurm submits
// them and returns (the branches finish after Execute).
//
// Whatever the executor, Execute takes the run directory's lock, prepares the directory
// (refusing a changed config), writes the manifest and reads the branches' states under the
// lock before the executor sees them; once the branches ran, the manifest records the backends
// their segments.jsonl name. A dry run takes no lock and writes nothing.
func Execute(ctx context.Context, p *Plan, opts Options) (*Outcome, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	var corpora *corpusCache
	if p.Config.Run.Executor != ExecutorExternal {
		corpora = newCorpusCache() // an external trainer's data is its own business
	}
	ex, err := p.executor(opts, corpora)
	if err != nil {
		return nil, err
	}
	if opts.DryRun {
		out, todo := p.todo(opts)
		return out, ex.dryRun(ctx, todo)
	}
	lk, err := p.acquire()
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	m, err := newManifest(p, opts.CodeVersion, corpora)
	if err != nil {
		return nil, err
	}
	out, todo := p.todo(opts)
	if len(todo) == 0 {
		// Nothing trains: the manifest keeps the backend of the invocation that last did, so a
		// rerun of a finished sweep leaves it as it was.
		if m.Backend == "" {
			m.Backend, _ = ex.backend()
		}
		if err := m.write(p); err != nil {
			return nil, err
		}
		fmt.Fprintf(opts.Log, "%s: all %d branches already finished\n", p.Out, len(p.Branches))
		return out, nil
	}
	m.trains(ex.backend())
	if err := m.write(p); err != nil {
		return nil, err
	}
	err = ex.run(ctx, todo, out)
	if ran := m.ran(p, todo); len(ran) > 0 {
		m.Backend = strings.Join(ran, "; ")
	}
	if merr := m.write(p); err == nil {
		err = merr
	}
	if err != nil && !errors.Is(err, ErrInterrupted) {
		return nil, err
	}
	return out, err
}

// todo reads the branches' states: done ones, and failed or diverged ones unless RetryFailed,
// go into the outcome; the rest are returned, in plan order. A branch whose state.json is
// missing or unreadable is to run.
func (p *Plan) todo(opts Options) (*Outcome, []*branch.Spec) {
	out := &Outcome{States: map[string]string{}}
	var todo []*branch.Spec
	for _, s := range p.Branches {
		st := readState(BranchDir(p.Out, s.ID))
		switch {
		case st.State == runfmt.StateDone:
			out.States[s.ID] = st.State
		case (st.State == runfmt.StateFailed || st.State == runfmt.StateDiverged) && !opts.RetryFailed:
			out.States[s.ID] = st.State
			out.Failed = append(out.Failed, fmt.Sprintf("%s: %s (%s; rerun with --retry-failed)", s.ID, st.State, st.Reason))
		default:
			todo = append(todo, s)
		}
	}
	return out, todo
}

// readState is the branch's state.json, pending when it has none or it cannot be read.
func readState(dir string) runfmt.State {
	st, err := runfmt.ReadState(dir)
	if err != nil {
		return runfmt.State{State: runfmt.StatePending}
	}
	return st
}

// pool trains the branches of todo with train, parallel at a time, starting them in order, and
// records in out what became of each: done; pending when it was interrupted, or ctx was
// cancelled before it started; diverged or failed, with the error, in out.Failed (in the order
// of todo). It returns ErrInterrupted when any branch was interrupted.
func pool(ctx context.Context, parallel int, todo []*branch.Spec, out *Outcome, train func(*branch.Spec) error) error {
	errs := make([]error, len(todo))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, s := range todo {
		sem <- struct{}{}
		if ctx.Err() != nil {
			<-sem // interrupted before this branch started: it stays pending
			errs[i] = ErrInterrupted
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = train(s)
		}()
	}
	wg.Wait()
	interrupted := false
	for i, err := range errs {
		id := todo[i].ID
		switch {
		case err == nil:
			out.States[id] = runfmt.StateDone
		case errors.Is(err, ErrInterrupted):
			interrupted = true
			out.States[id] = runfmt.StatePending
		case errors.Is(err, branch.ErrDiverged):
			out.States[id] = runfmt.StateDiverged
			out.Failed = append(out.Failed, fmt.Sprintf("%s: %v", id, err))
		default:
			out.States[id] = runfmt.StateFailed
			out.Failed = append(out.Failed, fmt.Sprintf("%s: %v", id, err))
		}
	}
	if interrupted {
		return ErrInterrupted
	}
	return nil
}

// failed reports whether err, returned for a branch, means that it failed: neither finished,
// interrupted nor diverged.
func failed(err error) bool {
	return err != nil && !errors.Is(err, ErrInterrupted) && !errors.Is(err, branch.ErrDiverged)
}
