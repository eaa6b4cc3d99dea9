package sweep

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"cbs/branch"
	"cbs/data"
	"cbs/model"
	"cbs/runfmt"
)

// local trains the branches with cbs in this process, run.parallel at a time, sharing
// run.threads cores.
type local struct {
	p        *Plan
	opts     Options
	corpora  *corpusCache
	parallel int // branches at a time
	threads  int // threads of each branch
}

func newLocal(p *Plan, opts Options, corpora *corpusCache) *local {
	threads := p.Config.Run.Threads
	if threads == 0 {
		threads = runtime.NumCPU()
	}
	parallel := min(p.Config.Run.Parallel, len(p.Branches))
	return &local{p: p, opts: opts, corpora: corpora, parallel: parallel, threads: max(1, threads/parallel)}
}

func (l *local) backend() (string, bool) {
	return fmt.Sprintf("local, run.device %q, %d %s per branch", l.p.Config.Run.Device, l.threads, plural(l.threads, "thread", "threads")), false
}

func (l *local) dryRun(context.Context, []*branch.Spec) error {
	fmt.Fprintf(l.opts.Stdout, "# run.executor = \"local\": cbs sweep trains these branches in this process\n")
	l.p.Print(l.opts.Stdout)
	return nil
}

func (l *local) run(ctx context.Context, todo []*branch.Spec, out *Outcome) error {
	p := l.p
	// Every branch to run holds its spec, with the threads it runs with, before the first
	// starts: `cbs train --branch` and the analysis can read any of them, run or not.
	specs := make([]*branch.Spec, len(todo))
	for i, s := range todo {
		w := *s
		w.Threads = l.threads
		if err := writeBranchFiles(p, &w); err != nil {
			return err
		}
		specs[i] = &w
	}
	fmt.Fprintf(l.opts.Log, "%s: %s; %d at a time, %d %s each\n", p.Out, p.todoSummary(out, todo), l.parallel, l.threads, plural(l.threads, "thread", "threads"))
	board := newBoard(l.opts.Log, l.opts.Terminal)
	defer board.stop()
	share := &threadShare{total: l.threads * l.parallel, waiting: len(specs), budgets: map[string]*atomic.Int32{}}
	return pool(ctx, l.parallel, specs, out, func(s *branch.Spec) error {
		threads := share.start(s.ID, l.threads)
		defer share.finish(s.ID)
		corpus, err := l.corpora.get(s.Data)
		if err == nil {
			err = branch.Run(ctx, s, branch.Options{
				Dir: BranchDir(p.Out, s.ID), Progress: board.update, Log: board.logWriter(), Corpus: corpus,
				Threads: threads,
			})
		}
		board.finish(s.ID)
		if failed(err) {
			board.logf("%s failed: %v", s.ID, err)
		}
		return err
	})
}

// threadShare hands the threads of the branches that finished to those still running, once no
// branch waits to start: the last branches of a sweep then use the whole machine. Results do not
// depend on the thread count, so this changes only how fast they come.
type threadShare struct {
	mu      sync.Mutex
	total   int                      // threads of all branches together
	waiting int                      // branches not started yet
	budgets map[string]*atomic.Int32 // the thread budget of each running branch
	running []string                 // running branches, in the order they started
}

// start registers branch id, running on threads, and returns its budget.
func (t *threadShare) start(id string, threads int) *atomic.Int32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waiting--
	b := new(atomic.Int32)
	b.Store(int32(threads))
	t.budgets[id] = b
	t.running = append(t.running, id)
	return b
}

// finish removes branch id and, when no branch waits, shares all threads among the rest.
func (t *threadShare) finish(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.budgets, id)
	t.running = slices.DeleteFunc(t.running, func(r string) bool { return r == id })
	n := len(t.running)
	if t.waiting > 0 || n == 0 {
		return
	}
	for i, r := range t.running {
		share := t.total / n
		if i < t.total%n {
			share++
		}
		t.budgets[r].Store(int32(max(1, share)))
	}
}

// plural is one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
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
		if st == runfmt.StateDone {
			done++
		}
	}
	return branchCounts(len(p.Branches), len(todo)-resume, resume, done, len(out.Failed))
}

// branchCounts is the message todoSummary prints: total branches, those to start from the
// parent, those to resume from their own checkpoint, those done, and failed or diverged ones
// left alone (without --retry-failed).
func branchCounts(total, start, resume, done, failed int) string {
	msg := fmt.Sprintf("%d %s: %d to start, %d to resume, %d done", total, plural(total, "branch", "branches"), start, resume, done)
	if failed > 0 {
		msg += fmt.Sprintf(", %d failed or diverged, left alone (--retry-failed reruns them)", failed)
	}
	return msg
}

// corpusCache opens each distinct data config once; replicates differ in their data seed.
type corpusCache struct {
	mu sync.Mutex
	m  map[uint64]*data.Corpus
}

func newCorpusCache() *corpusCache { return &corpusCache{m: map[uint64]*data.Corpus{}} }

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
