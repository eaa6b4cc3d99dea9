package branch

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cbs/internal/atomicio"
	"cbs/model"
	"cbs/runfmt"
)

func readStateFile(t *testing.T, dir string) (runfmt.State, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, runfmt.StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return runfmt.State{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var st runfmt.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s: %v", runfmt.StateFile, err)
	}
	return st, true
}

// TestRunRobust: a locked directory is refused without touching it, a panic leaves the branch
// failed with the stack in log.txt, and state.json follows the checkpoints.
func TestRunRobust(t *testing.T) {
	tests := []struct {
		name      string
		locked    bool
		panicAt   int // step whose progress report panics; 0: none
		wantErr   string
		wantState string // "" : no state.json
		wantLog   []string
	}{
		{name: "locked", locked: true, wantErr: "in use by another cbs process"},
		{name: "panic", panicAt: 3, wantErr: "panic: boom", wantState: runfmt.StateFailed, wantLog: []string{"panic: boom", "goroutine", "runtime/debug.Stack"}},
		{name: "done", wantState: runfmt.StateDone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.locked {
				lk, err := atomicio.Lock(dir)
				if err != nil {
					t.Fatal(err)
				}
				defer lk.Close()
			}
			s := tinySpec(model.AR)
			s.CheckpointEvery = 1024 // every second step
			var stateSteps []int
			opts := Options{Dir: dir, Progress: func(p Progress) {
				if st, ok := readStateFile(t, dir); ok && st.State == runfmt.StateRunning {
					stateSteps = append(stateSteps, st.Step)
				}
				if p.Step == tc.panicAt {
					panic("boom")
				}
			}}
			err := Run(context.Background(), s, opts)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Run: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Run: %v, want an error containing %q", err, tc.wantErr)
			}
			st, ok := readStateFile(t, dir)
			switch {
			case tc.wantState == "" && ok:
				t.Errorf("state.json written: %+v", st)
			case tc.wantState != "" && !ok:
				t.Errorf("no state.json, want %s", tc.wantState)
			case ok && st.State != tc.wantState:
				t.Errorf("state %q (%s), want %q", st.State, st.Reason, tc.wantState)
			}
			logb, _ := os.ReadFile(filepath.Join(dir, "log.txt"))
			for _, w := range tc.wantLog {
				if !strings.Contains(string(logb), w) {
					t.Errorf("log.txt lacks %q:\n%s", w, logb)
				}
			}
			if tc.name == "done" {
				// Progress of step k sees the checkpoint of the last even step before it.
				want := []int{0, 0, 2, 2, 4, 4, 6, 6}
				if len(stateSteps) != len(want) {
					t.Fatalf("state.json steps seen during the run: %v, want %v", stateSteps, want)
				}
				for i := range want {
					if stateSteps[i] != want[i] {
						t.Fatalf("state.json steps seen during the run: %v, want %v", stateSteps, want)
					}
				}
				if st.Step != s.Steps() || st.Tokens != int64(s.Budget) {
					t.Errorf("final state step %d tokens %d, want %d and %d", st.Step, st.Tokens, s.Steps(), s.Budget)
				}
			}
		})
	}
}

// TestRunPanicThenRerun: the branch a panic left failed runs again from its last checkpoint and
// ends as a run never interrupted does.
func TestRunPanicThenRerun(t *testing.T) {
	dir := t.TempDir()
	ref := t.TempDir()
	s := tinySpec(model.MDM)
	s.CheckpointEvery = 1024
	err := Run(context.Background(), s, Options{Dir: dir, Progress: func(p Progress) {
		if p.Step == 5 {
			panic("boom")
		}
	}})
	var pe *PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("Run: %v, want a PanicError", err)
	}
	if err := Run(context.Background(), s, Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), tinySpec(model.MDM), Options{Dir: ref}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(dir, runfmt.MetricsFile))
	b, _ := os.ReadFile(filepath.Join(ref, runfmt.MetricsFile))
	if string(a) != string(b) {
		t.Errorf("metrics.jsonl after a panic and a rerun differs from an uninterrupted run")
	}
}
