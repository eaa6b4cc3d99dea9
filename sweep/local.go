package sweep

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
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
}

// Outcome is what became of each branch.
type Outcome struct {
	States map[string]string // branch id -> final state
	Failed []string          // failed or diverged branches, with reasons
}

// AnyFailed reports whether a branch failed or diverged.
func (o *Outcome) AnyFailed() bool { return len(o.Failed) > 0 }

// ErrInterrupted: the context was cancelled; running branches checkpointed.
var ErrInterrupted = branch.ErrInterrupted

// Execute runs the plan's branches locally, run.parallel at a time, sharing run.threads cores.
// Done branches are skipped, interrupted ones continue from their checkpoints, failed and
// diverged ones are left alone unless RetryFailed.
func Execute(ctx context.Context, p *Plan, opts Options) (*Outcome, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if err := os.MkdirAll(p.Out, 0o755); err != nil {
		return nil, err
	}
	lk, err := lock(p.Out)
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	if err := p.prepare(); err != nil {
		return nil, err
	}
	c := p.Config
	threads := c.Run.Threads
	if threads == 0 {
		threads = runtime.NumCPU()
	}
	parallel := min(c.Run.Parallel, len(p.Branches))
	perBranch := max(1, threads/parallel)

	corpora := &corpusCache{m: map[uint64]*data.Corpus{}}
	if err := writeManifest(p, opts.CodeVersion, corpora, perBranch); err != nil {
		return nil, err
	}

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
	if len(todo) == 0 {
		fmt.Fprintf(opts.Log, "%s: all %d branches already finished\n", p.Out, len(p.Branches))
		return out, nil
	}
	fmt.Fprintf(opts.Log, "%s: %d of %d branches to run, %d at a time, %d threads each\n", p.Out, len(todo), len(p.Branches), parallel, perBranch)

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
	Experiment        string    `json:"experiment"`
	ConfigFingerprint string    `json:"config_fingerprint"`
	CodeVersion       string    `json:"code_version"`
	Parent            string    `json:"parent,omitempty"`
	ParentSHA256      string    `json:"parent_sha256,omitempty"`
	Corpus            data.Info `json:"corpus"`
	Machine           Machine   `json:"machine"`
	Backend           string    `json:"backend"`
	Branches          []string  `json:"branches"`
}

// Machine describes where the sweep ran.
type Machine struct {
	Hostname string `json:"hostname"`
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	OS       string `json:"os"`
}

func writeManifest(p *Plan, version string, corpora *corpusCache, threads int) error {
	fp, err := p.Fingerprint()
	if err != nil {
		return err
	}
	b0 := p.Branches[0]
	corpus, err := corpora.get(b0.Data)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	_, info := blas.Default()
	m := Manifest{
		Experiment: p.Config.Experiment.Name, ConfigFingerprint: fp, CodeVersion: version,
		Corpus:  corpus.Info(),
		Machine: Machine{Hostname: host, CPU: blas.CPUInfo(), Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH},
		Backend: fmt.Sprintf("cpu, %d threads per branch, %s", threads, info),
	}
	if b0.Parent != "" {
		m.Parent = b0.Parent
		if m.ParentSHA256, err = sha256File(filepath.Join(b0.Parent, model.WeightsFile)); err != nil {
			return err
		}
	}
	for _, s := range p.Branches {
		m.Branches = append(m.Branches, s.ID)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return atomicio.WriteFile(filepath.Join(p.Out, ManifestFile), append(b, '\n'), 0o644)
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
