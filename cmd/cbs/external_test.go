package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExternalTrainerSweep drives the example trainer of experiments/external-trainer through
// a sweep end to end: every branch done, its metrics checked, a rerun does nothing, and cbs fit
// reads the run directory.
func TestExternalTrainerSweep(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not found: the example trainer is a Python script")
	}
	example, err := filepath.Abs("../../experiments/external-trainer")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	cfg := mustRead(t, filepath.Join(example, "sweep.toml"))
	cfg = strings.Replace(cfg, "seed = 1\n", fmt.Sprintf("seed = 1\nout = %q\n", out), 1)
	cfg = strings.Replace(cfg, "[external]\n", fmt.Sprintf("[external]\nworkdir = %q\n", example), 1)
	path := writeConfig(t, dir, "sweep.toml", cfg)

	code, stdout, stderr := cbs(t, "sweep", "--config", path, "--dry-run")
	if code != 0 || strings.Count(stdout, "python3 train.py --out "+out+"/branches/") != 5 || !strings.Contains(stdout, "--batch-seqs 512 ") {
		t.Fatalf("dry run: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("dry run created %s", out)
	}
	code, _, stderr = cbs(t, "sweep", "--config", path)
	if code != 0 {
		t.Fatalf("sweep exited %d: %s", code, stderr)
	}
	for _, b := range []struct {
		id    string
		steps int
	}{{"b1Ki-r0", 256}, {"b2Ki-r0", 128}, {"b4Ki-r0", 64}, {"b8Ki-r0", 32}, {"b16Ki-r0", 16}} {
		bdir := filepath.Join(out, "branches", b.id)
		if st := mustRead(t, filepath.Join(bdir, "state.json")); !strings.Contains(st, `"done"`) || !strings.Contains(st, fmt.Sprintf(`"step": %d`, b.steps)) {
			t.Errorf("%s: state %s", b.id, st)
		}
		if ms := readMetrics(t, filepath.Join(bdir, "metrics.jsonl")); len(ms) != b.steps || ms[len(ms)-1].EvalLoss == nil {
			t.Errorf("%s: %d metrics lines, want %d ending with an eval", b.id, len(ms), b.steps)
		}
		var run struct{ Argv []string }
		json.Unmarshal([]byte(mustRead(t, filepath.Join(bdir, "external.json"))), &run)
		if len(run.Argv) != 3 || !strings.Contains(run.Argv[2], "--out "+bdir+" ") {
			t.Errorf("%s: external.json argv %q", b.id, run.Argv)
		}
	}
	if code, _, stderr = cbs(t, "sweep", "--config", path); code != 0 || !strings.Contains(stderr, "already finished") {
		t.Errorf("rerun: exit %d, %q", code, stderr)
	}
	code, stdout, stderr = cbs(t, "fit", out, "--json")
	var fit struct {
		Ladder []struct {
			Batch float64 `json:"batch_tokens"`
		} `json:"ladder"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &fit) != nil || len(fit.Ladder) != 5 {
		t.Errorf("fit: exit %d, %d ladder rows\n%s", code, len(fit.Ladder), stderr)
	}
}

// extSweep is a one-branch external sweep (2 steps of 1Ki tokens) whose trainer is the shell
// script trainer.sh beside the config, given the metrics file to write as $1.
const extSweep = `
[experiment]
name = "bad"
seed = 1
out = %q
[data]
seq_len = 32
[schedule]
warmup = 0
[branches]
budget = "2Ki"
batch_sizes = ["1Ki"]
[run]
executor = "external"
[external]
command = "sh trainer.sh {metrics}"
`

// TestExternalBadTrainer: a trainer that exits non-zero or writes malformed metrics leaves its
// branch failed (or diverged) with the reason naming the line, and the sweep exits 3.
func TestExternalBadTrainer(t *testing.T) {
	ok1 := `{"tokens": 1024, "step": 1, "train_loss": 5.1}`
	for _, tc := range []struct {
		name, script, state, reason string
	}{
		{"good", `printf '%s\n%s\n' '` + ok1 + `' '{"tokens": 2048, "step": 2, "train_loss": 4.9}' > "$1"`, "done", ""},
		{"non-numeric loss", `printf '%s\n%s\n' '` + ok1 + `' '{"tokens": 2048, "step": 2, "train_loss": "4.9"}' > "$1"`,
			"failed", `metrics.jsonl line 2: train_loss = "4.9", want a number`},
		{"missing fields", `printf '%s\n%s\n' '` + ok1 + `' '{"tokens": 2048, "loss": 4.9}' > "$1"`,
			"failed", "metrics.jsonl line 2: missing key step (every line needs tokens, step, train_loss)"},
		{"truncated last line", `printf '%s\n%s' '` + ok1 + `' '{"tokens": 2048, "step": 2, "tra' > "$1"`,
			"failed", "metrics.jsonl line 2: truncated last line (no newline at the end of the file)"},
		{"exit status", `echo "CUDA out of memory" >&2; exit 7`, "failed", "trainer exited with status 7: CUDA out of memory"},
		{"NaN loss", `printf '%s\n%s\n' '` + ok1 + `' '{"tokens": 2048, "step": 2, "train_loss": NaN}' > "$1"`,
			"diverged", "metrics.jsonl line 2: non-finite number NaN"},
		{"short", `printf '%s\n' '` + ok1 + `' > "$1"`, "failed", "metrics.jsonl line 1: the metrics end at 1024 tokens (step 1), want the budget, 2048 tokens (2 steps)"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "run")
			writeConfig(t, dir, "trainer.sh", tc.script)
			cfg := writeConfig(t, dir, "bad.toml", fmt.Sprintf(extSweep, out))
			code, _, stderr := cbs(t, "sweep", "--config", cfg)
			var st struct{ State, Reason string }
			if b, err := os.ReadFile(filepath.Join(out, "branches", "b1Ki-r0", "state.json")); err != nil {
				t.Fatalf("exit %d: %s: %v", code, stderr, err)
			} else {
				json.Unmarshal(b, &st)
			}
			if tc.state == "done" {
				if code != 0 || st.State != "done" {
					t.Fatalf("exit %d, state %+v: %s", code, st, stderr)
				}
				return
			}
			if code != exitSomeFailed || !strings.Contains(stderr, tc.reason) {
				t.Errorf("exit %d, stderr %q; want 3 naming %q", code, stderr, tc.reason)
			}
			if st.State != tc.state || !strings.Contains(st.Reason, tc.reason) {
				t.Errorf("state.json %+v; want %s with %q", st, tc.state, tc.reason)
			}
			if _, stdout, _ := cbs(t, "status", out); !strings.Contains(stdout, tc.reason) {
				t.Errorf("status does not show the reason:\n%s", stdout)
			}
		})
	}
}
