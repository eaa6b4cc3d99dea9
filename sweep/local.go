package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	"cbs/branch"
	"cbs/compute/blas"
	"cbs/data"
	"cbs/internal/atomicio"
	"cbs/model"
)

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
	Failed []string          // failed or diverged branches, with reasons
	// Submitted is the Slurm submission made, nil when nothing was submitted; the branches then
	// finish after Execute returns.
	Submitted *Submission
}

// AnyFailed reports whether a branch failed or diverged.
func (o *Outcome) AnyFailed() bool { return len(o.Failed) > 0 }

// ErrInterrupted: the context was cancelled; running branches checkpointed.
var ErrInterrupted = branch.ErrInterrupted

// Execute runs the plan's branches with run.executor. Done branches are skipped, interrupted
// ones continue from their checkpoints, failed and diverged ones are left alone unless
// RetryFailed. The local executor trains them in this process, run.parallel at a time, sharing
// run.threads cores; the external one runs the [external] command per branch; Slurm submits
// them and returns (see SubmitSlurm).
func Execute(ctx context.Context, p *Plan, opts Options) (*Outcome, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	switch {
	case p.Config.usesSlurm():
		return SubmitSlurm(ctx, p, opts)
	case p.Config.Run.Executor == ExecutorExternal:
		return executeExternal(ctx, p, opts)
	case opts.DryRun:
		fmt.Fprintf(opts.Stdout, "# run.executor = \"local\": cbs sweep trains these branches in this process\n")
		p.Print(opts.Stdout)
		return &Outcome{States: map[string]string{}}, nil
	}
	lk, err := p.acquire()
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	c := p.Config
	threads := c.Run.Threads
	if threads == 0 {
		threads = runtime.NumCPU()
	}
	parallel := min(c.Run.Parallel, len(p.Branches))
	perBranch := max(1, threads/parallel)

	corpora := &corpusCache{m: map[uint64]*data.Corpus{}}
	_, blasInfo := blas.Default()
	if err := writeManifest(p, opts.CodeVersion, corpora, fmt.Sprintf("cpu, %d threads per branch, %s", perBranch, blasInfo)); err != nil {
		return nil, err
	}

	// Every branch directory holds its spec from the start, so `cbs train --branch` and the
	// analysis can read any branch, run or not.
	for _, s := range p.Branches {
		// With the threads it runs with, so a rerun rewrites the same branch.json.
		w := *s
		w.Threads = perBranch
		if err := writeBranchFiles(p, &w); err != nil {
			return nil, err
		}
	}
	out, todo := p.todo(opts)
	if len(todo) == 0 {
		fmt.Fprintf(opts.Log, "%s: all %d branches already finished\n", p.Out, len(p.Branches))
		return out, nil
	}
	threadsEach := "threads"
	if perBranch == 1 {
		threadsEach = "thread"
	}
	fmt.Fprintf(opts.Log, "%s: %s; %d at a time, %d %s each\n", p.Out, p.todoSummary(out, todo), parallel, perBranch, threadsEach)

	board := newBoard(opts.Log, opts.Terminal)
	defer board.stop()
	var mu sync.Mutex
	var interrupted bool
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, s := range todo {
		s := *s
		s.Threads = perBranch
		wg.Add(1)
		sem <- struct{}{}
		if ctx.Err() != nil {
			// Interrupted before this branch started: leave it pending.
			<-sem
			wg.Done()
			mu.Lock()
			interrupted = true
			out.States[s.ID] = branch.StatePending
			mu.Unlock()
			continue
		}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			corpus, err := corpora.get(s.Data)
			if err == nil {
				err = branch.Run(ctx, &s, branch.Options{
					Dir: BranchDir(p.Out, s.ID), Progress: board.update, Log: board.logWriter(), Corpus: corpus,
				})
			}
			board.finish(s.ID)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				out.States[s.ID] = branch.StateDone
			case errors.Is(err, branch.ErrInterrupted):
				interrupted = true
				out.States[s.ID] = branch.StatePending
			case errors.Is(err, branch.ErrDiverged):
				out.States[s.ID] = branch.StateDiverged
				out.Failed = append(out.Failed, fmt.Sprintf("%s: %v", s.ID, err))
			default:
				out.States[s.ID] = branch.StateFailed
				out.Failed = append(out.Failed, fmt.Sprintf("%s: %v", s.ID, err))
				board.logf("%s failed: %v", s.ID, err)
			}
		}()
	}
	wg.Wait()
	if interrupted {
		return out, ErrInterrupted
	}
	return out, nil
}

// todo reads the branches' states: done ones, and failed or diverged ones unless RetryFailed,
// go into the outcome; the rest are returned, in plan order.
func (p *Plan) todo(opts Options) (*Outcome, []*branch.Spec) {
	out := &Outcome{States: map[string]string{}}
	var todo []*branch.Spec
	for _, s := range p.Branches {
		st := readState(BranchDir(p.Out, s.ID))
		switch {
		case st.State == branch.StateDone:
			out.States[s.ID] = st.State
		case (st.State == branch.StateFailed || st.State == branch.StateDiverged) && !opts.RetryFailed:
			out.States[s.ID] = st.State
			out.Failed = append(out.Failed, fmt.Sprintf("%s: %s (%s; rerun with --retry-failed)", s.ID, st.State, st.Reason))
		default:
			todo = append(todo, s)
		}
	}
	return out, todo
}

// todoSummary says what a run of the plan will do with its branches, given what todo returned:
// "4 branches: 2 to start, 2 to resume, 0 done", then how many failed or diverged branches are
// left alone, if any. A branch resumes when its directory holds a checkpoint to continue from.
func (p *Plan) todoSummary(out *Outcome, todo []*branch.Spec) string {
	var resume int
	for _, s := range todo {
		if _, err := os.Stat(filepath.Join(BranchDir(p.Out, s.ID), branch.CkptDir, model.TrainerFile)); err == nil {
			resume++
		}
	}
	var done int
	for _, st := range out.States {
		if st == branch.StateDone {
			done++
		}
	}
	return branchCounts(len(p.Branches), len(todo)-resume, resume, done, len(out.Failed))
}

// branchCounts is the message todoSummary prints: total branches, those to start from the
// parent, those to resume from their own checkpoint, those done, and failed or diverged ones
// left alone (without --retry-failed).
func branchCounts(total, start, resume, done, failed int) string {
	noun := "branches"
	if total == 1 {
		noun = "branch"
	}
	msg := fmt.Sprintf("%d %s: %d to start, %d to resume, %d done", total, noun, start, resume, done)
	if failed > 0 {
		msg += fmt.Sprintf(", %d failed or diverged, left alone (--retry-failed reruns them)", failed)
	}
	return msg
}

func readState(dir string) branch.State {
	var st branch.State
	b, err := os.ReadFile(filepath.Join(dir, branch.StateFile))
	if err != nil || json.Unmarshal(b, &st) != nil {
		return branch.State{State: branch.StatePending}
	}
	return st
}

// corpusCache opens each distinct data config once; replicates differ in their data seed.
type corpusCache struct {
	mu sync.Mutex
	m  map[uint64]*data.Corpus
}

func (c *corpusCache) get(cfg data.SourceConfig) (*data.Corpus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if corpus, ok := c.m[cfg.Seed]; ok {
		return corpus, nil
	}
	corpus, err := data.Open(cfg)
	if err != nil {
		return nil, err
	}
	c.m[cfg.Seed] = corpus
	return corpus, nil
}

// Manifest is manifest.json: what a reader needs to know where the numbers came from.
type Manifest struct {
	Experiment        string     `json:"experiment"`
	ConfigFingerprint string     `json:"config_fingerprint"`
	CodeVersion       string     `json:"code_version"`
	Parent            string     `json:"parent,omitempty"`
	ParentSHA256      string     `json:"parent_sha256,omitempty"`
	Corpus            *data.Info `json:"corpus,omitempty"` // absent for an external trainer
	Machine           Machine    `json:"machine"`
	// Backend is what this invocation trains with; Backends every backend the run directory
	// has trained under, first to last, so a later invocation never rewrites what an earlier one
	// used (each branch's segments.jsonl says which steps ran where).
	Backend  string   `json:"backend"`
	Backends []string `json:"backends,omitempty"`
	Branches []string `json:"branches"`
}

// Machine describes where the sweep ran.
type Machine struct {
	Hostname string `json:"hostname"`
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	OS       string `json:"os"`
}

// writeManifest records where the numbers come from. corpora is nil for an external trainer,
// whose data cbs does not read; backend describes what trains the branches.
func writeManifest(p *Plan, version string, corpora *corpusCache, backend string) error {
	fp, err := p.Fingerprint()
	if err != nil {
		return err
	}
	b0 := p.Branches[0]
	host, _ := os.Hostname()
	m := Manifest{
		Experiment: p.Config.Experiment.Name, ConfigFingerprint: fp, CodeVersion: version,
		Machine: Machine{Hostname: host, CPU: blas.CPUInfo(), Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH},
		Backend: backend,
	}
	if corpora != nil {
		corpus, err := corpora.get(b0.Data)
		if err != nil {
			return err
		}
		info := corpus.Info()
		m.Corpus = &info
	}
	if b0.Parent != "" {
		m.Parent = b0.Parent
		weights := filepath.Join(b0.Parent, model.WeightsFile)
		if p.Config.Run.Executor == ExecutorExternal {
			// An external trainer's checkpoint is a file or a directory in its own format.
			weights = ""
			if fi, err := os.Stat(b0.Parent); err == nil && fi.Mode().IsRegular() {
				weights = b0.Parent
			}
		}
		if weights != "" {
			if m.ParentSHA256, err = model.FileSHA256(weights); err != nil {
				return err
			}
		}
	}
	for _, s := range p.Branches {
		m.Branches = append(m.Branches, s.ID)
	}
	var prev Manifest
	if raw, err := os.ReadFile(filepath.Join(p.Out, ManifestFile)); err == nil && json.Unmarshal(raw, &prev) == nil {
		m.Backends = prev.Backends
		if len(m.Backends) == 0 && prev.Backend != "" {
			m.Backends = []string{prev.Backend}
		}
	}
	if !slices.Contains(m.Backends, backend) {
		m.Backends = append(m.Backends, backend)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return atomicio.WriteFile(filepath.Join(p.Out, ManifestFile), append(b, '\n'), 0o644)
}
