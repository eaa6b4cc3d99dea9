package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"cbs/internal/rng"
)

const tinyParent = `
[experiment]
name = "parent"
seed = 1
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
[train]
budget = "16Ki"
batch = "1Ki"
micro_batch = 8
[eval]
tokens = "4Ki"
`

const tinySweep = `
[experiment]
name = "tiny-sweep"
seed = 1
[parent]
checkpoint = "parent/ckpt"
optimizer_state = "keep"
[objective]
name = "mdm"
[data]
source = "synthetic"
seq_len = 32
synthetic_tokens = 262144
[optimizer]
lr = 2e-3
[schedule]
shape = "cosine"
warmup = "4Ki"
[branches]
budget = "%s"
batch_sizes = ["1Ki", "2Ki", "4Ki"]
lr_scaling = "sqrt"
micro_batch = 8
[eval]
every = "16Ki"
tokens = "4Ki"
[run]
parallel = 3
`

// sweepFixture trains the parent with cbs train and writes the sweep config beside it.
func sweepFixture(t *testing.T, budget string) (dir, cfg string) {
	t.Helper()
	dir = t.TempDir()
	parent := writeConfig(t, dir, "parent.toml", tinyParent)
	if code, _, stderr := cbs(t, "train", "--config", parent, "--out", filepath.Join(dir, "parent"), "--quiet"); code != 0 {
		t.Fatalf("parent: %s", stderr)
	}
	cfg = writeConfig(t, dir, "sweep.toml", fmt.Sprintf(tinySweep, budget))
	return dir, cfg
}

type metricLine struct {
	Tokens   int64    `json:"tokens"`
	Step     int      `json:"step"`
	LR       float64  `json:"lr"`
	EvalLoss *float64 `json:"eval_loss"`
}

func readMetrics(t *testing.T, path string) []metricLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []metricLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m metricLine
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

// TestSweepEndToEnd: a parent trained by cbs train, three batch sizes, MDM on synthetic data.
// Every branch consumed the same tokens in the same order, the LR-vs-tokens curves coincide up
// to each branch's peak scale, eval marks are identical, and steps = budget / batch.
func TestSweepEndToEnd(t *testing.T) {
	dir, cfg := sweepFixture(t, "64Ki")
	out := filepath.Join(dir, "runs")
	cfgOut := writeConfig(t, dir, "sweep-out.toml", strings.Replace(mustRead(t, cfg), "seed = 1\n[parent]", fmt.Sprintf("seed = 1\nout = %q\n[parent]", out), 1))
	start := time.Now()
	code, stdout, stderr := cbs(t, "sweep", "--config", cfgOut)
	if code != 0 {
		t.Fatalf("sweep exited %d: %s", code, stderr)
	}
	t.Logf("sweep took %v", time.Since(start))
	if strings.TrimSpace(stdout) != out {
		t.Errorf("stdout %q, want the run directory %q", stdout, out)
	}
	hashes := map[string]bool{}
	var marks []string
	lrCurves := map[int64][]float64{}
	for _, b := range []struct {
		id    string
		batch int64
		scale float64
	}{{"b1Ki-r0", 1024, 1}, {"b2Ki-r0", 2048, math.Sqrt2}, {"b4Ki-r0", 4096, 2}} {
		bdir := filepath.Join(out, "branches", b.id)
		var st struct {
			State      string `json:"state"`
			StreamHash string `json:"stream_hash"`
		}
		json.Unmarshal([]byte(mustRead(t, filepath.Join(bdir, "state.json"))), &st)
		if st.State != "done" {
			t.Errorf("%s: state %q", b.id, st.State)
		}
		hashes[st.StreamHash] = true
		ms := readMetrics(t, filepath.Join(bdir, "metrics.jsonl"))
		if want := int(65536 / b.batch); len(ms) != want || ms[len(ms)-1].Step != want {
			t.Errorf("%s: %d steps, want budget/batch = %d", b.id, len(ms), want)
		}
		var m []string
		for _, l := range ms {
			if l.EvalLoss != nil {
				m = append(m, fmt.Sprint(l.Tokens))
			}
			lrCurves[l.Tokens] = append(lrCurves[l.Tokens], l.LR/(2e-3*b.scale))
		}
		if marks == nil {
			marks = m
		} else if strings.Join(m, ",") != strings.Join(marks, ",") {
			t.Errorf("%s: eval marks %v, first branch %v", b.id, m, marks)
		}
	}
	if len(hashes) != 1 {
		t.Errorf("branches consumed different token streams: %v", hashes)
	}
	if strings.Join(marks, ",") != "16384,32768,49152,65536" {
		t.Errorf("eval marks %v, want every 16Ki", marks)
	}
	for tok, fs := range lrCurves {
		for _, f := range fs[1:] {
			if math.Abs(f-fs[0]) > 1e-12 {
				t.Errorf("at %d tokens the LR schedule factors differ across branches: %v", tok, fs)
			}
		}
	}
	for _, f := range []string{"sweep.toml", "resolved.toml", "manifest.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("run directory lacks %s", f)
		}
	}
	// Running again does nothing: every branch is done.
	code, _, stderr = cbs(t, "sweep", "--config", cfgOut)
	if code != 0 || !strings.Contains(stderr, "already finished") {
		t.Errorf("second run: exit %d, %q", code, stderr)
	}
	// status lists the three branches as done.
	code, stdout, _ = cbs(t, "status", out)
	if code != 0 || strings.Count(stdout, " done ") != 3 {
		t.Errorf("status: exit %d\n%s", code, stdout)
	}
	// A changed config that would make results incomparable is refused, naming the key.
	changed := writeConfig(t, dir, "changed.toml", strings.Replace(mustRead(t, cfgOut), "lr = 2e-3", "lr = 3e-3", 1))
	code, _, stderr = cbs(t, "sweep", "--config", changed)
	if code != exitUsage || !strings.Contains(stderr, "optimizer.lr") {
		t.Errorf("changed config: exit %d, %q; want 2 naming optimizer.lr", code, stderr)
	}
	// Changing only how it runs is fine.
	faster := writeConfig(t, dir, "faster.toml", strings.Replace(mustRead(t, cfgOut), "parallel = 3", "parallel = 1", 1))
	if code, _, stderr = cbs(t, "sweep", "--config", faster); code != 0 {
		t.Errorf("config differing only in run.parallel: exit %d, %q", code, stderr)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSweepKillResume kills a sweep with SIGKILL at random moments, re-runs it each time, and
// compares the finished run with an uninterrupted one, byte for byte.
func TestSweepKillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs several sweeps")
	}
	bin := cbsBinary(t)
	dir, cfg := sweepFixture(t, "128Ki")
	withOut := func(name string) string {
		return writeConfig(t, dir, name+".toml", strings.Replace(mustRead(t, cfg), "seed = 1\n[parent]", fmt.Sprintf("seed = 1\nout = %q\n[parent]", filepath.Join(dir, name)), 1))
	}
	ref, killed := withOut("ref"), withOut("killed")
	if o, err := exec.Command(bin, "sweep", "--config", ref).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted sweep: %v\n%s", err, o)
	}
	s := rng.New(uint64(time.Now().UnixNano()), "sweep-kill", 0)
	kills := 0
	for attempt := 0; attempt < 5; attempt++ {
		cmd := exec.Command(bin, "sweep", "--config", killed)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-time.After(time.Duration(100+s.Intn(900)) * time.Millisecond):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		case err := <-done:
			if err != nil {
				t.Fatalf("attempt %d: %v", attempt, err)
			}
		}
	}
	if o, err := exec.Command(bin, "sweep", "--config", killed).CombinedOutput(); err != nil {
		t.Fatalf("final run: %v\n%s", err, o)
	}
	t.Logf("killed %d times", kills)
	var files []string
	filepath.Walk(filepath.Join(dir, "ref", "branches"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && (strings.HasSuffix(p, "metrics.jsonl") || strings.HasSuffix(p, ".safetensors")) {
			rel, _ := filepath.Rel(filepath.Join(dir, "ref"), p)
			files = append(files, rel)
		}
		return nil
	})
	sort.Strings(files)
	if len(files) != 9 {
		t.Fatalf("reference run has %d metrics/weight files, want 9: %v", len(files), files)
	}
	for _, f := range files {
		if fileHash(t, filepath.Join(dir, "ref", f)) != fileHash(t, filepath.Join(dir, "killed", f)) {
			t.Errorf("%s differs between the uninterrupted and the killed-and-resumed sweep", f)
		}
	}
}

// TestSweepRejectsBadConfig: every rejected config exits 2 naming the key.
func TestSweepRejectsBadConfig(t *testing.T) {
	dir, cfg := sweepFixture(t, "64Ki")
	base := mustRead(t, cfg)
	for _, tc := range []struct{ name, from, to, key string }{
		{"unknown key", "[branches]", "[branches]\nbatch_size = 3", "unknown key branches.batch_size: did you mean branches.batch_sizes?"},
		{"unknown table", "[run]", "[runner]\nx = 1\n[run]", "unknown table [runner]: did you mean [run]?"},
		{"zero budget", `budget = "64Ki"`, `budget = 0`, "branches.budget"},
		{"negative budget", `budget = "64Ki"`, `budget = -1024`, "branches.budget"},
		{"batch not whole sequences", `["1Ki", "2Ki", "4Ki"]`, `["1Ki", "1100", "4Ki"]`, "batch = 1100 tokens is not a positive whole number of sequences of data.seq_len"},
		{"eval marks", "\nevery = \"16Ki\"", "\nevery = \"3Ki\"", "eval.every"},
		{"warmup longer than budget", `warmup = "4Ki"`, `warmup = "1Mi"`, "schedule.warmup"},
		{"lr scaling list", `lr_scaling = "sqrt"`, `lr_scaling = [1.0, 2.0]`, "branches.lr_scaling"},
		{"lr scaling word", `lr_scaling = "sqrt"`, `lr_scaling = "cubic"`, "branches.lr_scaling"},
		{"missing parent", `checkpoint = "parent/ckpt"`, `checkpoint = "nowhere"`, "parent.checkpoint"},
		{"unknown objective", `name = "mdm"`, `name = "bert"`, "objective.name"},
		{"decreasing ladder", `["1Ki", "2Ki", "4Ki"]`, `["2Ki", "1Ki"]`, "branches.batch_sizes"},
		{"optimizer state", `optimizer_state = "keep"`, `optimizer_state = "fresh"`, "parent.optimizer_state"},
	} {
		if !strings.Contains(base, tc.from) {
			t.Fatalf("%s: fixture lacks %q", tc.name, tc.from)
		}
		bad := writeConfig(t, dir, "bad.toml", strings.Replace(base, tc.from, tc.to, 1))
		for _, verb := range [][]string{{"config", "validate", bad}, {"sweep", "--config", bad}} {
			code, _, stderr := cbs(t, verb...)
			if code != exitUsage || !strings.Contains(stderr, tc.key) {
				t.Errorf("%s (%s): exit %d, %q; want 2 naming %s", tc.name, verb[0], code, stderr, tc.key)
			}
		}
	}
	// A train table in a sweep config: cbs sweep says whose table it is; config validate, which
	// tells the kinds apart by [train] and [branches], that the file is both.
	bad := writeConfig(t, dir, "bad.toml", strings.Replace(base, "[branches]", "[train]\nbudget = 1\n[branches]", 1))
	for _, c := range []struct {
		verb []string
		want string
	}{
		{[]string{"sweep", bad}, "unknown table [train]: [train] belongs to a train config (cbs train)"},
		{[]string{"config", "validate", bad}, "has both [train] (a train config) and [branches] (a sweep config)"},
	} {
		if code, _, stderr := cbs(t, c.verb...); code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", c.verb, code, stderr, c.want)
		}
	}
}

// TestSweepDivergedBranch: a branch whose loss explodes is marked diverged, the others finish,
// and the exit status is 3.
func TestSweepDivergedBranch(t *testing.T) {
	dir, cfg := sweepFixture(t, "32Ki")
	hot := writeConfig(t, dir, "hot.toml", strings.Replace(strings.Replace(mustRead(t, cfg), `lr_scaling = "sqrt"`, `lr_scaling = [1.0, 1.0, 400.0]`, 1), "[optimizer]\nlr = 2e-3", "[optimizer]\nlr = 2e-3\nclip = 0", 1))
	hot = writeConfig(t, dir, "hot.toml", strings.Replace(mustRead(t, hot), "seed = 1\n[parent]", fmt.Sprintf("seed = 1\nout = %q\n[parent]", filepath.Join(dir, "hot")), 1))
	code, _, stderr := cbs(t, "sweep", "--config", hot)
	if code != exitSomeFailed || !strings.Contains(stderr, "b4Ki-r0") {
		t.Fatalf("exit %d, %q; want 3 naming b4Ki-r0", code, stderr)
	}
	state := mustRead(t, filepath.Join(dir, "hot", "branches", "b4Ki-r0", "state.json"))
	if !strings.Contains(state, `"diverged"`) || !strings.Contains(state, "step") {
		t.Errorf("diverged branch state: %s", state)
	}
	for _, id := range []string{"b1Ki-r0", "b2Ki-r0"} {
		if s := mustRead(t, filepath.Join(dir, "hot", "branches", id, "state.json")); !strings.Contains(s, `"done"`) {
			t.Errorf("%s did not finish: %s", id, s)
		}
	}
	// Without --retry-failed a rerun leaves it alone and still reports it.
	code, _, _ = cbs(t, "sweep", "--config", hot)
	if code != exitSomeFailed {
		t.Errorf("rerun: exit %d, want 3", code)
	}
}

// TestSweepInterruptAndBranchVerb: SIGINT makes a sweep checkpoint its running branches and exit
// 130; `cbs train --branch DIR` then finishes one branch on its own, as a cluster job would, and
// the rerun sweep completes the rest.
func TestSweepInterruptAndBranchVerb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := cbsBinary(t)
	dir, cfg := sweepFixture(t, "256Ki")
	out := filepath.Join(dir, "run")
	cfg = writeConfig(t, dir, "int.toml", strings.Replace(mustRead(t, cfg), "seed = 1\n[parent]", fmt.Sprintf("seed = 1\nout = %q\n[parent]", out), 1))
	cmd := exec.Command(bin, "sweep", "--config", cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("sweep after SIGINT: %v, want exit status 130", err)
	}
	b := filepath.Join(out, "branches", "b4Ki-r0")
	if o, err := exec.Command(bin, "train", "--branch", b, "--quiet").CombinedOutput(); err != nil {
		t.Fatalf("train --branch: %v\n%s", err, o)
	}
	if s := mustRead(t, filepath.Join(b, "state.json")); !strings.Contains(s, `"done"`) {
		t.Errorf("branch after train --branch: %s", s)
	}
	if o, err := exec.Command(bin, "sweep", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("resumed sweep: %v\n%s", err, o)
	}
	for _, id := range []string{"b1Ki-r0", "b2Ki-r0", "b4Ki-r0"} {
		if s := mustRead(t, filepath.Join(out, "branches", id, "state.json")); !strings.Contains(s, `"done"`) {
			t.Errorf("%s: %s", id, s)
		}
	}
}

// TestSweepExtendLadder: adding batch sizes to a finished sweep runs only the new branches when
// the reference batch stays, as it does by default (the parent's batch, 1Ki here, whatever the
// ladder); a change of reference is refused.
func TestSweepExtendLadder(t *testing.T) {
	dir, cfg := sweepFixture(t, "32Ki")
	out := filepath.Join(dir, "ext")
	base := strings.Replace(mustRead(t, cfg), "seed = 1\n[parent]", fmt.Sprintf("seed = 1\nout = %q\n[parent]", out), 1)
	first := writeConfig(t, dir, "first.toml", strings.Replace(base, `["1Ki", "2Ki", "4Ki"]`, `["2Ki", "4Ki"]`, 1))
	if code, _, stderr := cbs(t, "sweep", "--config", first); code != 0 {
		t.Fatalf("first sweep: %s", stderr)
	}
	before := fileHash(t, filepath.Join(out, "branches", "b2Ki-r0", "metrics.jsonl"))
	moved := writeConfig(t, dir, "moved.toml", strings.Replace(base, `lr_scaling = "sqrt"`, "lr_scaling = \"sqrt\"\nreference_batch = \"2Ki\"", 1))
	if code, _, stderr := cbs(t, "sweep", "--config", moved); code != exitUsage || !strings.Contains(stderr, "branches.reference_batch") {
		t.Errorf("extension that moves the reference batch: exit %d, %q; want 2", code, stderr)
	}
	implicit := writeConfig(t, dir, "implicit.toml", base)
	code, _, stderr := cbs(t, "sweep", "--config", implicit)
	if code != 0 || !strings.Contains(stderr, "3 branches: 1 to start, 0 to resume, 2 done;") {
		t.Fatalf("extension with the same (the parent's) reference: exit %d\n%s", code, stderr)
	}
	if fileHash(t, filepath.Join(out, "branches", "b2Ki-r0", "metrics.jsonl")) != before {
		t.Error("extending the ladder changed an existing branch")
	}
}

// TestSweepLockAndRetry: a second sweep on a directory in use is refused; --retry-failed reruns
// a diverged branch (which, being deterministic, diverges again at the same step).
func TestSweepLockAndRetry(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := cbsBinary(t)
	dir, cfg := sweepFixture(t, "128Ki")
	out := filepath.Join(dir, "locked")
	cfg = writeConfig(t, dir, "lock.toml", strings.Replace(mustRead(t, cfg), "seed = 1\n[parent]", fmt.Sprintf("seed = 1\nout = %q\n[parent]", out), 1))
	first := exec.Command(bin, "sweep", "--config", cfg)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(out, "manifest.json")); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, _, stderr := cbs(t, "sweep", "--config", cfg)
	first.Process.Signal(os.Interrupt)
	first.Wait()
	if code == 0 || !strings.Contains(stderr, "in use by another cbs process") {
		t.Errorf("second sweep on a locked directory: exit %d, %q", code, stderr)
	}

	hot := strings.Replace(strings.Replace(mustRead(t, cfg), `lr_scaling = "sqrt"`, `lr_scaling = [1.0, 1.0, 400.0]`, 1), "[optimizer]\nlr = 2e-3", "[optimizer]\nlr = 2e-3\nclip = 0", 1)
	hot = strings.Replace(hot, out, filepath.Join(dir, "hot"), 1)
	hotCfg := writeConfig(t, dir, "hot.toml", strings.Replace(hot, `budget = "128Ki"`, `budget = "32Ki"`, 1))
	if code, _, _ := cbs(t, "sweep", "--config", hotCfg); code != exitSomeFailed {
		t.Fatalf("hot sweep: exit %d, want 3", code)
	}
	state := filepath.Join(dir, "hot", "branches", "b4Ki-r0", "state.json")
	before := mustRead(t, state)
	code, _, stderr = cbs(t, "sweep", "--config", hotCfg, "--retry-failed")
	if code != exitSomeFailed || !strings.Contains(stderr, "3 branches: 1 to start, 0 to resume, 2 done;") {
		t.Errorf("--retry-failed: exit %d, %q; want the diverged branch rerun", code, stderr)
	}
	if after := mustRead(t, state); after != before {
		t.Errorf("the rerun diverged differently:\n%s\nthen\n%s", before, after)
	}
}

// TestConfigAsArgument: sweep and train take the config as their argument or with --config.
func TestConfigAsArgument(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.toml")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sweep"}, exitUsage, "give the config file: cbs sweep FILE"},
		{[]string{"train"}, exitUsage, "give the config file: cbs train FILE"},
		{[]string{"sweep", "a.toml", "--config", "b.toml"}, exitUsage, "two configs given"},
		{[]string{"sweep", missing}, 1, "missing.toml"},
		{[]string{"train", missing}, 1, "missing.toml"},
		{[]string{"train", "x.toml", "--branch", "dir"}, exitUsage, "a config (x.toml) is not needed"},
	}
	for _, tc := range tests {
		code, _, stderr := cbs(t, tc.args...)
		if code == 0 || (tc.code != 1 && code != tc.code) || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "unknown command") {
			t.Errorf("cbs %s: exit %d, %q; want %d and %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.want)
		}
	}
}

// TestSweepCorrectedConfig: a sweep whose every branch failed before its first step (here a
// parent without the optimizer state the config keeps) leaves nothing to compare with, so the
// corrected config runs in the same directory instead of being refused as a changed config.
func TestSweepCorrectedConfig(t *testing.T) {
	dir, cfg := sweepFixture(t, "8Ki")
	bare := filepath.Join(dir, "bare")
	if err := os.MkdirAll(bare, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "model.safetensors"} {
		if err := os.WriteFile(filepath.Join(bare, f), []byte(mustRead(t, filepath.Join(dir, "parent", "ckpt", f))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "fixed")
	base := strings.Replace(mustRead(t, cfg), "seed = 1\n[parent]", fmt.Sprintf("seed = 1\nout = %q\n[parent]", out), 1)
	base = strings.Replace(base, `checkpoint = "parent/ckpt"`, `checkpoint = "bare"`, 1)
	broken := writeConfig(t, dir, "broken.toml", base)
	if code, _, stderr := cbs(t, "sweep", broken); code != exitSomeFailed || !strings.Contains(stderr, "optimizer") {
		t.Fatalf("sweep keeping moments the parent lacks: exit %d\n%s", code, stderr)
	}
	fixed := writeConfig(t, dir, "fixed.toml", strings.Replace(base, `optimizer_state = "keep"`, `optimizer_state = "reset"`, 1))
	if code, _, stderr := cbs(t, "sweep", fixed); code != 0 {
		t.Fatalf("corrected sweep: exit %d\n%s", code, stderr)
	}
	// Once a branch has trained, a changed config is refused as before.
	changed := writeConfig(t, dir, "changed.toml", strings.Replace(mustRead(t, fixed), `lr = 2e-3`, `lr = 1e-3`, 1))
	if code, _, stderr := cbs(t, "sweep", changed); code != exitUsage || !strings.Contains(stderr, "optimizer.lr") {
		t.Errorf("changed config after training: exit %d\n%s", code, stderr)
	}
}

// TestSweepFromShardedParent: a parent stored as Hugging Face publishes large checkpoints (BF16
// shards with an index) is a parent like any other: the sweep runs from it and says how it was
// stored; moved elsewhere, the same shards are the same parent and the sweep resumes.
func TestSweepFromShardedParent(t *testing.T) {
	dir, cfg := sweepFixture(t, "16Ki")
	sharded := filepath.Join(dir, "sharded")
	if code, _, stderr := cbs(t, "ckpt", "convert", filepath.Join(dir, "parent", "ckpt"), sharded, "--dtype", "BF16", "--shard-size", "20KB"); code != 0 {
		t.Fatalf("convert: %s", stderr)
	}
	if _, err := os.Stat(filepath.Join(sharded, "model.safetensors.index.json")); err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(mustRead(t, cfg), `checkpoint = "parent/ckpt"`, `checkpoint = "sharded"`, 1)
	text = strings.Replace(text, `optimizer_state = "keep"`, `optimizer_state = "reset"`, 1)
	text = strings.Replace(text, "[experiment]\n", "[experiment]\nout = \"run\"\n", 1)
	code, _, stderr := cbs(t, "sweep", writeConfig(t, dir, "sharded.toml", text))
	if code != 0 {
		t.Fatalf("sweep from shards: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "parent.checkpoint: ") || !strings.Contains(stderr, "BF16") {
		t.Errorf("the run does not say how its parent was stored:\n%s", stderr)
	}
	if err := os.Rename(sharded, filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	moved := writeConfig(t, dir, "moved.toml", strings.Replace(text, `checkpoint = "sharded"`, `checkpoint = "moved"`, 1))
	if code, _, stderr := cbs(t, "sweep", moved); code != 0 || !strings.Contains(stderr, "already finished") {
		t.Errorf("the same shards moved: exit %d\n%s", code, stderr)
	}
}
