package main

import (
	"archive/zip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"cbs/data"
	"cbs/internal/torchref"
	"cbs/model"
	"cbs/runfmt"
)

// branchSweep is a small sweep from a tiny parent: two batch sizes, two seed replicates (the
// second reads the tokens after the fork in its own order), an LR multiplier on one group.
// Format with the run directory, the parent, the objective and the [run] and [external] tables.
const branchSweep = `
[experiment]
name = "xt"
seed = 1
out = %q
[parent]
checkpoint = %q
optimizer_state = "keep"
[objective]
name = %q
[data]
source = "synthetic"
seq_len = 32
synthetic_tokens = 262144
[optimizer]
lr = 3e-3
[optimizer.groups]
attention = 2
[schedule]
shape = "cosine"
warmup = "4Ki"
min_lr_ratio = 0.1
[branches]
budget = "32Ki"
batch_sizes = ["1Ki", "2Ki"]
replicates = 2
lr_scaling = "sqrt"
reference_batch = "1Ki"
micro_batch = 16
[eval]
every = "8Ki"
tokens = "4Ki"
%s
`

var branchIDs = []string{"b1Ki-r0", "b1Ki-r1", "b2Ki-r0", "b2Ki-r1"}

// trainParent trains tinyParent, the checkpoint the sweeps of branchSweep fork from: a model
// with an untied head, 16Ki tokens in, at data cursor 512.
func trainParent(t *testing.T, dir string) string {
	t.Helper()
	cfg := writeConfig(t, dir, "parent.toml", tinyParent)
	out := filepath.Join(dir, "parent")
	if code, _, stderr := cbs(t, "train", "--config", cfg, "--out", out, "--quiet"); code != 0 {
		t.Fatalf("parent: exit %d: %s", code, stderr)
	}
	return filepath.Join(out, "ckpt")
}

// exportMetaOf reads the meta.json of an export, an .npz or a folder: its bytes and its fields.
func exportMetaOf(t *testing.T, path string) (string, exportMeta) {
	t.Helper()
	var b []byte
	if strings.HasSuffix(path, ".npz") {
		z, err := zip.OpenReader(path)
		if err != nil {
			t.Fatal(err)
		}
		defer z.Close()
		f, err := z.Open(exportMetaFile)
		if err != nil {
			t.Fatal(err)
		}
		if b, err = io.ReadAll(f); err != nil {
			t.Fatal(err)
		}
	} else {
		b = []byte(mustRead(t, filepath.Join(path, exportMetaFile)))
	}
	var m exportMeta
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return string(b), m
}

// TestDataExport: for every branch of a native sweep, replicates included, the exported tokens
// hash to the stream_hash the branch recorded after training on them; the .npz and the folder
// hold the same; bad inputs exit 2.
func TestDataExport(t *testing.T) {
	dir := t.TempDir()
	parent := trainParent(t, dir)
	run := filepath.Join(dir, "native")
	cfg := writeConfig(t, dir, "native.toml", fmt.Sprintf(branchSweep, run, parent, "mdm", "[run]\nparallel = 2\nthreads = 1"))
	if code, _, stderr := cbs(t, "sweep", "--config", cfg); code != 0 {
		t.Fatalf("sweep: exit %d: %s", code, stderr)
	}
	hashes := map[string]bool{}
	for _, id := range branchIDs {
		b := filepath.Join(run, "branches", id)
		st, err := runfmt.ReadState(b)
		if err != nil {
			t.Fatal(err)
		}
		npz := filepath.Join(dir, id+".npz")
		code, stdout, stderr := cbs(t, "data", "export", "--branch", b, "--out", npz)
		if code != 0 || !strings.Contains(stdout, "stream_hash  "+st.StreamHash+"\n") {
			t.Fatalf("%s: export exit %d, state stream_hash %s\n%s%s", id, code, st.StreamHash, stdout, stderr)
		}
		raw, m := exportMetaOf(t, npz)
		if m.StreamHash != st.StreamHash || m.TrainSeqs != 1024 || m.FirstPosition != 512 || m.EvalShards != 8 || len(m.Arrays) != 6 {
			t.Errorf("%s: meta %+v", id, m)
		}
		hashes[m.StreamHash] = true
		folder := filepath.Join(dir, id)
		for range 2 { // the second replaces the first
			if code, _, stderr := cbs(t, "data", "export", "--branch", b, "--out", folder); code != 0 {
				t.Fatalf("%s: export to a folder: exit %d: %s", id, code, stderr)
			}
		}
		if again, _ := exportMetaOf(t, folder); again != raw {
			t.Errorf("%s: the folder's meta.json differs from the archive's", id)
		}
		tok, shape, err := data.ReadNPYTokensFile(filepath.Join(folder, "train_tokens.npy"))
		if err != nil || len(shape) != 2 || shape[0] != 1024 || shape[1] != 32 || len(tok) != 1024*32 {
			t.Errorf("%s: train_tokens.npy: %v, shape %v", id, err, shape)
		}
	}
	if len(hashes) != 2 {
		t.Errorf("%d distinct streams over 2 replicates: %v", len(hashes), hashes)
	}
	// An external branch without a data source, a missing branch, a folder that is no export.
	foreign := filepath.Join(dir, "foreign")
	os.MkdirAll(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "branch.json"), []byte(`{"id": "x", "objective": "ar", "budget_tokens": 64, "batch_tokens": 32, "data": {"seq_len": 32}}`), 0o644)
	other := filepath.Join(dir, "other")
	os.MkdirAll(other, 0o755)
	os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--branch", foreign, "--out", filepath.Join(dir, "f.npz")}, "data.source is not set"},
		{[]string{"--branch", dir, "--out", filepath.Join(dir, "f.npz")}, "no branch.json"},
		{[]string{"--branch", filepath.Join(run, "branches", "b1Ki-r0"), "--out", other}, "holds something other than an export"},
		{[]string{"--branch", filepath.Join(run, "branches", "b1Ki-r0")}, "required"},
	} {
		code, _, stderr := cbs(t, append([]string{"data", "export"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if mustRead(t, filepath.Join(other, "notes.txt")) != "mine" {
		t.Error("a refused export touched the folder")
	}
}

// torchTrainer is experiments/external-torch, or skips t when /usr/bin/python3 lacks torch or
// numpy.
func torchTrainer(t *testing.T) (workdir, command string) {
	t.Helper()
	if out, err := exec.Command(torchref.Python, "-c", "import torch, numpy").CombinedOutput(); err != nil {
		t.Skipf("%s cannot import torch and numpy: %v %s", torchref.Python, err, out)
	}
	workdir, err := filepath.Abs("../../experiments/external-torch")
	if err != nil {
		t.Fatal(err)
	}
	// The command of the example's sweep, as users copy it.
	line := regexp.MustCompile(`(?m)^command = .*$`).FindString(mustRead(t, filepath.Join(workdir, "sweep.toml")))
	if !strings.Contains(line, "{cbs} data export") || !strings.Contains(line, "train.py") {
		t.Fatalf("experiments/external-torch/sweep.toml: command line %q", line)
	}
	return workdir, line
}

func finalEval(t *testing.T, path string) float64 {
	t.Helper()
	ms := readMetrics(t, path)
	if len(ms) == 0 || ms[len(ms)-1].EvalLoss == nil {
		t.Fatalf("%s: no final eval loss", path)
	}
	return *ms[len(ms)-1].EvalLoss
}

// TestExternalTorchSweep runs the PyTorch trainer of experiments/external-torch as the external
// trainer of a small sweep, for both objectives, beside the same sweep trained by cbs: every
// branch reads the tokens the native one read (stream hashes), ends within float32 rounding of
// its eval loss, leaves a checkpoint cbs evaluates to the loss the trainer logged, and fits.
// Then a branch is stopped with SIGTERM and resumed, and ends byte for byte as it did.
func TestExternalTorchSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("trains eight branches with PyTorch")
	}
	workdir, command := torchTrainer(t)
	bin := cbsBinary(t)
	dir := t.TempDir()
	parent := trainParent(t, dir)
	for _, objective := range []string{"mdm", "ar"} {
		t.Run(objective, func(t *testing.T) {
			native, torch := filepath.Join(dir, objective+"-native"), filepath.Join(dir, objective+"-torch")
			cfg := writeConfig(t, dir, objective+"-native.toml", fmt.Sprintf(branchSweep, native, parent, objective, "[run]\nparallel = 2\nthreads = 1"))
			if code, _, stderr := cbs(t, "sweep", "--config", cfg); code != 0 {
				t.Fatalf("native sweep: exit %d: %s", code, stderr)
			}
			ext := fmt.Sprintf("[run]\nexecutor = \"external\"\nparallel = 2\nthreads = 1\n[external]\n%s\nworkdir = %q", command, workdir)
			cfg = writeConfig(t, dir, objective+"-torch.toml", fmt.Sprintf(branchSweep, torch, parent, objective, ext))
			if out, err := exec.Command(bin, "sweep", "--config", cfg).CombinedOutput(); err != nil {
				t.Fatalf("torch sweep: %v\n%s", err, out)
			}
			for _, id := range branchIDs {
				nb, tb := filepath.Join(native, "branches", id), filepath.Join(torch, "branches", id)
				st, _ := runfmt.ReadState(nb)
				ts, err := model.LoadTrainerState(filepath.Join(tb, "ckpt"))
				if err != nil || ts == nil || ts.StreamHash != st.StreamHash || ts.Step != len(readMetrics(t, filepath.Join(nb, "metrics.jsonl"))) {
					t.Errorf("%s: torch checkpoint %+v (%v); native stream_hash %s", id, ts, err, st.StreamHash)
				}
				want, got := finalEval(t, filepath.Join(nb, "metrics.jsonl")), finalEval(t, filepath.Join(tb, "metrics.jsonl"))
				if relErr(got, want) > 1e-4 {
					t.Errorf("%s: final eval loss %.7f with torch, %.7f with cbs", id, got, want)
				}
			}
			// cbs evaluates the trainer's checkpoint on the exported eval set as the trainer did.
			tb := filepath.Join(torch, "branches", "b2Ki-r1")
			exp := filepath.Join(dir, objective+"-export")
			if code, _, stderr := cbs(t, "data", "export", "--branch", tb, "--out", exp); code != 0 {
				t.Fatalf("export: %s", stderr)
			}
			args := []string{"--checkpoint", filepath.Join(tb, "ckpt"), "--tokens", filepath.Join(exp, "eval_tokens.npy"), "--objective", objective}
			if objective == "mdm" {
				args = append(args, "--mask", filepath.Join(exp, "eval_mask.npy"), "--p", filepath.Join(exp, "eval_p.npy"))
			}
			if got, want := evalJSON(t, args...), finalEval(t, filepath.Join(tb, "metrics.jsonl")); relErr(got, want) > 1e-5 {
				t.Errorf("cbs eval of the torch checkpoint: %.7f, the trainer logged %.7f", got, want)
			}
			if code, _, stderr := cbs(t, "fit", torch); code != 0 {
				t.Errorf("fit: exit %d: %s", code, stderr)
			}
			if objective == "mdm" {
				resumeTorchBranch(t, filepath.Join(torch, "branches", "b1Ki-r1"), workdir)
			}
		})
	}
}

// resumeTorchBranch trains the branch in dir again with its trainer, stopped by SIGTERM after a
// few steps and run again, and checks it ends with the metrics it had.
func resumeTorchBranch(t *testing.T, dir, workdir string) {
	t.Helper()
	want := mustRead(t, filepath.Join(dir, "metrics.jsonl"))
	os.Remove(filepath.Join(dir, "metrics.jsonl"))
	os.RemoveAll(filepath.Join(dir, "ckpt"))
	var run struct{ Env []string }
	if err := json.Unmarshal([]byte(mustRead(t, filepath.Join(dir, "external.json"))), &run); err != nil {
		t.Fatal(err)
	}
	trainer := func() *exec.Cmd {
		c := exec.Command(torchref.Python, "train.py", "--data", filepath.Join(dir, "data.npz"))
		c.Dir, c.Env = workdir, append(os.Environ(), run.Env...)
		return c
	}
	c := trainer()
	out := &strings.Builder{}
	c.Stdout, c.Stderr = out, out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && strings.Count(readFileOr(filepath.Join(dir, "metrics.jsonl")), "\n") < 3 {
		time.Sleep(5 * time.Millisecond)
	}
	c.Process.Signal(syscall.SIGTERM)
	err := c.Wait()
	lines := strings.Count(readFileOr(filepath.Join(dir, "metrics.jsonl")), "\n")
	if err == nil {
		t.Logf("the trainer finished before the signal (%d lines); resuming not tested", lines)
	} else {
		st, lerr := model.LoadTrainerState(filepath.Join(dir, "ckpt"))
		if c.ProcessState.ExitCode() != 130 || lerr != nil || st == nil || st.Step != lines || lines >= 32 {
			t.Fatalf("stopped trainer: %v, checkpoint %+v (%v), %d lines\n%s", err, st, lerr, lines, out)
		}
	}
	if b, err := trainer().CombinedOutput(); err != nil {
		t.Fatalf("resumed trainer: %v\n%s", err, b)
	}
	if got := mustRead(t, filepath.Join(dir, "metrics.jsonl")); got != want {
		t.Errorf("stopped at step %d and resumed, the metrics differ from the run never stopped", lines)
	}
}

func readFileOr(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
