package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cbs/internal/atomicio"
	"cbs/runfmt"
	"cbs/sweep"
)

// TestStatusETA: only a running branch has an ETA; pending (interrupted, or waiting for its
// turn), stopped, failed, diverged and done ones have none, even when their perf.jsonl recorded a
// speed; a Slurm branch has one only while its task runs.
func TestStatusETA(t *testing.T) {
	const budget, tokens, speed = 65536, 4096, 2048 // 30 s left at 2048 tokens/s
	task := func(state string) *sweep.SlurmTask { return &sweep.SlurmTask{Job: "12_0", State: state} }
	for _, tc := range []struct {
		name  string
		state string
		speed float64
		slurm *sweep.SlurmTask
		eta   float64
		cell  string
	}{
		{"running", runfmt.StateRunning, speed, nil, 30, "30s"},
		{"running, no speed yet", runfmt.StateRunning, 0, nil, 0, "-"},
		{"pending, never started", runfmt.StatePending, 0, nil, 0, ""},
		{"pending after an interrupt", runfmt.StatePending, speed, nil, 0, ""},
		{"stopped", stateStopped, speed, nil, 0, ""},
		{"failed", runfmt.StateFailed, speed, nil, 0, ""},
		{"diverged", runfmt.StateDiverged, speed, nil, 0, ""},
		{"done", runfmt.StateDone, speed, nil, 0, ""},
		{"unreadable", stateUnreadable, speed, nil, 0, ""},
		{"slurm running", runfmt.StateRunning, speed, task("RUNNING"), 30, "30s"},
		{"slurm queued again", runfmt.StateRunning, speed, task("REQUEUED"), 0, "-"},
		{"slurm pending", runfmt.StatePending, speed, task("PENDING"), 0, ""},
	} {
		r := branchStatus{ID: "b", State: tc.state, Tokens: tokens, Budget: budget, TokensPerS: tc.speed, Slurm: tc.slurm}
		r.ETASeconds = etaSeconds(r)
		if r.ETASeconds != tc.eta {
			t.Errorf("%s: ETA %g s, want %g", tc.name, r.ETASeconds, tc.eta)
		}
		if got := etaCell(r); got != tc.cell {
			t.Errorf("%s: ETA cell %q, want %q", tc.name, got, tc.cell)
		}
	}
	// A branch at its budget has nothing left.
	if eta := etaSeconds(branchStatus{State: runfmt.StateRunning, Tokens: budget, Budget: budget, TokensPerS: speed}); eta != 0 {
		t.Errorf("running at its budget: ETA %g s, want 0", eta)
	}
}

// TestStatusSlurmStopped: a branch whose state.json says running while Slurm says its task has
// ended is shown stopped, with the task's state, and without an ETA.
func TestStatusSlurmStopped(t *testing.T) {
	for _, tc := range []struct {
		state, task, want string
	}{
		{runfmt.StateRunning, "CANCELLED", stateStopped},
		{runfmt.StateRunning, "TIMEOUT", stateStopped},
		{runfmt.StateRunning, "NODE_FAIL", stateStopped},
		{runfmt.StateRunning, "RUNNING", runfmt.StateRunning},
		{runfmt.StateRunning, "REQUEUED", runfmt.StateRunning},
		{runfmt.StateDone, "COMPLETED", runfmt.StateDone},
		{runfmt.StateFailed, "FAILED", runfmt.StateFailed},
	} {
		r := branchStatus{State: tc.state, Tokens: 4096, Budget: 65536, TokensPerS: 2048, Slurm: &sweep.SlurmTask{Job: "12_0", State: tc.task}}
		slurmStopped(&r)
		if r.State != tc.want {
			t.Errorf("state %s, task %s: shown %s, want %s", tc.state, tc.task, r.State, tc.want)
		}
		if r.State == stateStopped && (!strings.Contains(r.Reason, tc.task) || etaSeconds(r) != 0) {
			t.Errorf("state %s, task %s: reason %q, ETA %g s; want the task's state named and no ETA", tc.state, tc.task, r.Reason, etaSeconds(r))
		}
	}
}

// TestStatusRows: cbs status on a run directory with a branch of each kind shows an ETA for the
// running one alone.
func TestStatusRows(t *testing.T) {
	dir := t.TempDir()
	write := func(id, state string, tokens int, perf bool) string {
		b := filepath.Join(dir, runfmt.BranchesDir, id)
		if err := os.MkdirAll(b, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(b, runfmt.SpecFile), []byte(`{"id": "`+id+`", "budget_tokens": 65536, "batch_tokens": 2048}`), 0o644)
		if state != "" {
			os.WriteFile(filepath.Join(b, runfmt.StateFile), []byte(`{"state": "`+state+`"}`), 0o644)
		}
		if tokens > 0 {
			m := `{"tokens": 4096, "step": 2, "train_loss": 3}`
			if tokens == 65536 {
				m = `{"tokens": 65536, "step": 32, "train_loss": 2}`
			}
			os.WriteFile(filepath.Join(b, runfmt.MetricsFile), []byte(m+"\n"), 0o644)
		}
		if perf {
			os.WriteFile(filepath.Join(b, runfmt.PerfFile), []byte(`{"step": 2, "tokens": 4096, "tokens_per_s": 2048}`+"\n"), 0o644)
		}
		return b
	}
	write("a-new", "", 0, false)
	write("b-interrupted", runfmt.StatePending, 4096, true)
	write("c-done", runfmt.StateDone, 65536, true)
	write("d-killed", runfmt.StateRunning, 4096, true)
	lk, err := atomicio.Lock(write("e-running", runfmt.StateRunning, 4096, true))
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()

	rows, err := sweepStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		state string
		eta   float64
	}{
		"a-new": {runfmt.StatePending, 0}, "b-interrupted": {runfmt.StatePending, 0}, "c-done": {runfmt.StateDone, 0},
		"d-killed": {stateStopped, 0}, "e-running": {runfmt.StateRunning, 30},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for _, r := range rows {
		if w := want[r.ID]; r.State != w.state || r.ETASeconds != w.eta {
			t.Errorf("%s: %s, ETA %g s; want %s, ETA %g s", r.ID, r.State, r.ETASeconds, w.state, w.eta)
		}
	}
	code, stdout, stderr := cbs(t, "status", dir)
	if code != exitOK {
		t.Fatalf("status: exit %d\n%s", code, stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
		if running := strings.HasPrefix(line, "e-running"); strings.HasSuffix(line, " 30s") != running {
			t.Errorf("ETA shown for the wrong branches:\n%s", stdout)
		}
	}
}
