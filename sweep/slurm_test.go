package sweep

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cbs/branch"
	"cbs/runfmt"
)

// slurmConfig is a three-branch sweep from a fresh tiny model, submitted to Slurm.
const slurmConfig = `
[experiment]
name = "s"
seed = 1
out = "%s"
[model]
hidden_size = 16
layers = 1
heads = 2
intermediate_size = 32
[data]
source = "synthetic"
seq_len = 16
synthetic_tokens = 16384
[branches]
budget = "4Ki"
batch_sizes = ["256", "512", "1Ki"]
micro_batch = 4
[eval]
every = "1Ki"
tokens = "512"
[run]
executor = "slurm"
[slurm]
partition = "gpu"
account = "lab"
time = "1-00:00:00"
mem = "8G"
cpus_per_task = 2
gpus_per_task = 1
max_concurrent = 2
extra = ["--qos=high"]
`

// fakeSlurm puts sbatch, squeue and scontrol stand-ins first in PATH: sbatch records its
// arguments and prints ids from 100 on, squeue prints the file squeue.txt, scontrol the file
// scontrol.txt (or fails as for a job it forgot).
func fakeSlurm(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	scripts := map[string]string{
		"sbatch": `#!/bin/sh
[ -f "$FAKE/sbatch.fail" ] && { echo "sbatch: error: Batch job submission failed: Invalid account" >&2; exit 1; }
n=$(cat "$FAKE/next" 2>/dev/null || echo 100)
echo $((n + 1)) >"$FAKE/next"
echo "$*" >>"$FAKE/sbatch.args"
echo "$n"
`,
		"squeue":   "#!/bin/sh\ncat \"$FAKE/squeue.txt\" 2>/dev/null\nexit 0\n",
		"scontrol": "#!/bin/sh\n[ -f \"$FAKE/scontrol.txt\" ] && { cat \"$FAKE/scontrol.txt\"; exit 0; }\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n",
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("FAKE", dir)
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return dir
}

func TestSubmitSlurm(t *testing.T) {
	fake := fakeSlurm(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	p, err := Load(writeFile(t, dir, "s.toml", strings.Replace(slurmConfig, "%s", out, 1)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bin := "/opt/cbs/bin/cbs"
	var log, stdout bytes.Buffer

	// --dry-run prints both scripts and the sbatch lines, and touches nothing.
	if _, err := Execute(ctx, p, Options{DryRun: true, Binary: bin, Stdout: &stdout, Log: &log}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"#SBATCH --array=0-2%2", "#SBATCH --output=" + out + "/slurm/logs/%A_%a.log", "#SBATCH --cpus-per-task=2",
		"#SBATCH --gpus-per-task=1", "#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --time=1-00:00:00",
		"#SBATCH --mem=8G", "#SBATCH --qos=high", "#SBATCH --requeue", "branches=(b256-r0 b512-r0 b1Ki-r0)",
		`exec /opt/cbs/bin/cbs train --branch "$dir"`, "/opt/cbs/bin/cbs fit " + out + "\n",
		"/opt/cbs/bin/cbs plot " + out + "\n", "--dependency=afterok:<array job id> --kill-on-invalid-dep=yes",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, stdout.String())
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("dry run created %s", out)
	}
	if _, err := os.Stat(filepath.Join(fake, "sbatch.args")); !os.IsNotExist(err) {
		t.Errorf("dry run called sbatch")
	}

	// A submission: the array, then the fit after it; branch.json carries the task's threads.
	o, err := Execute(ctx, p, Options{Binary: bin, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if o.Submitted == nil || o.Submitted.ArrayJob != "100" || o.Submitted.FitJob != "101" || o.Submitted.Array != "0-2%2" {
		t.Fatalf("submission %+v", o.Submitted)
	}
	args := strings.Split(strings.TrimSpace(readFile(t, filepath.Join(fake, "sbatch.args"))), "\n")
	wantArgs := []string{
		"--parsable " + out + "/slurm/train.sbatch",
		"--parsable --dependency=afterok:100 --kill-on-invalid-dep=yes " + out + "/slurm/fit.sbatch",
	}
	if strings.Join(args, "\n") != strings.Join(wantArgs, "\n") {
		t.Errorf("sbatch calls:\n%s\nwant:\n%s", strings.Join(args, "\n"), strings.Join(wantArgs, "\n"))
	}
	spec, err := branch.LoadSpec(BranchDir(out, "b512-r0"))
	if err != nil || spec.Threads != 2 || spec.BatchTokens != 512 {
		t.Errorf("branch.json: %+v, %v", spec, err)
	}
	for _, f := range []string{ResolvedFile, runfmt.ManifestFile, "slurm/train.sbatch", "slurm/fit.sbatch", "slurm/jobs.jsonl"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("run directory lacks %s", f)
		}
	}

	// Resubmitting: b256 is done, b512's task still runs; only b1Ki (task 2) goes, and the fit
	// waits for both arrays.
	branch.WriteState(BranchDir(out, "b256-r0"), runfmt.State{State: runfmt.StateDone})
	os.WriteFile(filepath.Join(fake, "squeue.txt"), []byte("100|1|100_1|RUNNING|localhost\n101|N/A|101|PENDING|(Dependency)\n99|0|99_0|RUNNING|other\n"), 0o644)
	log.Reset()
	o, err = Execute(ctx, p, Options{Binary: bin, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if o.Submitted == nil || o.Submitted.Array != "2%2" || strings.Join(o.Submitted.Branches, " ") != "b256-r0 b512-r0 b1Ki-r0" {
		t.Fatalf("resubmission %+v", o.Submitted)
	}
	if !strings.Contains(log.String(), "b512-r0: already running as Slurm job 100_1") {
		t.Errorf("log: %s", log.String())
	}
	args = strings.Split(strings.TrimSpace(readFile(t, filepath.Join(fake, "sbatch.args"))), "\n")
	if got := args[len(args)-1]; !strings.Contains(got, "--dependency=afterok:102:100 ") {
		t.Errorf("fit submitted with %q, want afterok on both arrays", got)
	}

	// cbs status's join: squeue for the live tasks, scontrol for the ended ones.
	os.WriteFile(filepath.Join(fake, "squeue.txt"), []byte("102|2|102_2|PENDING|(JobArrayTaskLimit)\n"), 0o644)
	os.WriteFile(filepath.Join(fake, "scontrol.txt"), []byte(
		"JobId=100 ArrayJobId=100 ArrayTaskId=1 JobName=cbs-s JobState=CANCELLED Reason=None Dependency=(null) ExitCode=0:15\n"+
			"JobId=104 ArrayJobId=100 ArrayTaskId=0 JobState=COMPLETED Reason=None ExitCode=0:0\n"+
			"JobId=103 JobName=cbs-s-fit JobState=PENDING Reason=Dependency ExitCode=0:0\n"), 0o644)
	st, err := SlurmStatus(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Tasks["b512-r0"]; got.Job != "100_1" || got.State != "CANCELLED" || got.ExitCode != "0:15" || got.Active() {
		t.Errorf("b512-r0: %+v", got)
	}
	if got := st.Tasks["b1Ki-r0"]; got.Job != "102_2" || got.State != "PENDING" || !got.Active() {
		t.Errorf("b1Ki-r0: %+v", got)
	}
	if got := st.Tasks["b256-r0"]; got.State != "COMPLETED" {
		t.Errorf("b256-r0: %+v", got)
	}
	if st.Fit == nil || st.Fit.Job != "103" || st.Fit.State != "PENDING" {
		t.Errorf("fit job: %+v", st.Fit)
	}

	// Nothing left: no sbatch call.
	for _, id := range []string{"b512-r0", "b1Ki-r0"} {
		branch.WriteState(BranchDir(out, id), runfmt.State{State: runfmt.StateDone})
	}
	before := readFile(t, filepath.Join(fake, "sbatch.args"))
	log.Reset()
	if o, err = Execute(ctx, p, Options{Binary: bin, Log: &log}); err != nil || o.Submitted != nil || !strings.Contains(log.String(), "already finished") {
		t.Errorf("all done: %+v, %v, %q", o, err, log.String())
	}
	if readFile(t, filepath.Join(fake, "sbatch.args")) != before {
		t.Errorf("sbatch called with every branch done")
	}
	stdout.Reset()
	if _, err = Execute(ctx, p, Options{DryRun: true, Binary: bin, Stdout: &stdout}); err != nil || !strings.Contains(stdout.String(), "# nothing to submit: of 3 branches, 3 are done") {
		t.Errorf("dry run with every branch done: %v\n%s", err, stdout.String())
	}

	// A refused submission is an error carrying sbatch's words.
	branch.WriteState(BranchDir(out, "b1Ki-r0"), runfmt.State{State: runfmt.StatePending})
	os.Remove(filepath.Join(fake, "squeue.txt"))
	os.WriteFile(filepath.Join(fake, "sbatch.fail"), nil, 0o644)
	if _, err = Execute(ctx, p, Options{Binary: bin, Log: &log}); err == nil || !strings.Contains(err.Error(), "Invalid account") {
		t.Errorf("failed sbatch: %v", err)
	}
}

func TestArraySpec(t *testing.T) {
	for _, tc := range []struct {
		tasks []int
		max   int
		want  string
	}{
		{[]int{0}, 0, "0"}, {[]int{0, 1, 2}, 0, "0-2"}, {[]int{0, 2, 3, 4, 7}, 3, "0,2-4,7%3"}, {[]int{5, 6}, 1, "5-6%1"},
	} {
		if got := arraySpec(tc.tasks, tc.max); got != tc.want {
			t.Errorf("arraySpec(%v, %d) = %q, want %q", tc.tasks, tc.max, got, tc.want)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
