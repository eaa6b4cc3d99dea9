package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"cbs/sweep"
)

// slurmCluster makes a Slurm cluster available to the test: the one SLURM_CONF names when it
// answers (.ci/run starts one), else a single-node slurmctld + slurmd on localhost started by
// scripts/slurm-up.sh in a temporary directory and stopped when the test ends. Without root or
// the Slurm binaries the test is skipped, unless CBS_REQUIRE_SLURM is set.
func slurmCluster(t *testing.T) {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CBS_REQUIRE_SLURM") != "" {
			t.Fatalf("slurm: "+format+" (CBS_REQUIRE_SLURM is set)", args...)
		}
		t.Skipf("slurm: "+format, args...)
	}
	for _, b := range []string{"sbatch", "squeue", "scontrol", "scancel", "sinfo"} {
		if _, err := exec.LookPath(b); err != nil {
			unavailable("%s not found; install Debian's slurm-wlm and munge (apt-get install slurm-wlm munge)", b)
		}
	}
	if conf := os.Getenv("SLURM_CONF"); conf != "" {
		// A SLURM_CONF naming a missing file makes every client hang for a minute.
		if _, err := os.Stat(conf); err == nil && nodeUp(t) {
			return
		}
		t.Logf("SLURM_CONF=%s does not answer; starting a cluster of our own", conf)
	}
	if os.Geteuid() != 0 {
		unavailable("cannot start slurmd without root (uid %d); run as root or set SLURM_CONF to a running cluster", os.Geteuid())
	}
	if _, err := exec.LookPath("slurmctld"); err != nil {
		unavailable("slurmctld not found; install Debian's slurm-wlm and munge")
	}
	dir := t.TempDir()
	up, _ := filepath.Abs("../../scripts/slurm-up.sh")
	down, _ := filepath.Abs("../../scripts/slurm-down.sh")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", up, dir).CombinedOutput()
	t.Cleanup(func() {
		if o, err := exec.Command("bash", down, dir).CombinedOutput(); err != nil {
			t.Logf("slurm-down: %v\n%s", err, o)
		}
	})
	if err != nil {
		logs, _ := os.ReadFile(filepath.Join(dir, "log", "slurmctld.log"))
		unavailable("scripts/slurm-up.sh could not start a cluster: %v\n%s\n%s", err, out, logs)
	}
	t.Setenv("SLURM_CONF", filepath.Join(dir, "slurm.conf"))
	if !nodeUp(t) {
		unavailable("the node started by scripts/slurm-up.sh does not answer")
	}
}

func nodeUp(t *testing.T) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sinfo", "-h", "-o", "%t").Output()
	state := strings.TrimSpace(string(out))
	return err == nil && (state == "idle" || state == "mix" || state == "alloc")
}

// slurmSweep writes the tiny sweep with executor = "slurm" and its own run directory.
func slurmSweep(t *testing.T, dir, cfg, name string) (path, out string) {
	out = filepath.Join(dir, name)
	text := strings.Replace(mustRead(t, cfg), "seed = 1\n[parent]", fmt.Sprintf("seed = 1\nout = %q\n[parent]", out), 1)
	text = strings.Replace(text, "[run]\nparallel = 3\n", "[run]\nexecutor = \"slurm\"\nparallel = 3\n[slurm]\nmax_concurrent = 2\ntime = \"10:00\"\n", 1)
	return writeConfig(t, dir, name+".toml", text), out
}

// submit runs the built cbs (the job scripts call the binary that submitted them) and cancels
// the run's jobs when the test ends, before the cluster goes.
func submit(t *testing.T, bin, cfg, out string) string {
	t.Helper()
	cmd := exec.Command(bin, "sweep", "--config", cfg)
	o, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cbs sweep: %v\n%s", err, o)
	}
	t.Cleanup(func() {
		subs, _ := sweep.ReadSubmissions(out)
		for _, s := range subs {
			exec.Command("scancel", s.ArrayJob, s.FitJob).Run()
		}
	})
	return string(o)
}

// waitSlurm polls the run's tasks until cond holds.
func waitSlurm(t *testing.T, out, what string, limit time.Duration, cond func(*sweep.SlurmStatusReport) bool) *sweep.SlurmStatusReport {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		st, err := sweep.SlurmStatus(context.Background(), out)
		if err != nil {
			t.Fatal(err)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			q, _ := exec.Command("squeue", "-r").CombinedOutput()
			t.Fatalf("waited %v for %s; tasks %+v, fit %+v\nsqueue:\n%s", limit, what, st.Tasks, st.Fit, q)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func fitEnded(st *sweep.SlurmStatusReport) bool {
	return st.Fit != nil && st.Fit.State != "UNKNOWN" && !st.Fit.Active()
}

// fitEstimates is fit/cbs.json without what names the run directory or the build.
func fitEstimates(t *testing.T, path string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(mustRead(t, path)), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "source")
	delete(m, "code_version")
	return m
}

// TestSlurmSweep submits the tiny sweep to a real Slurm: one array task per branch, then the
// afterok job that fits and plots. The metrics are byte-identical to the same sweep run locally,
// and so is the fit.
func TestSlurmSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Slurm cluster and runs a sweep on it")
	}
	slurmCluster(t)
	bin := cbsBinary(t)
	dir, cfg := sweepFixture(t, "64Ki")
	ref := filepath.Join(dir, "ref")
	refCfg := writeConfig(t, dir, "ref.toml", strings.Replace(mustRead(t, cfg), "seed = 1\n[parent]", fmt.Sprintf("seed = 1\nout = %q\n[parent]", ref), 1))
	if code, _, stderr := cbs(t, "sweep", "--config", refCfg); code != 0 {
		t.Fatalf("local sweep: %s", stderr)
	}
	if code, _, stderr := cbs(t, "fit", ref); code != 0 {
		t.Fatalf("local fit: %s", stderr)
	}

	path, out := slurmSweep(t, dir, cfg, "slurm")
	start := time.Now()
	log := submit(t, bin, path, out)
	if !strings.Contains(log, "submitted 3 of 3 branches as Slurm array job") {
		t.Errorf("cbs sweep said:\n%s", log)
	}
	st := waitSlurm(t, out, "the fit job", 3*time.Minute, fitEnded)
	t.Logf("sweep on Slurm, fit included: %v", time.Since(start).Round(time.Millisecond))
	if st.Fit.State != "COMPLETED" {
		t.Fatalf("fit job %+v; log:\n%s", st.Fit, mustRead(t, filepath.Join(out, "slurm", "logs", "fit-"+st.Fit.Job+".log")))
	}
	subs, _ := sweep.ReadSubmissions(out)
	for i, id := range []string{"b1Ki-r0", "b2Ki-r0", "b4Ki-r0"} {
		if task := st.Tasks[id]; task.State != "COMPLETED" || task.Job != fmt.Sprintf("%s_%d", subs[0].ArrayJob, i) {
			t.Errorf("%s: Slurm task %+v", id, task)
		}
		if _, err := os.Stat(filepath.Join(out, "slurm", "logs", fmt.Sprintf("%s_%d.log", subs[0].ArrayJob, i))); err != nil {
			t.Errorf("%s: no log named by job and task: %v", id, err)
		}
		for _, f := range []string{"metrics.jsonl", "ckpt/model.safetensors"} {
			if fileHash(t, filepath.Join(out, "branches", id, f)) != fileHash(t, filepath.Join(ref, "branches", id, f)) {
				t.Errorf("%s/%s differs between the Slurm and the local sweep", id, f)
			}
		}
	}
	if got, want := fitEstimates(t, filepath.Join(out, "fit", "cbs.json")), fitEstimates(t, filepath.Join(ref, "fit", "cbs.json")); !reflect.DeepEqual(got, want) {
		t.Errorf("the fit of the Slurm sweep differs from the local one:\n%v\n%v", got, want)
	}
	if svgs, _ := filepath.Glob(filepath.Join(out, "figures", "*.svg")); len(svgs) == 0 {
		t.Errorf("the fit job drew no figures")
	}

	// cbs status joins the scheduler's view with the run directory.
	code, stdout, stderr := cbs(t, "status", out)
	if code != 0 || !strings.Contains(stdout, "slurm") || strings.Count(stdout, " COMPLETED") != 4 || strings.Count(stdout, " done ") != 3 {
		t.Errorf("status: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr = cbs(t, "sweep", "--config", path); code != 0 || !strings.Contains(stderr, "already finished") {
		t.Errorf("resubmitting a finished sweep: exit %d, %q", code, stderr)
	}
}

// TestSlurmCancelResume cancels one running array task with scancel; running cbs sweep again
// submits just that branch, which resumes from its checkpoint and ends byte-identical to a
// branch never interrupted, and the fit job runs again.
func TestSlurmCancelResume(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Slurm cluster and runs a sweep on it")
	}
	slurmCluster(t)
	bin := cbsBinary(t)
	dir, cfg := sweepFixture(t, "256Ki")
	path, out := slurmSweep(t, dir, cfg, "slurm")
	start := time.Now()
	submit(t, bin, path, out)
	subs, _ := sweep.ReadSubmissions(out)
	victim := filepath.Join(out, "branches", "b1Ki-r0")
	// Cancel after the first checkpoint (every 16Ki tokens: 16 steps at 1Ki) so the resume
	// has something to continue from.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if b, err := os.ReadFile(filepath.Join(victim, "metrics.jsonl")); err == nil && strings.Count(string(b), "\n") >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b1Ki-r0 did not reach step 20")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if o, err := exec.Command("scancel", subs[0].ArrayJob+"_0").CombinedOutput(); err != nil {
		t.Fatalf("scancel: %v %s", err, o)
	}
	st := waitSlurm(t, out, "the other tasks to finish and the fit job to go", 3*time.Minute, func(st *sweep.SlurmStatusReport) bool {
		for _, task := range st.Tasks {
			if task.Active() {
				return false
			}
		}
		return st.Fit != nil && !st.Fit.Active()
	})
	if task := st.Tasks["b1Ki-r0"]; task.State != "CANCELLED" {
		t.Errorf("cancelled task: %+v", task)
	}
	if st.Fit.State == "COMPLETED" {
		t.Errorf("the fit job ran although a task was cancelled")
	}
	var state struct{ State, Reason string }
	json.Unmarshal([]byte(mustRead(t, filepath.Join(victim, "state.json"))), &state)
	if state.State == "done" {
		t.Fatalf("b1Ki-r0 finished before it was cancelled; the test needs a longer budget")
	}
	others := map[string]string{}
	for _, id := range []string{"b2Ki-r0", "b4Ki-r0"} {
		for _, f := range []string{"metrics.jsonl", "log.txt", "state.json"} {
			others[id+"/"+f] = fileHash(t, filepath.Join(out, "branches", id, f))
		}
	}

	log := submit(t, bin, path, out)
	if !strings.Contains(log, "submitted 1 of 3 branches") || !strings.Contains(log, "(--array=0%2: b1Ki-r0)") {
		t.Errorf("resubmission said:\n%s", log)
	}
	st = waitSlurm(t, out, "the resubmitted task and the fit", 3*time.Minute, fitEnded)
	t.Logf("submit, cancel, resubmit and fit: %v", time.Since(start).Round(time.Millisecond))
	if st.Fit.State != "COMPLETED" || st.Tasks["b1Ki-r0"].State != "COMPLETED" {
		t.Errorf("after resubmitting: b1Ki-r0 %+v, fit %+v", st.Tasks["b1Ki-r0"], st.Fit)
	}
	if l := mustRead(t, filepath.Join(victim, "log.txt")); !strings.Contains(l, "resuming at step") {
		t.Errorf("b1Ki-r0 did not resume from its checkpoint:\n%s", l)
	}
	for k, h := range others {
		if fileHash(t, filepath.Join(out, "branches", k)) != h {
			t.Errorf("%s changed: the resubmission ran more than the cancelled branch", k)
		}
	}
	// The same branch trained without interruption.
	ref := filepath.Join(dir, "ref")
	os.MkdirAll(ref, 0o755)
	writeConfig(t, ref, "branch.json", mustRead(t, filepath.Join(victim, "branch.json")))
	if code, _, stderr := cbs(t, "train", "--branch", ref, "--quiet"); code != 0 {
		t.Fatalf("reference branch: %s", stderr)
	}
	for _, f := range []string{"metrics.jsonl", "ckpt/model.safetensors"} {
		if fileHash(t, filepath.Join(victim, f)) != fileHash(t, filepath.Join(ref, f)) {
			t.Errorf("%s of the cancelled and resubmitted branch differs from an uninterrupted run", f)
		}
	}
}

// TestSlurmExternal runs the example external trainer as Slurm array tasks: the metrics equal
// those of the same sweep run locally and the fit job runs. A trainer writing a bad line fails
// its task (so the fit job is dropped) and its branch says which line.
func TestSlurmExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Slurm cluster and runs a sweep on it")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not found: the example trainer is a Python script")
	}
	slurmCluster(t)
	bin := cbsBinary(t)
	example, _ := filepath.Abs("../../experiments/external-trainer")
	dir := t.TempDir()
	config := func(name, extra string) (string, string) {
		out := filepath.Join(dir, name)
		cfg := mustRead(t, filepath.Join(example, "sweep.toml"))
		cfg = strings.Replace(cfg, "seed = 1\n", fmt.Sprintf("seed = 1\nout = %q\n", out), 1)
		cfg = strings.Replace(cfg, "[external]\n", fmt.Sprintf("[external]\nworkdir = %q\n%s", example, extra), 1)
		return writeConfig(t, dir, name+".toml", cfg), out
	}
	localCfg, local := config("local", "")
	if code, _, stderr := cbs(t, "sweep", "--config", localCfg); code != 0 {
		t.Fatalf("local external sweep: %s", stderr)
	}
	path, out := config("slurm", "via = \"slurm\"\n")
	start := time.Now()
	submit(t, bin, path, out)
	st := waitSlurm(t, out, "the fit job", 3*time.Minute, fitEnded)
	t.Logf("external trainer on Slurm, fit included: %v", time.Since(start).Round(time.Millisecond))
	if st.Fit.State != "COMPLETED" {
		t.Errorf("fit job %+v", st.Fit)
	}
	for _, id := range []string{"b1Ki-r0", "b2Ki-r0", "b4Ki-r0", "b8Ki-r0", "b16Ki-r0"} {
		if s := mustRead(t, filepath.Join(out, "branches", id, "state.json")); !strings.Contains(s, `"done"`) {
			t.Errorf("%s: %s", id, s)
		}
		if fileHash(t, filepath.Join(out, "branches", id, "metrics.jsonl")) != fileHash(t, filepath.Join(local, "branches", id, "metrics.jsonl")) {
			t.Errorf("%s: metrics differ between the Slurm and the local run of the trainer", id)
		}
	}

	// A trainer whose second line has a string loss.
	writeConfig(t, dir, "bad.sh", `printf '{"tokens": %s, "step": 1, "train_loss": 1}\n{"tokens": 0, "step": 2, "train_loss": "x"}\n' "$1" > "$2"`+"\n")
	bad := regexpReplace(mustRead(t, path), `(?m)^command = .*$`, fmt.Sprintf(`command = "sh %s {batch_tokens} {metrics}"`, filepath.Join(dir, "bad.sh")))
	badOut := filepath.Join(dir, "bad")
	bad = strings.Replace(bad, fmt.Sprintf("out = %q", out), fmt.Sprintf("out = %q", badOut), 1)
	badPath := writeConfig(t, dir, "bad.toml", bad)
	submit(t, bin, badPath, badOut)
	st = waitSlurm(t, badOut, "the failed tasks", 3*time.Minute, func(st *sweep.SlurmStatusReport) bool {
		for _, task := range st.Tasks {
			if task.Active() {
				return false
			}
		}
		return len(st.Tasks) == 5 && st.Fit != nil && !st.Fit.Active()
	})
	if task := st.Tasks["b4Ki-r0"]; task.State != "FAILED" || task.ExitCode != "3:0" {
		t.Errorf("task of a bad trainer: %+v", task)
	}
	if st.Fit.State == "COMPLETED" {
		t.Errorf("the fit job ran after failed tasks")
	}
	var s struct{ State, Reason string }
	json.Unmarshal([]byte(mustRead(t, filepath.Join(badOut, "branches", "b4Ki-r0", "state.json"))), &s)
	if s.State != "failed" || !strings.Contains(s.Reason, `metrics.jsonl line 2: train_loss = "x", want a number`) {
		t.Errorf("state of a bad trainer's branch: %+v", s)
	}
}

func regexpReplace(s, pattern, repl string) string {
	return regexp.MustCompile(pattern).ReplaceAllLiteralString(s, repl)
}
