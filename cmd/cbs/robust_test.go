package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"cbs/branch"
	"cbs/data"
	"cbs/internal/atomicio"
	"cbs/model"
	"cbs/runfmt"
)

// robustFixture trains the tiny config into a directory of t's: a finished run with branch.json
// and a checkpoint holding trainer.json and the optimizer state.
func robustFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "tiny.toml", fmt.Sprintf(tinyMDM, "8Ki", "4Ki"))
	run := filepath.Join(dir, "run")
	if code, _, stderr := cbs(t, "train", "--config", cfg, "--out", run, "--quiet"); code != 0 {
		t.Fatalf("fixture train: exit %d: %s", code, stderr)
	}
	return run
}

// copyCkpt copies the fixture's checkpoint to a fresh directory and applies edit to it.
func copyCkpt(t *testing.T, edit func(dir string)) string {
	t.Helper()
	src := filepath.Join(robustFixture(t), branch.CkptDir)
	dst := filepath.Join(t.TempDir(), "ckpt")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(dst)
	}
	return dst
}

func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s lacks %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// editConfig edits config.json and drops trainer.json, whose sha256 list would catch the edit
// before the check under test.
func editConfig(t *testing.T, old, new string) func(string) {
	return func(dir string) {
		editFile(t, filepath.Join(dir, model.ConfigFile), old, new)
		os.Remove(filepath.Join(dir, model.TrainerFile))
	}
}

type robustCase struct {
	name   string
	args   func(t *testing.T) []string
	code   int
	phrase string
}

func runRobust(t *testing.T, tests []robustCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := cbs(t, tc.args(t)...)
			if code != tc.code || !strings.Contains(stderr, tc.phrase) {
				t.Errorf("exit %d, stderr %q, stdout %q; want exit %d and %q", code, stderr, stdout, tc.code, tc.phrase)
			}
		})
	}
}

// TestRobustTrain: a locked run directory, a bad or oversized [model] table and a negative
// seed are refused before anything is written, with the key, the value and what is allowed.
func TestRobustTrain(t *testing.T) {
	config := func(old, new string) func(t *testing.T) []string {
		return func(t *testing.T) []string {
			dir := t.TempDir()
			body := fmt.Sprintf(tinyMDM, "8Ki", "4Ki")
			if !strings.Contains(body, old) {
				t.Fatalf("tiny config lacks %q", old)
			}
			cfg := writeConfig(t, dir, "c.toml", strings.Replace(body, old, new, 1))
			return []string{"train", "--config", cfg, "--out", filepath.Join(dir, "run"), "--quiet"}
		}
	}
	locked := func(t *testing.T, dir string) {
		lk, err := atomicio.Lock(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lk.Close() })
	}
	runRobust(t, []robustCase{
		{"locked out dir", func(t *testing.T) []string {
			dir := t.TempDir()
			cfg := writeConfig(t, dir, "c.toml", fmt.Sprintf(tinyMDM, "8Ki", "4Ki"))
			out := filepath.Join(dir, "run")
			os.Mkdir(out, 0o755)
			locked(t, out)
			return []string{"train", "--config", cfg, "--out", out, "--quiet"}
		}, exitError, "is in use by another cbs process"},
		{"locked branch", func(t *testing.T) []string {
			dir := filepath.Join(t.TempDir(), "b")
			os.Mkdir(dir, 0o755)
			b, err := os.ReadFile(filepath.Join(robustFixture(t), runfmt.SpecFile))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, runfmt.SpecFile), b, 0o644)
			locked(t, dir)
			return []string{"train", "--branch", dir, "--quiet"}
		}, exitError, "is in use by another cbs process"},
		{"hidden_size 1e9", config("hidden_size = 32", "hidden_size = 1000000000"), exitUsage, "model.hidden_size = 1000000000 gives"},
		{"layers 1e8", config("layers = 2", "layers = 100000000"), exitUsage, "model.layers = 100000000 gives"},
		{"layers -1", config("layers = 2", "layers = -1"), exitUsage, "model.layers = -1, want a positive integer"},
		{"heads 0", config("heads = 4", "heads = 0"), exitUsage, "model.heads = 0, want a positive integer"},
		{"kv_heads 3", config("kv_heads = 2", "kv_heads = 3"), exitUsage, "model.kv_heads = 3 does not divide model.heads = 4"},
		{"seed -3", config("seed = 3", "seed = -3"), exitUsage, "experiment.seed = -3, want an integer >= 0"},
	})
	// A refused run leaves nothing behind: the lock test's directory holds no metrics.
}

// TestRobustTrainMemoryMessage: the size refusal gives the machine's memory and where it came from.
func TestRobustTrainMemoryMessage(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "c.toml", strings.Replace(fmt.Sprintf(tinyMDM, "8Ki", "4Ki"), "layers = 2", "layers = 100000000", 1))
	_, _, stderr := cbs(t, "train", "--config", cfg, "--out", filepath.Join(dir, "run"))
	for _, w := range []string{"of float32 weights alone", "this machine has", "MemTotal in /proc/meminfo", "at most"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("message lacks %q: %s", w, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "run")); err == nil {
		t.Errorf("a refused config created its run directory")
	}
}

// TestRobustEval: eval refuses what would give a silent wrong answer or a crash.
func TestRobustEval(t *testing.T) {
	tokens := func(t *testing.T) string {
		p := filepath.Join(t.TempDir(), "x.npy")
		randomTokens(t, p, 2, 32, 200, 1)
		return p
	}
	maskFiles := func(t *testing.T, pv float64) (string, string) {
		dir := t.TempDir()
		m := make([]bool, 2*32)
		for i := range m {
			m[i] = i%3 == 0
		}
		mp, pp := filepath.Join(dir, "m.npy"), filepath.Join(dir, "p.npy")
		if err := data.WriteNPYFile(mp, data.BoolArray(m, 2, 32)); err != nil {
			t.Fatal(err)
		}
		if err := data.WriteNPYFile(pp, data.Float64Array([]float64{0.5, pv}, 2)); err != nil {
			t.Fatal(err)
		}
		return mp, pp
	}
	withP := func(pv float64) func(t *testing.T) []string {
		return func(t *testing.T) []string {
			mp, pp := maskFiles(t, pv)
			return []string{"eval", "--checkpoint", filepath.Join(robustFixture(t), branch.CkptDir), "--tokens", tokens(t),
				"--objective", "mdm", "--mask", mp, "--p", pp}
		}
	}
	runRobust(t, []robustCase{
		{"ok", func(t *testing.T) []string {
			return []string{"eval", "--checkpoint", filepath.Join(robustFixture(t), branch.CkptDir), "--tokens", tokens(t), "--objective", "ar"}
		}, exitOK, ""},
		{"nan weights", func(t *testing.T) []string {
			dir := copyCkpt(t, func(dir string) {
				p, err := model.Load[float32](dir)
				if err != nil {
					t.Fatal(err)
				}
				for i := range p.Data {
					p.Data[i] = float32(math.NaN())
				}
				os.RemoveAll(dir)
				if err := model.Save(dir, p, nil, nil, ""); err != nil {
					t.Fatal(err)
				}
			})
			return []string{"eval", "--checkpoint", dir, "--tokens", tokens(t), "--objective", "ar"}
		}, exitError, "is NaN"},
		{"damaged weights", func(t *testing.T) []string {
			dir := copyCkpt(t, func(dir string) {
				path := filepath.Join(dir, model.WeightsFile)
				b, _ := os.ReadFile(path)
				b[len(b)-1] ^= 0x40
				os.WriteFile(path, b, 0o644)
			})
			return []string{"eval", "--checkpoint", dir, "--tokens", tokens(t), "--objective", "ar"}
		}, exitError, "the checkpoint is damaged"},
		{"p 0", withP(0), exitUsage, "p[1] = 0, want 0 < p <= 1"},
		{"p negative", withP(-0.5), exitUsage, "p[1] = -0.5, want 0 < p <= 1"},
		{"p above 1", withP(1.5), exitUsage, "p[1] = 1.5, want 0 < p <= 1"},
		{"p 1", withP(1), exitOK, ""},
		{"mask-eps 5", func(t *testing.T) []string {
			return []string{"eval", "--checkpoint", filepath.Join(robustFixture(t), branch.CkptDir), "--tokens", tokens(t), "--objective", "mdm", "--mask-eps", "5"}
		}, exitUsage, "--mask-eps = 5, want 0 < eps < 1"},
		{"vocab 1e12", func(t *testing.T) []string {
			dir := copyCkpt(t, editConfig(t, `"vocab_size": 260`, `"vocab_size": 1000000000000`))
			return []string{"eval", "--checkpoint", dir, "--tokens", tokens(t), "--objective", "ar"}
		}, exitError, "vocab_size = 1000000000000 gives"},
	})
}

// TestRobustCkpt: inspect reports a checkpoint it cannot vouch for as an error.
func TestRobustCkpt(t *testing.T) {
	inspect := func(edit func(string)) func(t *testing.T) []string {
		return func(t *testing.T) []string { return []string{"ckpt", "inspect", copyCkpt(t, edit)} }
	}
	runRobust(t, []robustCase{
		{"ok", inspect(nil), exitOK, ""},
		{"shapes from another config", inspect(editConfig(t, `"intermediate_size": 64`, `"intermediate_size": 48`)), exitError,
			"model.safetensors does not match config.json: model.layers.0.mlp.gate_proj.weight has shape [64 32], config.json implies [48 32]"},
		{"damaged optimizer", inspect(func(dir string) {
			os.WriteFile(filepath.Join(dir, model.OptimizerFile), []byte("not a safetensors file"), 0o644)
			os.Remove(filepath.Join(dir, model.TrainerFile))
		}), exitError, model.OptimizerFile},
		{"damaged optimizer, trainer.json", inspect(func(dir string) {
			os.WriteFile(filepath.Join(dir, model.OptimizerFile), []byte("not a safetensors file"), 0o644)
		}), exitError, model.OptimizerFile},
		{"layers 1e8", inspect(editConfig(t, `"num_hidden_layers": 2`, `"num_hidden_layers": 100000000`)), exitError,
			"num_hidden_layers = 100000000 gives"},
	})
}

// TestRobustStatus: a state.json that cannot be read is shown as such, not as pending.
func TestRobustStatus(t *testing.T) {
	sweepDir := func(state string) func(t *testing.T) []string {
		return func(t *testing.T) []string {
			dir := t.TempDir()
			b := filepath.Join(dir, "branches", "b1")
			os.MkdirAll(b, 0o755)
			if state != "" {
				os.WriteFile(filepath.Join(b, runfmt.StateFile), []byte(state), 0o644)
			}
			return []string{"status", dir}
		}
	}
	runRobust(t, []robustCase{
		{"no state", sweepDir(""), exitOK, ""},
		{"garbage", sweepDir("\x00\x01garbage"), exitError, "state.json of 1 branch(es) is unreadable: b1"},
		{"unknown state", sweepDir(`{"state": "finished"}`), exitError, "is unreadable"},
		{"done", sweepDir(`{"state": "done", "step": 4, "tokens": 8192}`), exitOK, ""},
	})
	code, stdout, _ := cbs(t, sweepDir("garbage")(t)...)
	if code != exitError || !strings.Contains(stdout, "unreadable") || strings.Contains(stdout, "pending") {
		t.Errorf("status of a garbage state.json: exit %d\n%s", code, stdout)
	}
	// A branch that says running with no process holding it was killed: stopped, with no ETA.
	args := sweepDir(`{"state": "running", "step": 2, "tokens": 4096}`)(t)
	b := filepath.Join(args[1], "branches", "b1")
	os.WriteFile(filepath.Join(b, runfmt.SpecFile), []byte(`{"id": "b1", "budget_tokens": 65536, "batch_tokens": 2048}`), 0o644)
	os.WriteFile(filepath.Join(b, runfmt.MetricsFile), []byte(`{"tokens": 4096, "step": 2, "train_loss": 3}`+"\n"), 0o644)
	os.WriteFile(filepath.Join(b, runfmt.PerfFile), []byte(`{"step": 2, "tokens": 4096, "tokens_per_s": 2048}`+"\n"), 0o644)
	code, stdout, _ = cbs(t, args...)
	if code != exitOK || !strings.Contains(stdout, "stopped") || strings.Contains(stdout, "running") || strings.Contains(stdout, "30s") {
		t.Errorf("status of a killed branch: exit %d\n%s", code, stdout)
	}
	// While a process holds it, it is running.
	lk, err := atomicio.Lock(b)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	if _, stdout, _ = cbs(t, args...); !strings.Contains(stdout, "running") {
		t.Errorf("status of a branch whose lock is held:\n%s", stdout)
	}
}

// TestRobustPanicExit: a panic in a verb exits 1, not Go's 2, which reads as bad usage.
func TestRobustPanicExit(t *testing.T) {
	saved := verbs
	defer func() { verbs = saved }()
	verbs = append(verbs[:len(verbs):len(verbs)], func() *cobra.Command {
		return &cobra.Command{Use: "robust-panic", RunE: func(*cobra.Command, []string) error { panic("boom") }}
	})
	code, _, stderr := cbs(t, "robust-panic")
	if code != exitError || !strings.Contains(stderr, "panic: boom") || !strings.Contains(stderr, "goroutine") {
		t.Errorf("exit %d, %q; want 1 with the panic and its stack", code, stderr)
	}
}
