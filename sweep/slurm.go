package sweep

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"cbs/branch"
	"cbs/runfmt"
)

// Files of the run directory's slurm/ folder.
const (
	SlurmDir    = "slurm"
	TrainScript = "train.sbatch"
	FitScript   = "fit.sbatch"
	// JobsFile has one JSON line per submission (a Submission), the join key of cbs status.
	JobsFile = "jobs.jsonl"
	LogsDir  = "logs"
)

// Submission is one line of slurm/jobs.jsonl: an array job and its fit job.
type Submission struct {
	ArrayJob string `json:"array_job"`
	// Array is the --array value: indices into Branches, and %N when capped.
	Array string `json:"array"`
	// Branches lists every branch of the plan; array task i trains Branches[i].
	Branches []string `json:"branches"`
	// Tasks are the indices submitted.
	Tasks  []int  `json:"tasks"`
	FitJob string `json:"fit_job,omitempty"`
	Time   string `json:"time"`
}

// slurmTimeout bounds every Slurm client call: a client that cannot reach its controller
// retries for about a minute before failing.
const slurmTimeout = 90 * time.Second

// slurm writes the job scripts into RUN_DIR/slurm and submits one sbatch array job, one task
// per branch not done and not already queued or running (task i trains the plan's branch i with
// cbs train --branch, or the external trainer), then a job that runs cbs fit and cbs plot after
// every task succeeded. It returns once submitted; state.json files record what the tasks did,
// and running cbs sweep again submits what is left. A dry run prints the scripts and the sbatch
// command lines instead.
type slurm struct {
	p    *Plan
	opts Options
	bin  string // the cbs binary the scripts call, absolute
	out  string // the run directory, absolute
}

func newSlurm(p *Plan, opts Options) (*slurm, error) {
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding the cbs executable for the job scripts: %w", err)
		}
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	out, err := filepath.Abs(p.Out)
	if err != nil {
		return nil, err
	}
	return &slurm{p: p, opts: opts, bin: bin, out: out}, nil
}

func (sl *slurm) backend() (string, bool) {
	if sl.p.Config.Run.Executor == ExecutorExternal {
		return "external via slurm: " + sl.p.Config.External.Command.String(), true
	}
	return fmt.Sprintf("slurm, %d cpus per task", sl.p.Config.Slurm.CPUsPerTask), false
}

func (sl *slurm) dryRun(ctx context.Context, todo []*branch.Spec) error {
	p, out, w := sl.p, sl.out, sl.opts.Stdout
	submit, waitFor, err := splitActive(ctx, out, todo, sl.opts)
	if err != nil {
		fmt.Fprintf(w, "# could not ask Slurm which branches are queued or running (%v)\n", err)
	}
	if len(submit) == 0 {
		fmt.Fprintf(w, "# nothing to submit: of %d branches, %d are done or failed and %d queued or running\n", len(p.Branches), len(p.Branches)-len(todo), len(todo))
		return nil
	}
	fmt.Fprintf(w, "# %s/%s\n%s\n", filepath.Join(out, SlurmDir), TrainScript, trainScript(p, out, sl.bin, indices(p, submit)))
	fmt.Fprintf(w, "# %s/%s\n%s\n", filepath.Join(out, SlurmDir), FitScript, fitScript(p, out, sl.bin))
	fmt.Fprintf(w, "# submitted with:\nsbatch --parsable %s\n", shellQuote(filepath.Join(out, SlurmDir, TrainScript)))
	if *p.Config.Slurm.Fit {
		deps := strings.Join(append([]string{"<array job id>"}, waitFor...), ":")
		fmt.Fprintf(w, "sbatch --parsable --dependency=afterok:%s --kill-on-invalid-dep=yes %s\n", deps, shellQuote(filepath.Join(out, SlurmDir, FitScript)))
	}
	return nil
}

func (sl *slurm) run(ctx context.Context, todo []*branch.Spec, outcome *Outcome) error {
	p, out, opts := sl.p, sl.out, sl.opts
	dir := filepath.Join(out, SlurmDir)
	if err := os.MkdirAll(filepath.Join(dir, LogsDir), 0o755); err != nil {
		return err
	}
	submit, waitFor, err := splitActive(ctx, out, todo, opts)
	if err != nil {
		return err
	}
	if len(submit) == 0 {
		fmt.Fprintf(opts.Log, "%s: every branch not finished is already queued or running; nothing to submit\n", p.Out)
		return nil
	}
	for _, s := range submit {
		spec := *s
		spec.Threads = p.Config.Slurm.CPUsPerTask
		if err := writeBranchFiles(p, &spec); err != nil {
			return err
		}
		outcome.States[s.ID] = runfmt.StatePending
	}
	tasks := indices(p, submit)
	if err := os.WriteFile(filepath.Join(dir, TrainScript), []byte(trainScript(p, out, sl.bin, tasks)), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, FitScript), []byte(fitScript(p, out, sl.bin)), 0o755); err != nil {
		return err
	}
	sub := &Submission{Tasks: tasks, Array: arraySpec(tasks, p.Config.Slurm.MaxConcurrent), Time: time.Now().UTC().Format(time.RFC3339)}
	for _, s := range p.Branches {
		sub.Branches = append(sub.Branches, s.ID)
	}
	if sub.ArrayJob, err = sbatch(ctx, dir, filepath.Join(dir, TrainScript)); err != nil {
		return err
	}
	if *p.Config.Slurm.Fit {
		deps := "afterok:" + strings.Join(append([]string{sub.ArrayJob}, waitFor...), ":")
		sub.FitJob, err = sbatch(ctx, dir, "--dependency="+deps, "--kill-on-invalid-dep=yes", filepath.Join(dir, FitScript))
		if err != nil {
			// The array is queued and recorded below; only the fit is missing.
			fmt.Fprintf(opts.Log, "%s: submitting the fit job: %v (run cbs fit %s when the branches are done)\n", p.Out, err, p.Out)
		}
	}
	line, _ := json.Marshal(sub)
	f, err := os.OpenFile(filepath.Join(dir, JobsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.Write(append(line, '\n'))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	ids := make([]string, len(submit))
	for i, s := range submit {
		ids[i] = s.ID
	}
	fmt.Fprintf(opts.Log, "%s: submitted %d of %d branches as Slurm array job %s (--array=%s: %s); logs in %s\n",
		p.Out, len(submit), len(p.Branches), sub.ArrayJob, sub.Array, strings.Join(ids, " "), filepath.Join(dir, LogsDir))
	if sub.FitJob != "" {
		fmt.Fprintf(opts.Log, "%s: fit and plot job %s runs after every task succeeded; follow with cbs status %s\n", p.Out, sub.FitJob, p.Out)
	}
	outcome.Submitted = sub
	return nil
}

// splitActive leaves out the branches whose task is still queued or running: submitting them
// again would train one branch twice in one directory. It returns the branches to submit and
// the array jobs that the fit job must also wait for.
func splitActive(ctx context.Context, out string, todo []*branch.Spec, opts Options) (submit []*branch.Spec, waitFor []string, err error) {
	st, err := SlurmStatus(ctx, out)
	if err != nil {
		return todo, nil, err
	}
	for _, s := range todo {
		if t, ok := st.Tasks[s.ID]; ok && t.Active() {
			fmt.Fprintf(opts.Log, "%s: already %s as Slurm job %s\n", s.ID, strings.ToLower(t.State), t.Job)
			waitFor = appendUnique(waitFor, t.ArrayJob)
			continue
		}
		submit = append(submit, s)
	}
	return submit, waitFor, nil
}

func appendUnique(list []string, s string) []string {
	for _, v := range list {
		if v == s {
			return list
		}
	}
	return append(list, s)
}

// indices are the positions of specs in the plan: their array task ids.
func indices(p *Plan, specs []*branch.Spec) []int {
	pos := map[string]int{}
	for i, s := range p.Branches {
		pos[s.ID] = i
	}
	var out []int
	for _, s := range specs {
		out = append(out, pos[s.ID])
	}
	sort.Ints(out)
	return out
}

// arraySpec writes task ids as sbatch --array wants them: "0,2-4", with "%N" when capped.
func arraySpec(tasks []int, max int) string {
	var parts []string
	for i := 0; i < len(tasks); {
		j := i
		for j+1 < len(tasks) && tasks[j+1] == tasks[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(tasks[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", tasks[i], tasks[j]))
		}
		i = j + 1
	}
	s := strings.Join(parts, ",")
	if max > 0 {
		s += "%" + strconv.Itoa(max)
	}
	return s
}

// sbatchHeader writes the #SBATCH lines both job scripts share.
func sbatchHeader(b *strings.Builder, st *SlurmTable) {
	opt := func(name, v string) {
		if v != "" {
			fmt.Fprintf(b, "#SBATCH --%s=%s\n", name, v)
		}
	}
	opt("partition", st.Partition)
	opt("account", st.Account)
	opt("time", st.Time)
	opt("mem", st.Mem)
	for _, l := range st.Extra {
		fmt.Fprintf(b, "#SBATCH %s\n", l)
	}
}

func trainScript(p *Plan, out, bin string, tasks []int) string {
	st := p.Config.Slurm
	var b strings.Builder
	b.WriteString("#!/bin/bash\n")
	fmt.Fprintf(&b, "# Sweep %s: array task i trains branch i of the list below. Written by cbs sweep;\n", p.Config.Experiment.Name)
	b.WriteString("# running cbs sweep again resubmits the branches that are not done, from their checkpoints.\n")
	fmt.Fprintf(&b, "#SBATCH --job-name=%s\n", shellQuote("cbs-"+p.Config.Experiment.Name))
	fmt.Fprintf(&b, "#SBATCH --array=%s\n", arraySpec(tasks, st.MaxConcurrent))
	fmt.Fprintf(&b, "#SBATCH --output=%s\n", shellQuote(filepath.Join(out, SlurmDir, LogsDir, "%A_%a.log")))
	b.WriteString("#SBATCH --open-mode=append\n")
	fmt.Fprintf(&b, "#SBATCH --cpus-per-task=%d\n", st.CPUsPerTask)
	if st.GPUsPerTask > 0 {
		fmt.Fprintf(&b, "#SBATCH --gpus-per-task=%d\n", st.GPUsPerTask)
	}
	if *st.Requeue {
		b.WriteString("#SBATCH --requeue\n")
	} else {
		b.WriteString("#SBATCH --no-requeue\n")
	}
	sbatchHeader(&b, st)
	b.WriteString("set -eu\n")
	b.WriteString("branches=(")
	for i, s := range p.Branches {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(shellQuote(s.ID))
	}
	b.WriteString(")\n")
	fmt.Fprintf(&b, "dir=%s/${branches[$SLURM_ARRAY_TASK_ID]}\n", shellQuote(filepath.Join(out, runfmt.BranchesDir)))
	b.WriteString("echo \"cbs: task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname): $dir\" >&2\n")
	if p.Config.Run.Executor == ExecutorExternal {
		fmt.Fprintf(&b, "exec %s sweep --external-branch \"$dir\"\n", shellQuote(bin))
	} else {
		// SIGTERM (scancel, preemption, the time limit) makes cbs train finish its step and
		// checkpoint, so the resubmitted task continues where this one stopped.
		fmt.Fprintf(&b, "exec %s train --branch \"$dir\"\n", shellQuote(bin))
	}
	return b.String()
}

func fitScript(p *Plan, out, bin string) string {
	st := p.Config.Slurm
	var b strings.Builder
	b.WriteString("#!/bin/bash\n")
	fmt.Fprintf(&b, "# Sweep %s: fit and figures once every array task succeeded (afterok). Written by cbs sweep.\n", p.Config.Experiment.Name)
	fmt.Fprintf(&b, "#SBATCH --job-name=%s\n", shellQuote("cbs-"+p.Config.Experiment.Name+"-fit"))
	fmt.Fprintf(&b, "#SBATCH --output=%s\n", shellQuote(filepath.Join(out, SlurmDir, LogsDir, "fit-%j.log")))
	b.WriteString("#SBATCH --cpus-per-task=1\n")
	sbatchHeader(&b, st)
	b.WriteString("set -eu\n")
	// Both read the sweep's [analysis] table from the run directory's resolved.toml.
	fmt.Fprintf(&b, "%s fit %s\n", shellQuote(bin), shellQuote(out))
	fmt.Fprintf(&b, "%s plot %s\n", shellQuote(bin), shellQuote(out))
	return b.String()
}

// slurmCmd runs a Slurm client and returns its stdout; errors carry its stderr.
func slurmCmd(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, slurmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if ctx.Err() != nil {
			msg = fmt.Sprintf("no answer within %v (is the controller up? SLURM_CONF=%q)", slurmTimeout, os.Getenv("SLURM_CONF"))
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// sbatch submits and returns the job id.
func sbatch(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := slurmCmd(ctx, dir, "sbatch", append([]string{"--parsable"}, args...)...)
	if err != nil {
		return "", err
	}
	// --parsable prints "jobid" or "jobid;cluster".
	id, _, _ := strings.Cut(strings.TrimSpace(string(out)), ";")
	if _, err := strconv.Atoi(id); err != nil {
		return "", fmt.Errorf("sbatch printed %q, want a job id", strings.TrimSpace(string(out)))
	}
	return id, nil
}

// SlurmTask is what Slurm says about one branch's latest task or the fit job.
type SlurmTask struct {
	Job      string `json:"job"` // 123_4, or 125 for the fit job
	ArrayJob string `json:"-"`
	State    string `json:"state"`            // PENDING, RUNNING, COMPLETED, CANCELLED, FAILED, ...
	Reason   string `json:"reason,omitempty"` // why pending, or the node
	ExitCode string `json:"exit_code,omitempty"`
}

// Active reports whether the task is queued or running (it will still write to the branch).
func (t SlurmTask) Active() bool {
	switch t.State {
	case "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT":
		return true
	}
	return false
}

// SlurmStatusReport joins the run directory's submissions with the scheduler.
type SlurmStatusReport struct {
	Tasks map[string]SlurmTask // by branch id, the latest submission's task
	Fit   *SlurmTask           // the latest fit job
	// Unknown lists jobs the scheduler no longer reports (finished longer ago than MinJobAge):
	// the branches' state files say how they ended.
	Unknown []string
}

// ReadSubmissions reads RUN_DIR/slurm/jobs.jsonl; none is not an error.
func ReadSubmissions(out string) ([]Submission, error) {
	f, err := os.Open(filepath.Join(out, SlurmDir, JobsFile))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var subs []Submission
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var s Submission
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", f.Name(), n, err)
		}
		subs = append(subs, s)
	}
	return subs, sc.Err()
}

// SlurmStatus asks squeue (queued and running tasks) and scontrol (tasks that ended within
// MinJobAge) about the jobs recorded in RUN_DIR/slurm/jobs.jsonl. sacct is not used: it needs
// slurmdbd, which many clusters have but a single machine does not.
func SlurmStatus(ctx context.Context, out string) (*SlurmStatusReport, error) {
	rep := &SlurmStatusReport{Tasks: map[string]SlurmTask{}}
	subs, err := ReadSubmissions(out)
	if err != nil || len(subs) == 0 {
		return rep, err
	}
	seen := newSlurmSeen(subs)
	if err := seen.squeue(ctx, out); err != nil {
		return nil, err
	}
	rep.Unknown = seen.scontrol(ctx, out)
	for _, s := range subs {
		for k, t := range seen.found[s.ArrayJob] {
			if id, ok := seen.owner[s.ArrayJob][k]; ok {
				rep.Tasks[id] = t
			}
		}
		if s.FitJob != "" {
			if t, ok := seen.fits[s.FitJob]; ok {
				rep.Fit = &t
			} else {
				rep.Fit = &SlurmTask{Job: s.FitJob, State: "UNKNOWN"}
			}
		}
	}
	return rep, nil
}

// slurmSeen is what the scheduler says about a sweep's submissions: each array task's state,
// and each fit job's.
type slurmSeen struct {
	owner  map[string]map[int]string // array job -> task -> branch
	ids    []string                  // the array and fit jobs, in submission order
	wanted map[string]bool
	found  map[string]map[int]SlurmTask // array job -> task -> what the scheduler says
	fits   map[string]SlurmTask
}

// newSlurmSeen indexes the submissions; tasks of later submissions override earlier ones.
func newSlurmSeen(subs []Submission) *slurmSeen {
	s := &slurmSeen{owner: map[string]map[int]string{}, wanted: map[string]bool{},
		found: map[string]map[int]SlurmTask{}, fits: map[string]SlurmTask{}}
	for _, sub := range subs {
		m := map[int]string{}
		for _, t := range sub.Tasks {
			if t >= 0 && t < len(sub.Branches) {
				m[t] = sub.Branches[t]
			}
		}
		s.owner[sub.ArrayJob] = m
		s.ids = append(s.ids, sub.ArrayJob)
		if sub.FitJob != "" {
			s.ids = append(s.ids, sub.FitJob)
		}
	}
	for _, id := range s.ids {
		s.wanted[id] = true
	}
	return s
}

// record notes t, task of array job arrayJob, or a fit job when arrayJob is not one of ours.
func (s *slurmSeen) record(t SlurmTask, arrayJob, task string) {
	if _, ok := s.owner[arrayJob]; !ok {
		s.fits[t.Job] = t
		return
	}
	k, err := strconv.Atoi(task)
	if err != nil {
		return // a range of tasks not yet split off: squeue -r lists them one by one
	}
	if s.found[arrayJob] == nil {
		s.found[arrayJob] = map[int]SlurmTask{}
	}
	t.ArrayJob = arrayJob
	s.found[arrayJob][k] = t // scontrol, asked last, has the exit code
}

// squeue records the pending and running jobs.
func (s *slurmSeen) squeue(ctx context.Context, out string) error {
	q, err := slurmCmd(ctx, out, "squeue", "--me", "-h", "-r", "-o", "%F|%K|%i|%T|%R")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(q), "\n") {
		f := strings.SplitN(strings.TrimSpace(line), "|", 5)
		if len(f) < 5 || !s.wanted[f[0]] {
			continue
		}
		s.record(SlurmTask{Job: f[2], State: f[3], Reason: f[4]}, f[0], f[1])
	}
	return nil
}

// scontrol records each job as scontrol shows it, exit codes included, and returns the jobs it
// no longer knows.
func (s *slurmSeen) scontrol(ctx context.Context, out string) (unknown []string) {
	for _, id := range s.ids {
		// scontrol knows a finished job for MinJobAge seconds after its end; later it says
		// "Invalid job id specified", which only means it ended long ago.
		o, err := slurmCmd(ctx, out, "scontrol", "-o", "show", "job", id)
		if err != nil {
			unknown = append(unknown, id)
			continue
		}
		for _, line := range strings.Split(string(o), "\n") {
			kv := scontrolFields(line)
			if kv["JobId"] == "" {
				continue
			}
			t := SlurmTask{Job: kv["JobId"], State: kv["JobState"], Reason: kv["Reason"], ExitCode: kv["ExitCode"]}
			if aj := kv["ArrayJobId"]; aj != "" {
				t.Job = aj + "_" + kv["ArrayTaskId"]
				s.record(t, aj, kv["ArrayTaskId"])
			} else if s.wanted[t.Job] {
				s.record(t, "", "")
			}
		}
	}
	return unknown
}

var scontrolField = regexp.MustCompile(`(\w+(?:/\w+)?)=(\S*)`)

// scontrolFields splits one line of scontrol -o show job into its key=value fields.
func scontrolFields(line string) map[string]string {
	kv := map[string]string{}
	for _, m := range scontrolField.FindAllStringSubmatch(line, -1) {
		if _, dup := kv[m[1]]; !dup {
			kv[m[1]] = m[2]
		}
	}
	return kv
}
