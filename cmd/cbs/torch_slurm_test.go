package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"cbs/internal/torchref"
	"cbs/model"
	"cbs/runfmt"
	"cbs/sweep"
)

// setTOML sets key = value (value as TOML writes it) in [table] of a config's text, replacing the
// key's line (with its comment) when the table has it and adding it under the header otherwise.
func setTOML(t *testing.T, text, table, key, value string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	start := -1
	for i, l := range lines {
		if header, _, _ := strings.Cut(l, "#"); strings.TrimSpace(header) == "["+table+"]" {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("config has no [%s] table:\n%s", table, text)
	}
	keyLine := regexp.MustCompile(`^\s*` + regexp.QuoteMeta(key) + `\s*=`)
	for i := start + 1; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "["); i++ {
		if keyLine.MatchString(lines[i]) {
			lines[i] = key + " = " + value
			return strings.Join(lines, "\n")
		}
	}
	lines = append(lines[:start+1], append([]string{key + " = " + value}, lines[start+1:]...)...)
	return strings.Join(lines, "\n")
}

// torchSlurmConfigs derives the configs of TestSlurmExternalTorch from the committed ones: the
// quickstart's parent (experiments/quickstart/base.toml) and the PyTorch sweep
// (experiments/external-torch/sweep.toml), each with fewer tokens, its outputs under dir and
// the sweep's branches run as Slurm array tasks.
func torchSlurmConfigs(t *testing.T, dir, workdir string) (parent, sweepCfg, out string) {
	t.Helper()
	cache, base, out := filepath.Join(dir, "cache"), filepath.Join(dir, "base"), filepath.Join(dir, "external-torch")
	q := strconv.Quote
	text := mustRead(t, "../../experiments/quickstart/base.toml")
	for _, kv := range [][3]string{
		{"experiment", "out", q(base)}, {"data", "cache_dir", q(cache)}, {"train", "budget", q("32Ki")},
		{"schedule", "warmup", q("8Ki")}, {"eval", "every", q("16Ki")}, {"eval", "tokens", q("8Ki")},
	} {
		text = setTOML(t, text, kv[0], kv[1], kv[2])
	}
	parent = writeConfig(t, dir, "base.toml", text)

	text = mustRead(t, filepath.Join(workdir, "sweep.toml"))
	for _, kv := range [][3]string{
		{"experiment", "out", q(out)}, {"parent", "checkpoint", q(filepath.Join(base, "ckpt"))},
		{"data", "cache_dir", q(cache)}, {"branches", "budget", q("32Ki")}, {"schedule", "warmup", q("8Ki")},
		{"eval", "every", q("8Ki")}, {"eval", "tokens", q("8Ki")},
		{"external", "via", q("slurm")}, {"external", "workdir", q(workdir)},
	} {
		text = setTOML(t, text, kv[0], kv[1], kv[2])
	}
	text += "\n[slurm]\ntime = \"10:00\"\n"
	return parent, writeConfig(t, dir, "sweep.toml", text), out
}

// TestSlurmExternalTorch runs the PyTorch sweep of experiments/external-torch (its sweep.toml with
// fewer tokens, from the quickstart's parent model trained briefly) through Slurm with
// external.via = "slurm" on a real cluster: one array task per branch runs cbs data export and
// train.py. The task of the branch with the most steps is cancelled with scancel once it has
// logged a few steps: train.py checkpoints, the branch is left pending and the fit job is
// dropped. Running cbs sweep again submits that branch alone, which resumes from its checkpoint
// (and ends as an uninterrupted run of its trainer does), the fit job runs, and cbs fit reports
// the critical batch size and a noise scale for every branch that accumulates micro-batches.
func TestSlurmExternalTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Slurm cluster and trains a sweep with PyTorch on it")
	}
	workdir, _ := torchTrainer(t)
	slurmCluster(t)
	bin := cbsBinary(t)
	dir := t.TempDir()
	parentCfg, cfg, out := torchSlurmConfigs(t, dir, workdir)
	start := time.Now()
	if code, _, stderr := cbs(t, "train", "--config", parentCfg, "--quiet"); code != 0 {
		t.Fatalf("parent: exit %d: %s", code, stderr)
	}
	log := submit(t, bin, cfg, out)
	if !strings.Contains(log, "submitted 4 of 4 branches as Slurm array job") {
		t.Errorf("cbs sweep said:\n%s", log)
	}
	subs, _ := sweep.ReadSubmissions(out)
	victim := filepath.Join(out, "branches", "b1Ki-r0") // task 0: 32 steps, the most of any branch
	metrics := filepath.Join(victim, runfmt.MetricsFile)
	var seen int
	for deadline := time.Now().Add(3 * time.Minute); seen < 3; time.Sleep(20 * time.Millisecond) {
		seen = strings.Count(readFileOr(metrics), "\n")
		if time.Now().After(deadline) {
			q, _ := exec.Command("squeue", "-r").CombinedOutput()
			t.Fatalf("b1Ki-r0 logged %d steps in 3 minutes\nsqueue:\n%s\nlog.txt:\n%s", seen, q, readFileOr(filepath.Join(victim, "log.txt")))
		}
	}
	if o, err := exec.Command("scancel", subs[0].ArrayJob+"_0").CombinedOutput(); err != nil {
		t.Fatalf("scancel: %v %s", err, o)
	}
	st := waitSlurm(t, out, "the other tasks to finish and the fit job to go", 4*time.Minute, func(st *sweep.SlurmStatusReport) bool {
		for _, task := range st.Tasks {
			if task.Active() {
				return false
			}
		}
		return len(st.Tasks) == 4 && st.Fit != nil && !st.Fit.Active()
	})
	t.Logf("submitted, cancelled at step %d or later, the rest trained: %v", seen, time.Since(start).Round(time.Millisecond))
	// The task's cbs passed SIGTERM on to train.py, which checkpointed the step it was in; cbs
	// then left the branch pending and exited 130 (interrupted).
	if task := st.Tasks["b1Ki-r0"]; task.State != "CANCELLED" || task.ExitCode != "130:0" {
		t.Errorf("cancelled task: %+v, want CANCELLED with exit code 130:0", task)
	}
	if st.Fit.State == "COMPLETED" {
		t.Errorf("the fit job ran although a task was cancelled")
	}
	var state runfmt.State
	json.Unmarshal([]byte(mustRead(t, filepath.Join(victim, "state.json"))), &state)
	if state.State == runfmt.StateDone {
		t.Fatalf("b1Ki-r0 finished before it was cancelled; the test needs a longer budget")
	}
	stopped := regexp.MustCompile(`train\.py: signal 15 at step (\d+); checkpoint written`).FindStringSubmatch(mustRead(t, filepath.Join(victim, "log.txt")))
	ts, err := model.LoadTrainerState(filepath.Join(victim, "ckpt"))
	if state.State != runfmt.StatePending || stopped == nil || err != nil || ts == nil || strconv.Itoa(ts.Step) != stopped[1] || ts.Step < seen {
		t.Fatalf("cancelled branch: state %+v, checkpoint %+v (%v), log.txt:\n%s", state, ts, err, mustRead(t, filepath.Join(victim, "log.txt")))
	}
	taskLog := mustRead(t, filepath.Join(out, "slurm", "logs", subs[0].ArrayJob+"_0.log"))
	if !strings.Contains(taskLog, "interrupted: "+victim+" is pending; run again to continue") {
		t.Errorf("the cancelled task's log does not say cbs left the branch pending:\n%s", taskLog)
	}
	others := map[string]string{}
	for _, id := range []string{"b2Ki-r0", "b4Ki-r0", "b8Ki-r0"} {
		for _, f := range []string{"metrics.jsonl", "log.txt", "state.json"} {
			others[id+"/"+f] = fileHash(t, filepath.Join(out, "branches", id, f))
		}
	}

	log = submit(t, bin, cfg, out)
	if !strings.Contains(log, "submitted 1 of 4 branches") || !strings.Contains(log, "(--array=0: b1Ki-r0)") {
		t.Errorf("resubmission said:\n%s", log)
	}
	st = waitSlurm(t, out, "the resubmitted task and the fit job", 4*time.Minute, fitEnded)
	t.Logf("submitted, cancelled, resubmitted and fitted: %v", time.Since(start).Round(time.Millisecond))
	if st.Fit.State != "COMPLETED" || st.Tasks["b1Ki-r0"].State != "COMPLETED" || st.Tasks["b1Ki-r0"].ExitCode != "0:0" {
		t.Errorf("after resubmitting: b1Ki-r0 %+v, fit %+v\n%s", st.Tasks["b1Ki-r0"], st.Fit, readFileOr(filepath.Join(victim, "log.txt")))
	}
	if l := mustRead(t, filepath.Join(victim, "log.txt")); !strings.Contains(l, "train.py: resuming at step "+stopped[1]+" (") {
		t.Errorf("b1Ki-r0 did not resume from its checkpoint at step %s:\n%s", stopped[1], l)
	}
	for k, h := range others {
		if fileHash(t, filepath.Join(out, "branches", k)) != h {
			t.Errorf("%s changed: the resubmission ran more than the cancelled branch", k)
		}
	}
	for _, id := range []string{"b1Ki-r0", "b2Ki-r0", "b4Ki-r0", "b8Ki-r0"} {
		b := filepath.Join(out, "branches", id)
		rec, err := runfmt.ReadBranch(b)
		if err != nil {
			t.Fatal(err)
		}
		ms := readMetrics(t, filepath.Join(b, runfmt.MetricsFile))
		if _, err := sweep.ValidateMetrics(filepath.Join(b, runfmt.MetricsFile), rec); err != nil || int64(len(ms)) != rec.Steps {
			t.Errorf("%s: %d metrics lines for %d steps: %v", id, len(ms), rec.Steps, err)
		}
		for i, m := range ms {
			if m.Step != i+1 {
				t.Errorf("%s: line %d is step %d", id, i+1, m.Step)
				break
			}
		}
		if s := mustRead(t, filepath.Join(b, "state.json")); !strings.Contains(s, `"done"`) {
			t.Errorf("%s: %s", id, s)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "fit", "cbs.json")); err != nil {
		t.Errorf("the fit job wrote no fit: %v", err)
	}
	code, stdout, stderr := cbs(t, "fit", out)
	if code != 0 || !strings.Contains(stdout, "CBS") {
		t.Errorf("cbs fit: exit %d\n%s%s", code, stdout, stderr)
	}
	var fit struct {
		NoiseScale struct {
			Branches []struct{ ID string }         `json:"branches"`
			Missing  []struct{ ID, Reason string } `json:"missing"`
		} `json:"noise_scale"`
	}
	json.Unmarshal([]byte(mustRead(t, filepath.Join(out, "fit", "cbs.json"))), &fit)
	// b1Ki-r0 trains one micro-batch per step: no micro-batch gradients, no noise scale, as in
	// cbs.
	if n := fit.NoiseScale; len(n.Branches) != 3 || len(n.Missing) != 1 || n.Missing[0].ID != "b1Ki-r0" {
		t.Errorf("noise scale of the fit: %+v", n)
	}
	if code, _, stderr = cbs(t, "sweep", "--config", cfg); code != 0 || !strings.Contains(stderr, "already finished") {
		t.Errorf("resubmitting a finished sweep: exit %d, %q", code, stderr)
	}

	// The resumed branch ends as its trainer ends when never stopped.
	ref := filepath.Join(dir, "ref")
	var run struct{ Env []string }
	if err := json.Unmarshal([]byte(mustRead(t, filepath.Join(victim, "external.json"))), &run); err != nil {
		t.Fatal(err)
	}
	c := exec.Command(torchref.Python, "train.py", "--data", filepath.Join(victim, "data.npz"))
	c.Dir, c.Env = workdir, append(append(os.Environ(), run.Env...), "CBS_OUT="+ref)
	if o, err := c.CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted trainer: %v\n%s", err, o)
	}
	if fileHash(t, metrics) != fileHash(t, filepath.Join(ref, runfmt.MetricsFile)) {
		t.Errorf("the metrics of b1Ki-r0, cancelled at step %s and resumed, differ from an uninterrupted run's", stopped[1])
	}
}
