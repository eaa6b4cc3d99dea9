package sweep

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cbs/branch"
	"cbs/internal/atomicio"
	"cbs/runfmt"
)

// ExternalFile is what a branch of an external sweep runs: the rendered command, its working
// directory and environment. The Slurm task and the local executor both read it, so what ran
// can be read back from the branch directory.
const ExternalFile = "external.json"

// ExternalRun is external.json.
type ExternalRun struct {
	Argv []string `json:"argv"`
	Dir  string   `json:"dir"`
	// Env is added to the environment of cbs: CBS_<PLACEHOLDER>=value for every placeholder.
	Env []string `json:"env"`
}

// Placeholder is one name the command template may use as {name}.
type Placeholder struct {
	Name  string
	Doc   string
	value func(s *branch.Spec, dir string) string
}

func itoa[T ~int | ~int64](v T) string { return strconv.FormatInt(int64(v), 10) }
func ftoa(v float64) string            { return strconv.FormatFloat(v, 'g', -1, 64) }

// Placeholders lists the names of the command template, in the order docs/executors.md gives.
var Placeholders = []Placeholder{
	{"id", "branch id, e.g. b64Ki-r0", func(s *branch.Spec, _ string) string { return s.ID }},
	{"out", "branch directory (absolute); the trainer writes metrics.jsonl here", func(_ *branch.Spec, d string) string { return d }},
	{"metrics", "{out}/metrics.jsonl", func(_ *branch.Spec, d string) string { return filepath.Join(d, runfmt.MetricsFile) }},
	{"spec", "{out}/branch.json, the resolved branch spec", func(_ *branch.Spec, d string) string { return filepath.Join(d, runfmt.SpecFile) }},
	{"batch_tokens", "global batch in tokens", func(s *branch.Spec, _ string) string { return itoa(s.BatchTokens) }},
	{"batch_seqs", "global batch in sequences", func(s *branch.Spec, _ string) string { return itoa(s.BatchSeqs()) }},
	{"seq_len", "tokens per sequence (data.seq_len)", func(s *branch.Spec, _ string) string { return itoa(s.SeqLen()) }},
	{"micro_batch", "sequences per micro-batch", func(s *branch.Spec, _ string) string { return itoa(s.MicroBatch) }},
	{"accum", "micro-batches per step", func(s *branch.Spec, _ string) string { return itoa(s.Accum()) }},
	{"steps", "optimizer steps: budget_tokens / batch_tokens", func(s *branch.Spec, _ string) string { return itoa(s.Steps()) }},
	{"budget_tokens", "tokens to train on", func(s *branch.Spec, _ string) string { return itoa(s.Budget) }},
	{"lr", "peak LR of the base group: optimizer.lr x lr_scale", func(s *branch.Spec, _ string) string { return ftoa(s.Optim.LR * s.LRScale) }},
	{"lr_scale", "the branch's LR multiplier from branches.lr_scaling", func(s *branch.Spec, _ string) string { return ftoa(s.LRScale) }},
	{"warmup_tokens", "linear warmup, in tokens", func(s *branch.Spec, _ string) string { return itoa(s.Schedule.Warmup) }},
	{"schedule", "shape after the warmup (schedule.shape): constant, linear, cosine or wsd", func(s *branch.Spec, _ string) string { return s.Schedule.Shape }},
	{"decay_tokens", "wsd only: length of the final decay, in tokens (schedule.decay)", func(s *branch.Spec, _ string) string { return itoa(s.Schedule.Decay) }},
	{"min_lr_ratio", "final LR / peak LR", func(s *branch.Spec, _ string) string { return ftoa(s.Schedule.MinLRRatio) }},
	{"weight_decay", "optimizer.weight_decay", func(s *branch.Spec, _ string) string { return ftoa(s.Optim.WeightDecay) }},
	{"beta1", "optimizer.betas[0]", func(s *branch.Spec, _ string) string { return ftoa(s.Optim.Betas[0]) }},
	{"beta2", "optimizer.betas[1]", func(s *branch.Spec, _ string) string { return ftoa(s.Optim.Betas[1]) }},
	{"clip", "optimizer.clip (0: none)", func(s *branch.Spec, _ string) string { return ftoa(s.Optim.Clip) }},
	{"eval_every_tokens", "eval marks are multiples of this (0: only at the end)", func(s *branch.Spec, _ string) string { return itoa(s.EvalEvery) }},
	{"eval_tokens", "held-out tokens per eval (eval.tokens)", func(s *branch.Spec, _ string) string { return itoa(s.Data.EvalTokens) }},
	{"parent", "parent checkpoint (absolute; empty without [parent])", func(s *branch.Spec, _ string) string { return s.Parent }},
	{"optimizer_state", "keep or reset (empty without [parent])", func(s *branch.Spec, _ string) string { return s.OptimizerState }},
	{"seed", "the branch's seed (experiment.seed + replicate)", func(s *branch.Spec, _ string) string { return strconv.FormatUint(s.Seed, 10) }},
	{"replicate", "replicate index, 0-based", func(s *branch.Spec, _ string) string { return itoa(s.Replicate) }},
	{"objective", "ar or mdm", func(s *branch.Spec, _ string) string { return s.Objective }},
	{"threads", "CPU threads (run.threads, or slurm.cpus_per_task under Slurm; 0: the trainer's choice)", func(s *branch.Spec, _ string) string { return itoa(s.Threads) }},
	{"device", "run.device as given", func(s *branch.Spec, _ string) string { return s.Device }},
	{"cbs", "the cbs binary running the sweep (absolute), for {cbs} data export", func(*branch.Spec, string) string { return cbsBinary() }},
}

// cbsBinary is the absolute path of this executable, as the Slurm job scripts call it; "cbs"
// (found on PATH) when it cannot be known.
func cbsBinary() string {
	if bin, err := os.Executable(); err == nil {
		if bin, err = filepath.Abs(bin); err == nil {
			return bin
		}
	}
	return "cbs"
}

func placeholderNames() string {
	names := make([]string, len(Placeholders))
	for i, p := range Placeholders {
		names[i] = "{" + p.Name + "}"
	}
	return strings.Join(names, " ")
}

func lookupPlaceholder(name string) *Placeholder {
	for i := range Placeholders {
		if Placeholders[i].Name == name {
			return &Placeholders[i]
		}
	}
	return nil
}

// expandTemplate replaces every {name} of t by quote(value); {{ and }} stand for braces.
func expandTemplate(t string, value func(name string) (string, bool), quote func(string) string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '{' && strings.HasPrefix(t[i:], "{{"), c == '}' && strings.HasPrefix(t[i:], "}}"):
			b.WriteByte(c)
			i++
		case c == '{':
			end := strings.IndexByte(t[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("external.command: unclosed { at byte %d of %q (write {{ for a literal brace)", i, t)
			}
			name := t[i+1 : i+end]
			if strings.ContainsAny(name, "{ \t\n") {
				return "", fmt.Errorf("external.command: unclosed { at byte %d of %q (write {{ for a literal brace)", i, t)
			}
			v, ok := value(name)
			if !ok {
				return "", fmt.Errorf("external.command: unknown placeholder {%s} (allowed: %s)", name, placeholderNames())
			}
			b.WriteString(quote(v))
			i += end
		case c == '}':
			return "", fmt.Errorf("external.command: unmatched } at byte %d of %q (write }} for a literal brace)", i, t)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// shellQuote makes v one shell word.
func shellQuote(v string) string {
	if v == "" {
		return "''"
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-+=/.,:@%", r)) {
			return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
		}
	}
	return v
}

func checkTemplate(c Command) error {
	known := func(name string) (string, bool) { return "", lookupPlaceholder(name) != nil }
	id := func(s string) string { return s }
	if c.Argv == nil {
		_, err := expandTemplate(c.Shell, known, id)
		return err
	}
	for _, a := range c.Argv {
		if _, err := expandTemplate(a, known, id); err != nil {
			return err
		}
	}
	return nil
}

// renderExternal builds what branch s runs in directory dir.
func renderExternal(e *ExternalTable, s *branch.Spec, dir string) (*ExternalRun, error) {
	value := func(name string) (string, bool) {
		p := lookupPlaceholder(name)
		if p == nil {
			return "", false
		}
		return p.value(s, dir), true
	}
	run := &ExternalRun{Dir: e.Workdir}
	if e.Command.Argv == nil {
		line, err := expandTemplate(e.Command.Shell, value, shellQuote)
		if err != nil {
			return nil, err
		}
		run.Argv = []string{"/bin/sh", "-c", line}
	} else {
		for _, a := range e.Command.Argv {
			v, err := expandTemplate(a, value, func(s string) string { return s })
			if err != nil {
				return nil, err
			}
			run.Argv = append(run.Argv, v)
		}
	}
	for _, p := range Placeholders {
		run.Env = append(run.Env, "CBS_"+strings.ToUpper(p.Name)+"="+p.value(s, dir))
	}
	return run, nil
}

// writeBranchFiles writes what a branch needs before its trainer starts: branch.json and, for an
// external trainer, external.json.
func writeBranchFiles(p *Plan, s *branch.Spec) error {
	dir, err := filepath.Abs(BranchDir(p.Out, s.ID))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := branch.WriteSpec(dir, s); err != nil {
		return err
	}
	if p.Config.Run.Executor != ExecutorExternal {
		return nil
	}
	run, err := renderExternal(p.Config.External, s, dir)
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(run, "", "  ")
	return atomicio.WriteFile(filepath.Join(dir, ExternalFile), append(b, '\n'), 0o644)
}

// ErrTrainerFailed is returned when an external trainer exited non-zero or wrote metrics that do
// not hold; state.json says why.
var ErrTrainerFailed = errors.New("trainer failed")

// RunExternalBranch runs the external trainer of the branch in dir (from its external.json),
// then checks its metrics.jsonl and records the outcome in state.json: done; failed with the
// exit status or the first bad metrics line; diverged when a loss is not finite; pending when
// ctx was cancelled (the trainer got SIGTERM) before the trainer had finished its budget and
// exited 0. Output goes to dir/log.txt and to log.
func RunExternalBranch(ctx context.Context, dir string, log io.Writer) error {
	rec, run, err := loadExternalBranch(dir)
	if err != nil {
		return err
	}
	st := runfmt.State{State: runfmt.StateRunning}
	branch.WriteState(dir, st)
	logFile, err := os.OpenFile(filepath.Join(dir, runfmt.LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "%s cbs: running %q in %s\n", time.Now().UTC().Format(time.RFC3339), run.Argv, run.Dir)
	tail := &tailBuffer{max: 4096}
	cmd := exec.Command(run.Argv[0], run.Argv[1:]...)
	cmd.Dir = run.Dir
	cmd.Env = append(os.Environ(), run.Env...)
	cmd.Stdout = logFile
	cmd.Stderr = io.MultiWriter(logFile, tail)
	// The trainer and its children form a process group, so an interrupt reaches all of them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		st = runfmt.State{State: runfmt.StateFailed, Reason: fmt.Sprintf("starting the trainer: %v", err)}
		branch.WriteState(dir, st)
		return fmt.Errorf("%w: %s", ErrTrainerFailed, st.Reason)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case werr = <-waited:
		case <-time.After(time.Minute):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			werr = <-waited
		}
	}
	fmt.Fprintf(logFile, "%s cbs: trainer exited: %v\n", time.Now().UTC().Format(time.RFC3339), exitText(werr))
	last, verr := ValidateMetrics(filepath.Join(dir, runfmt.MetricsFile), rec)
	// A trainer that had written its whole budget and exited cleanly when the signal came is
	// done: marking it pending would run it again on resume.
	if ctx.Err() != nil && (werr != nil || verr != nil) {
		st = runfmt.State{State: runfmt.StatePending, Reason: "interrupted; run again to continue"}
		branch.WriteState(dir, st)
		return ErrInterrupted
	}
	st.Step, st.Tokens = last.Step, last.Tokens
	switch {
	case werr != nil:
		st.State, st.Reason = runfmt.StateFailed, "trainer "+exitText(werr)
		if l := tail.lastLine(); l != "" {
			st.Reason += ": " + l
		}
	case errors.Is(verr, runfmt.ErrNonFinite):
		st.State, st.Reason = runfmt.StateDiverged, verr.Error()
	case verr != nil:
		st.State, st.Reason = runfmt.StateFailed, verr.Error()
	default:
		st.State = runfmt.StateDone
	}
	branch.WriteState(dir, st)
	if st.Reason != "" {
		fmt.Fprintf(log, "%s: %s: %s\n", rec.ID, st.State, st.Reason)
	} else {
		fmt.Fprintf(log, "%s: %s\n", rec.ID, st.State)
	}
	switch st.State {
	case runfmt.StateDone:
		return nil
	case runfmt.StateDiverged:
		return fmt.Errorf("%w: %s", branch.ErrDiverged, st.Reason)
	}
	return fmt.Errorf("%w: %s", ErrTrainerFailed, st.Reason)
}

// loadExternalBranch reads the branch record and external.json of the branch in dir.
func loadExternalBranch(dir string) (runfmt.Branch, *ExternalRun, error) {
	rec, err := runfmt.ReadBranch(dir)
	if err != nil {
		return rec, nil, err
	}
	path := filepath.Join(dir, ExternalFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return rec, nil, err
	}
	var run ExternalRun
	if err := json.Unmarshal(b, &run); err != nil {
		return rec, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(run.Argv) == 0 {
		return rec, nil, fmt.Errorf("%s: argv is empty, want the trainer's command line", path)
	}
	return rec, &run, nil
}

func exitText(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit status 0"
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return fmt.Sprintf("exited with status %d", ee.ExitCode())
	case errors.As(err, &ee):
		return "killed by " + ee.ProcessState.String()
	}
	return err.Error()
}

// tailBuffer keeps the last bytes written to it, for the reason of a failed trainer.
type tailBuffer struct {
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) lastLine() string {
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 200 {
		l = l[:200] + "..."
	}
	return l
}

// ValidateMetrics checks a trainer's metrics.jsonl against the results format (each line as
// runfmt.CheckMetrics does) and the branch: every line a whole JSON object ending in a newline,
// tokens = step x batch_tokens, and the last line at the budget. A line whose tokens do not
// exceed the previous line's is a resume from an earlier checkpoint and supersedes the lines at
// or past it, as the analysis reads it. Errors name the file and line; a NaN or infinite loss
// gives an error wrapping runfmt.ErrNonFinite. The last line that held is returned.
func ValidateMetrics(path string, b runfmt.Branch) (runfmt.Metrics, error) {
	var last runfmt.Metrics
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return last, fmt.Errorf("%s: missing: the trainer must append one JSON line per optimizer step", path)
	}
	if err != nil {
		return last, err
	}
	lines := bytes.Split(data, []byte("\n"))
	truncated := len(data) > 0 && data[len(data)-1] != '\n'
	if !truncated {
		lines = lines[:len(lines)-1]
	}
	type seen struct{ tokens, line int64 }
	var hist []seen
	for i, raw := range lines {
		n := i + 1
		if truncated && i == len(lines)-1 {
			return last, fmt.Errorf("%s line %d: truncated last line (no newline at the end of the file): %s", path, n, snippet(raw))
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		m, err := runfmt.CheckMetrics(raw)
		if err != nil {
			return last, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		if want := int64(m.Step) * b.BatchTokens; m.Tokens != want {
			return last, fmt.Errorf("%s line %d: tokens = %d at step %d, want step x batch_tokens = %d x %d = %d",
				path, n, m.Tokens, m.Step, m.Step, b.BatchTokens, want)
		}
		for len(hist) > 0 && hist[len(hist)-1].tokens >= m.Tokens {
			hist = hist[:len(hist)-1]
		}
		hist = append(hist, seen{m.Tokens, int64(n)})
		last = m
	}
	if len(hist) == 0 {
		return last, fmt.Errorf("%s: no metrics lines: the trainer must append one JSON line per optimizer step", path)
	}
	if last.Tokens != b.BudgetTokens {
		return last, fmt.Errorf("%s line %d: the metrics end at %d tokens (step %d), want the budget, %d tokens (%d steps)",
			path, hist[len(hist)-1].line, last.Tokens, last.Step, b.BudgetTokens, b.Steps)
	}
	return last, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

// external runs the [external] command of every branch not done, run.parallel at a time, on
// this machine.
type external struct {
	p    *Plan
	opts Options
}

func (e *external) backend() (string, bool) {
	return "external: " + e.p.Config.External.Command.String(), true
}

func (e *external) dryRun(_ context.Context, todo []*branch.Spec) error {
	p := e.p
	fmt.Fprintf(e.opts.Stdout, "# run.executor = \"external\": %d of %d branches to run in %s, %d at a time\n", len(todo), len(p.Branches), p.Config.External.Workdir, p.Config.Run.Parallel)
	for _, s := range todo {
		dir, _ := filepath.Abs(BranchDir(p.Out, s.ID))
		run, err := renderExternal(p.Config.External, s, dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.opts.Stdout, "%s: %s\n", s.ID, commandLine(run.Argv))
	}
	return nil
}

func (e *external) run(ctx context.Context, todo []*branch.Spec, out *Outcome) error {
	p := e.p
	// Every branch to run holds its spec and its command line before the first starts.
	for _, s := range todo {
		spec := *s
		spec.Threads = p.Config.Run.Threads // cbs sweep --threads may have changed it
		if err := writeBranchFiles(p, &spec); err != nil {
			return err
		}
	}
	parallel := min(p.Config.Run.Parallel, len(todo))
	fmt.Fprintf(e.opts.Log, "%s: %d of %d branches to run with the external trainer, %d at a time\n", p.Out, len(todo), len(p.Branches), parallel)
	return pool(ctx, parallel, todo, out, func(s *branch.Spec) error {
		return RunExternalBranch(ctx, BranchDir(p.Out, s.ID), e.opts.Log)
	})
}

func (c Command) String() string {
	if c.Argv == nil {
		return c.Shell
	}
	return commandLine(c.Argv)
}

// commandLine writes argv as one shell line.
func commandLine(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}
