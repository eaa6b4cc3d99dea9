package sweep

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"cbs/branch"
	"cbs/model"
	"cbs/runfmt"
)

func TestBranchCounts(t *testing.T) {
	for _, tc := range []struct {
		total, start, resume, done, failed int
		want                               string
	}{
		{4, 4, 0, 0, 0, "4 branches: 4 to start, 0 to resume, 0 done"},
		{4, 2, 2, 0, 0, "4 branches: 2 to start, 2 to resume, 0 done"},
		{3, 1, 0, 2, 0, "3 branches: 1 to start, 0 to resume, 2 done"},
		{1, 0, 1, 0, 0, "1 branch: 0 to start, 1 to resume, 0 done"},
		{4, 1, 1, 1, 1, "4 branches: 1 to start, 1 to resume, 1 done, 1 failed or diverged, left alone (--retry-failed reruns them)"},
	} {
		if got := branchCounts(tc.total, tc.start, tc.resume, tc.done, tc.failed); got != tc.want {
			t.Errorf("branchCounts(%d, %d, %d, %d, %d) = %q, want %q", tc.total, tc.start, tc.resume, tc.done, tc.failed, got, tc.want)
		}
	}
}

// TestTodoSummary: interrupted branches, which hold a checkpoint, count as resumed, whatever
// their state.json says; branches with no checkpoint start from the parent; done and failed
// ones are counted apart.
func TestTodoSummary(t *testing.T) {
	out := t.TempDir()
	p := &Plan{Out: out}
	for _, b := range []struct {
		id, state string
		ckpt      bool
	}{
		{"b1Ki", "", false},                         // never started
		{"b2Ki", runfmt.StatePending, false},        // interrupted before its first checkpoint
		{"b4Ki", runfmt.StatePending, true},         // interrupted: resumes
		{"b8Ki", runfmt.StateRunning, true},         // killed: resumes
		{"b16Ki", runfmt.StateDone, true},           // done
		{"b32Ki", runfmt.StateDiverged, true},       // left alone without --retry-failed
		{"b64Ki", runfmt.StateFailed, false},        // left alone without --retry-failed
		{"b128Ki", runfmt.StateRunning + "?", true}, // unreadable: runs again, from its checkpoint
	} {
		p.Branches = append(p.Branches, &branch.Spec{ID: b.id})
		dir := BranchDir(out, b.id)
		if err := os.MkdirAll(filepath.Join(dir, branch.CkptDir), 0o755); err != nil {
			t.Fatal(err)
		}
		if b.state != "" {
			os.WriteFile(filepath.Join(dir, runfmt.StateFile), []byte(`{"state": "`+b.state+`"}`), 0o644)
		}
		if b.ckpt {
			os.WriteFile(filepath.Join(dir, branch.CkptDir, model.TrainerFile), []byte("{}"), 0o644)
		}
	}
	o, todo := p.todo(Options{})
	want := "8 branches: 2 to start, 3 to resume, 1 done, 2 failed or diverged, left alone (--retry-failed reruns them)"
	if got := p.todoSummary(o, todo); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	o, todo = p.todo(Options{RetryFailed: true})
	want = "8 branches: 3 to start, 4 to resume, 1 done"
	if got := p.todoSummary(o, todo); got != want {
		t.Errorf("--retry-failed:\ngot  %q\nwant %q", got, want)
	}
}

// TestProgressLineETA: a branch's progress line has an ETA while it trains, and says done, not
// "ETA 0s", at its budget.
func TestProgressLineETA(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		tokens int64
		speed  float64
		want   string
	}{
		{0, 0, " ETA ?"},
		{32768, 1024, " ETA 32s"},
		{65536, 1024, " done"},
	} {
		got := line(branch.Progress{ID: "b1Ki-r0", Step: 1, Steps: 64, Tokens: tc.tokens, Budget: 65536, TrainLoss: 3, EvalLoss: nan, TokensPerS: tc.speed})
		if !strings.HasSuffix(got, tc.want) {
			t.Errorf("%d of 65536 tokens at %g tokens/s: %q, want it to end with %q", tc.tokens, tc.speed, got, tc.want)
		}
	}
}

// TestManifestRecordsBackends: once a local sweep's branches ran, the manifest names the backend
// each branch's segments.jsonl recorded, not what was asked for before they ran; a rerun with
// nothing to train leaves the manifest as it was.
func TestManifestRecordsBackends(t *testing.T) {
	dir := t.TempDir()
	p, err := Load(writeFile(t, dir, "s.toml", `
[experiment]
name = "backends"
seed = 1
out = "run"
[model]
hidden_size = 16
layers = 1
heads = 2
kv_heads = 1
intermediate_size = 32
[objective]
name = "ar"
[data]
source = "synthetic"
seq_len = 16
synthetic_tokens = 16384
[optimizer]
lr = 1e-3
[branches]
budget = "1Ki"
batch_sizes = ["256", "512"]
micro_batch = 4
[eval]
tokens = "256"
[run]
parallel = 2
threads = 2
`))
	if err != nil {
		t.Fatal(err)
	}
	read := func() Manifest {
		var m Manifest
		if err := json.Unmarshal([]byte(readFile(t, filepath.Join(p.Out, runfmt.ManifestFile))), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	var first string
	for run := 0; run < 2; run++ {
		o, err := Execute(context.Background(), p, Options{})
		if err != nil || o.AnyFailed() {
			t.Fatalf("run %d: %v, %v", run, err, o.Failed)
		}
		m := read()
		var ran []string
		for _, s := range p.Branches {
			segs, err := runfmt.ReadSegments(BranchDir(p.Out, s.ID))
			if err != nil || len(segs) != 1 {
				t.Fatalf("%s: segments %v, %v", s.ID, segs, err)
			}
			if got := m.BranchBackends[s.ID]; len(got) != 1 || got[0] != segs[0].Backend {
				t.Errorf("run %d: %s: manifest says %q, segments.jsonl %q", run, s.ID, got, segs[0].Backend)
			}
			if !slices.Contains(ran, segs[0].Backend) {
				ran = append(ran, segs[0].Backend)
			}
		}
		if m.Backend != strings.Join(ran, "; ") || !reflect.DeepEqual(m.Backends, ran) {
			t.Errorf("run %d: backend %q, backends %q; want %q", run, m.Backend, m.Backends, ran)
		}
		if run == 0 {
			first = readFile(t, filepath.Join(p.Out, runfmt.ManifestFile))
		} else if again := readFile(t, filepath.Join(p.Out, runfmt.ManifestFile)); again != first {
			t.Errorf("a rerun with nothing to train rewrote the manifest:\n%s\nwas:\n%s", again, first)
		}
	}
}

// TestThreadShare: freed threads go to the running branches only once none waits to start,
// shared as evenly as whole threads allow.
func TestThreadShare(t *testing.T) {
	s := &threadShare{total: 5, waiting: 3, budgets: map[string]*atomic.Int32{}}
	a, b := s.start("a", 2), s.start("b", 2)
	s.finish("a") // c still waits: b keeps its 2
	if b.Load() != 2 {
		t.Fatalf("b has %d threads while a branch waits, want 2", b.Load())
	}
	c := s.start("c", 2)
	s.finish("b")
	if c.Load() != 5 {
		t.Errorf("c alone has %d threads, want all 5", c.Load())
	}
	if a.Load() != 2 {
		t.Errorf("a finished branch's budget changed to %d", a.Load())
	}
	s2 := &threadShare{total: 5, waiting: 3, budgets: map[string]*atomic.Int32{}}
	x, _, z := s2.start("x", 1), s2.start("y", 1), s2.start("z", 1)
	s2.finish("y")
	if x.Load() != 3 || z.Load() != 2 {
		t.Errorf("x, z have %d, %d threads, want 3, 2 (the first started takes the remainder)", x.Load(), z.Load())
	}
}

// TestFreedThreadsKeepResults: the last branch of a sweep takes the threads its finished
// siblings freed, and every branch's metrics are the bits of a sweep run one branch at a time
// on one thread.
func TestFreedThreadsKeepResults(t *testing.T) {
	dir := t.TempDir()
	config := func(out, run string) string {
		return writeFile(t, dir, out+".toml", `
[experiment]
name = "threads"
seed = 3
out = "`+out+`"
[model]
hidden_size = 32
layers = 1
heads = 2
kv_heads = 1
intermediate_size = 64
[objective]
name = "mdm"
[data]
source = "synthetic"
seq_len = 32
synthetic_tokens = 65536
[optimizer]
lr = 1e-3
[branches]
budget = "8Ki"
batch_sizes = ["256", "512", "1Ki"]
micro_batch = 4
[eval]
tokens = "256"
[run]
`+run+`
`)
	}
	var logs strings.Builder
	shared, err := Load(config("shared", "parallel = 2\nthreads = 2"))
	if err != nil {
		t.Fatal(err)
	}
	if o, err := Execute(context.Background(), shared, Options{Log: &logs}); err != nil || o.AnyFailed() {
		t.Fatalf("%v, %v", err, o.Failed)
	}
	if !strings.Contains(logs.String(), "2 threads from step") {
		t.Errorf("no branch took the freed threads; log:\n%s", logs.String())
	}
	alone, err := Load(config("alone", "parallel = 1\nthreads = 1"))
	if err != nil {
		t.Fatal(err)
	}
	if o, err := Execute(context.Background(), alone, Options{}); err != nil || o.AnyFailed() {
		t.Fatalf("%v, %v", err, o.Failed)
	}
	for _, s := range shared.Branches {
		a := readFile(t, filepath.Join(BranchDir(shared.Out, s.ID), runfmt.MetricsFile))
		b := readFile(t, filepath.Join(BranchDir(alone.Out, s.ID), runfmt.MetricsFile))
		if a != b {
			t.Errorf("%s: metrics differ between the shared-thread and the one-thread sweep", s.ID)
		}
	}
}
