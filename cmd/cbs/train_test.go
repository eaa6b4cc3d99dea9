package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cbs/branch"
	"cbs/compute/blas"
	"cbs/internal/rng"
)

// tinyMDM is a train config that runs in about a second.
const tinyMDM = `
[experiment]
name = "tiny"
seed = 3
[model]
hidden_size = 32
layers = 2
heads = 4
kv_heads = 2
intermediate_size = 64
[objective]
name = "mdm"
[data]
source = "synthetic"
seq_len = 32
synthetic_tokens = 262144
[schedule]
warmup = "4Ki"
[train]
budget = "%s"
batch = "2Ki"
micro_batch = 16
checkpoint_every = "%s"
[eval]
every = "16Ki"
tokens = "8Ki"
`

func writeConfig(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// cbs runs a command line in-process.
func cbs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func fileHash(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestTrainDeterministic: two runs of one config, with different thread counts, give
// byte-identical metrics.jsonl and final weights.
func TestTrainDeterministic(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "tiny.toml", fmt.Sprintf(tinyMDM, "64Ki", "16Ki"))
	var metrics, weights []string
	for i, threads := range []string{"1", "2"} {
		out := filepath.Join(dir, fmt.Sprint("run", i))
		if code, _, stderr := cbs(t, "train", "--config", cfg, "--out", out, "--threads", threads, "--quiet"); code != 0 {
			t.Fatalf("train exited %d: %s", code, stderr)
		}
		metrics = append(metrics, fileHash(t, filepath.Join(out, "metrics.jsonl")))
		weights = append(weights, fileHash(t, filepath.Join(out, "ckpt", "model.safetensors")))
	}
	if metrics[0] != metrics[1] || weights[0] != weights[1] {
		t.Errorf("runs differ: metrics %v, weights %v", metrics, weights)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "run0", "metrics.jsonl"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 32 {
		t.Fatalf("%d metrics lines, want 32 (64Ki / 2Ki steps)", len(lines))
	}
	var last struct {
		Step     int       `json:"step"`
		EvalLoss *float64  `json:"eval_loss"`
		Shards   []float64 `json:"eval_shards"`
	}
	json.Unmarshal([]byte(lines[31]), &last)
	if last.Step != 32 || last.EvalLoss == nil || len(last.Shards) != 8 {
		t.Errorf("last line %s: want step 32 with an eval loss and 8 shards", lines[31])
	}
}

// TestTrainBF16: run.precision = "bf16" trains with bf16 matrix products on the CPU, which
// segments.jsonl records, and two runs (at different thread counts) give byte-identical
// metrics.jsonl and weights, which differ from fp32's. It skips where oneDNN is absent.
func TestTrainBF16(t *testing.T) {
	if d, info := blas.DefaultDNNL(); d == nil {
		t.Skipf("onednn not loaded: %s", info.Unavailable)
	}
	dir := t.TempDir()
	body := fmt.Sprintf(tinyMDM, "8Ki", "8Ki")
	fp32 := writeConfig(t, dir, "fp32.toml", body)
	bf16 := writeConfig(t, dir, "bf16.toml", body+"\n[run]\nprecision = \"bf16\"\n")
	var metrics, weights []string
	for i, run := range []struct{ cfg, threads string }{{bf16, "1"}, {bf16, "2"}, {fp32, "1"}} {
		out := filepath.Join(dir, fmt.Sprint("run", i))
		if code, _, stderr := cbs(t, "train", "--config", run.cfg, "--out", out, "--threads", run.threads, "--quiet"); code != 0 {
			t.Fatalf("train exited %d: %s", code, stderr)
		}
		metrics = append(metrics, fileHash(t, filepath.Join(out, "metrics.jsonl")))
		weights = append(weights, fileHash(t, filepath.Join(out, "ckpt", "model.safetensors")))
		seg, _ := os.ReadFile(filepath.Join(out, "segments.jsonl"))
		if bf := strings.Contains(string(seg), "bf16 products"); bf != (run.cfg == bf16) {
			t.Errorf("%s: segments.jsonl %s", filepath.Base(run.cfg), seg)
		}
	}
	if metrics[0] != metrics[1] || weights[0] != weights[1] {
		t.Errorf("bf16 runs differ: metrics %v, weights %v", metrics[:2], weights[:2])
	}
	if metrics[0] == metrics[2] {
		t.Error("bf16 and fp32 runs gave the same metrics")
	}
	spec, err := branch.LoadSpec(filepath.Join(dir, "run0"))
	if err != nil || spec.Precision != "bf16" {
		t.Errorf("branch.json precision: %v, %v", spec, err)
	}
}

// buildCBS compiles the command once for the tests that need a separate process.
var builtCBS string

func cbsBinary(t *testing.T) string {
	t.Helper()
	if builtCBS != "" {
		return builtCBS
	}
	bin := filepath.Join(os.TempDir(), fmt.Sprintf("cbs-test-%d", os.Getpid()))
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	builtCBS = bin
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtCBS != "" {
		os.Remove(builtCBS)
	}
	os.Exit(code)
}

// TestTrainKillResume kills the run with SIGKILL at several random moments, re-runs it each
// time, and checks that the finished run is byte-identical to one never killed.
func TestTrainKillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and trains several times")
	}
	bin := cbsBinary(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "tiny.toml", fmt.Sprintf(tinyMDM, "128Ki", "8Ki"))
	ref := filepath.Join(dir, "ref")
	if out, err := exec.Command(bin, "train", "--config", cfg, "--out", ref, "--quiet").CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}
	killed := filepath.Join(dir, "killed")
	s := rng.New(uint64(time.Now().UnixNano()), "kill-times", 0)
	kills := 0
	for attempt := 0; attempt < 6; attempt++ {
		cmd := exec.Command(bin, "train", "--config", cfg, "--out", killed, "--quiet")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(50+s.Intn(600)) * time.Millisecond
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-time.After(delay):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: %v", attempt, err)
			}
		}
	}
	if out, err := exec.Command(bin, "train", "--config", cfg, "--out", killed, "--quiet").CombinedOutput(); err != nil {
		t.Fatalf("final resume: %v\n%s", err, out)
	}
	t.Logf("killed %d times", kills)
	for _, f := range []string{"metrics.jsonl", "ckpt/model.safetensors", "ckpt/optimizer.safetensors"} {
		if fileHash(t, filepath.Join(ref, f)) != fileHash(t, filepath.Join(killed, f)) {
			t.Errorf("%s differs between the uninterrupted and the killed-and-resumed run", f)
		}
	}
}

// TestTrainInterrupt: SIGINT finishes the step, checkpoints, exits 130; the rerun completes
// identically to an uninterrupted run.
func TestTrainInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := cbsBinary(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "tiny.toml", fmt.Sprintf(tinyMDM, "256Ki", "64Ki"))
	out := filepath.Join(dir, "run")
	cmd := exec.Command(bin, "train", "--config", cfg, "--out", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("after SIGINT: %v, want exit status 130\n%s", err, stderr.String())
	}
	state, _ := os.ReadFile(filepath.Join(out, "state.json"))
	if !strings.Contains(string(state), "interrupted") {
		t.Errorf("state.json after SIGINT: %s", state)
	}
	if o, err := exec.Command(bin, "train", "--config", cfg, "--out", out, "--quiet").CombinedOutput(); err != nil {
		t.Fatalf("resume: %v\n%s", err, o)
	}
	ref := filepath.Join(dir, "ref")
	if o, err := exec.Command(bin, "train", "--config", cfg, "--out", ref, "--quiet").CombinedOutput(); err != nil {
		t.Fatalf("reference: %v\n%s", err, o)
	}
	if fileHash(t, filepath.Join(ref, "metrics.jsonl")) != fileHash(t, filepath.Join(out, "metrics.jsonl")) {
		t.Error("interrupted-and-resumed metrics differ from the uninterrupted run's")
	}
}

func TestTrainRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	base := fmt.Sprintf(tinyMDM, "64Ki", "16Ki")
	for _, tc := range []struct{ name, body, key string }{
		{"unknown key", base + "\n[run]\nthreds = 2\n", "unknown key run.threds: did you mean run.threads?"},
		{"unknown table", base + "\n[trainer]\nx = 1\n", "unknown table [trainer]: did you mean [train]?"},
		{"sweep table", base + "\n[branches]\nbudget = 1\n", "[branches] belongs to a sweep config"},
		{"zero budget", strings.Replace(base, `budget = "64Ki"`, `budget = 0`, 1), "budget"},
		{"negative budget", strings.Replace(base, `budget = "64Ki"`, `budget = -64`, 1), "budget"},
		{"batch vs seq_len", strings.Replace(base, `batch = "2Ki"`, `batch = 1000`, 1), "batch = 1000 tokens is not a positive whole number of sequences of data.seq_len = 32"},
		{"batch vs micro-batch", strings.Replace(base, `batch = "2Ki"`, `batch = 1280`, 1), "batch = 1280 tokens (40 sequences) is not a whole number of micro-batches of micro_batch = 16"},
		{"eval marks", strings.Replace(base, "\nevery = \"16Ki\"", "\nevery = \"3Ki\"", 1), "eval.every"},
		{"warmup too long", strings.Replace(base, `warmup = "4Ki"`, `warmup = "1Mi"`, 1), "schedule.warmup"},
		{"unknown objective", strings.Replace(base, `name = "mdm"`, `name = "bert"`, 1), "objective.name"},
		{"bad tokens", strings.Replace(base, `budget = "64Ki"`, `budget = "64Q"`, 1), "64Q"},
		{"missing parent", base + "\n[parent]\ncheckpoint = \"nowhere\"\n", "parent.checkpoint"},
		{"unknown source", strings.Replace(base, `source = "synthetic"`, `source = "web"`, 1), "data.source"},
		{"unknown precision", base + "\n[run]\nprecision = \"fp16\"\n", `run.precision = "fp16" with run.device = "cpu": want "fp32" or "bf16" on the CPU`},
		{"gpu precision on the cpu", base + "\n[run]\nprecision = \"tf32\"\n", `run.precision = "tf32" with run.device = "cpu"`},
		{"tf32 with auto", base + "\n[run]\ndevice = \"auto\"\nprecision = \"tf32\"\n", "tf32 needs a cuda device"},
		{"unknown device", base + "\n[run]\ndevice = \"gpu\"\n", `run.device = "gpu": want "auto", "cpu", "cuda" or "cuda:N"`},
	} {
		cfg := writeConfig(t, dir, "bad.toml", tc.body)
		code, _, stderr := cbs(t, "train", "--config", cfg, "--out", filepath.Join(dir, "out"))
		if code != exitUsage || !strings.Contains(stderr, tc.key) {
			t.Errorf("%s: exit %d, stderr %q; want exit 2 naming %s", tc.name, code, stderr, tc.key)
		}
	}
}

// TestSlowPathWarned: without OpenBLAS, training says so once, up front, with the install
// command; choosing the pure-Go BLAS on purpose (CBS_BLAS=gonum) is not warned about.
func TestSlowPathWarned(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := cbsBinary(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "parent.toml", tinyParent)
	for _, tc := range []struct {
		env  string
		warn bool
	}{
		{"CBS_OPENBLAS=" + filepath.Join(dir, "missing", "libopenblas.so.0"), true},
		{"CBS_BLAS=gonum", false},
	} {
		cmd := exec.Command(bin, "train", cfg, "--out", filepath.Join(dir, "out-"+strings.Split(tc.env, "=")[0]), "--quiet")
		cmd.Env = append(os.Environ(), tc.env)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.env, err, out)
		}
		if got := strings.Count(string(out), "apt-get install libopenblas0"); (got == 1) != tc.warn || got > 1 {
			t.Errorf("%s: warned %d times, want %v:\n%s", tc.env, got, tc.warn, out)
		}
	}
}
