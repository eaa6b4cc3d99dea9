package study

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"cbs/analysis"
	"cbs/branch"
	"cbs/compute/blas"
	"cbs/compute/cpu"
	"cbs/internal/atomicio"
	"cbs/runfmt"
	"cbs/sweep"
)

// Options say where a study runs and how.
type Options struct {
	// Name is the study as asked for: it names the results directory and the provenance.
	Name string
	// Runs and Results are the directories the stages' runs and the study's results go under.
	Runs, Results string
	// Scale multiplies every token quantity of the stages' configs; a power of two. Scaled
	// runs and results go to NAME-xSCALE.
	Scale float64
	// Threads, when >= 0, replaces every config's run.threads.
	Threads int
	// Device, when set, replaces every config's run.device.
	Device string
	// Refit trains nothing: it fits, plots and reports every sweep again from the run records
	// kept under the results.
	Refit bool
	// CodeVersion is recorded in the provenance, the sweeps' manifests and the fits.
	CodeVersion string
	// Log receives the progress of every stage; Terminal says it is a terminal, where a sweep
	// redraws its progress in place.
	Log      io.Writer
	Terminal bool
}

// CheckScale refuses a scale that is not a power of two.
func CheckScale(scale float64) error {
	if e := math.Log2(scale); !(scale > 0) || e != math.Trunc(e) {
		return usageErrorf("reproduce: --scale = %g, want a power of two (0.25, 0.5, 1, 2, ...)", scale)
	}
	return nil
}

// runner is one run of a study: its options and what its stages have produced so far.
type runner struct {
	s                *Study
	o                Options
	runRoot, resRoot string
	// previous is the provenance of the run a refit fits again.
	previous     provenance
	outs         map[string]string           // stage -> run directory
	results      map[string]*analysis.Result // sweep stage -> fit
	branchTokens map[string]float64          // sweep stage -> tokens its parent had trained
	summaries    []string
}

// Run runs the study's stages in order into o.Runs and o.Results, writes the provenance, and
// returns the summary of every sweep and comparison: the estimates and the paths written.
func (s *Study) Run(ctx context.Context, o Options) (summary string, err error) {
	if err := CheckScale(o.Scale); err != nil {
		return "", err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	suffix := ""
	if o.Scale != 1 {
		suffix = fmt.Sprintf("-x%g", o.Scale)
	}
	runName := s.Runs
	if runName == "" {
		runName = o.Name
	}
	r := &runner{s: s, o: o, runRoot: filepath.Join(o.Runs, runName+suffix), resRoot: filepath.Join(o.Results, o.Name+suffix),
		outs: map[string]string{}, results: map[string]*analysis.Result{}, branchTokens: map[string]float64{}}
	host, _ := os.Hostname()
	// The CPU backend's description names the libraries of its fp32 (and bf16) products.
	prov := provenance{Study: o.Name, Scale: o.Scale, CodeVersion: o.CodeVersion, Go: runtime.Version(), BLAS: cpu.New(1).Name(),
		Machine: sweep.Machine{Hostname: host, CPU: blas.CPUInfo(), Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH}}
	prov.Refit = o.Refit
	if o.Refit {
		b, err := os.ReadFile(filepath.Join(r.resRoot, "provenance.json"))
		if err == nil {
			err = json.Unmarshal(b, &r.previous)
		}
		if err != nil {
			return "", fmt.Errorf("reproduce --refit: %w (the study's results must have been made by reproduce first)", err)
		}
	}
	for _, st := range s.Stages {
		rec, err := r.stage(ctx, st)
		if err != nil {
			return "", err
		}
		prov.Stages = append(prov.Stages, rec)
	}
	if err := mkdirFor(filepath.Join(r.resRoot, "x")); err != nil {
		return "", err
	}
	b, _ := json.MarshalIndent(prov, "", "  ")
	if err := atomicio.WriteFile(filepath.Join(r.resRoot, "provenance.json"), append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	return strings.Join(r.summaries, "\n"), nil
}

// stage runs one stage and returns its record.
func (r *runner) stage(ctx context.Context, st Stage) (stageRecord, error) {
	cfg := filepath.Join(r.s.Dir, st.Config)
	out := filepath.Join(r.runRoot, st.Name)
	ov := branch.Overrides{Out: out, Scale: r.o.Scale, Device: r.o.Device}
	if st.Parent != "" {
		ov.Parent = filepath.Join(r.outs[st.Parent], branch.CkptDir)
	}
	rec := stageRecord{Name: st.Name, Kind: st.Kind, Config: cfg, Out: out}
	fmt.Fprintf(r.o.Log, "== %s: stage %s (%s %s)\n", r.o.Name, st.Name, st.Kind, cfg)
	switch st.Kind {
	case KindTrain:
		if r.o.Refit {
			break
		}
		if err := r.train(ctx, cfg, ov); err != nil {
			return rec, err
		}
	case KindSweep:
		if err := r.sweepStage(ctx, st, cfg, ov, &rec); err != nil {
			return rec, err
		}
	case KindCompare, KindTrajectory:
		rec.Config, rec.Out, rec.Results = "", "", filepath.Join(r.resRoot, st.Name)
		summary, err := compareStage(st, r.results, r.branchTokens, rec.Results)
		if err != nil {
			return rec, err
		}
		r.summaries = append(r.summaries, summary)
	case KindSpread:
		rec.Config, rec.Out, rec.Results = "", "", filepath.Join(r.resRoot, st.Name)
		summary, err := spreadStage(st, r.outs, r.o.Refit, rec.Results)
		if err != nil {
			return rec, err
		}
		r.summaries = append(r.summaries, summary)
	}
	switch {
	case r.o.Refit && st.Kind == KindSweep:
		rec.TrainS = recordedWall(filepath.Join(r.resRoot, st.Name, "run"))
	case r.o.Refit && st.Kind == KindTrain:
		rec.TrainS = r.previous.trainS(st.Name)
	case st.Kind == KindTrain || st.Kind == KindSweep:
		rec.TrainS = recordedWall(out)
	}
	r.outs[st.Name] = out
	return rec, nil
}

// sweepStage runs (or, for a refit, fits again) a sweep stage and records its results, its
// config's fingerprint and the tokens its parent had trained.
func (r *runner) sweepStage(ctx context.Context, st Stage, cfg string, ov branch.Overrides, rec *stageRecord) error {
	res := filepath.Join(r.resRoot, st.Name)
	summary, fp, fit, err := r.sweep(ctx, cfg, ov, res)
	if err != nil {
		return err
	}
	rec.Results, rec.Fingerpr = res, fp
	r.results[st.Name] = fit
	rec.BranchTokens = analysis.Num(math.NaN())
	if st.Parent != "" && !r.o.Refit {
		rec.BranchTokens = analysis.Num(trainedTokens(r.outs[st.Parent]))
	} else if r.o.Refit {
		rec.BranchTokens = r.previous.branchTokens(st.Name)
	}
	r.branchTokens[st.Name] = float64(rec.BranchTokens)
	r.summaries = append(r.summaries, summary)
	return nil
}

// train runs a train stage, or skips it when its run directory holds the same run, finished.
func (r *runner) train(ctx context.Context, cfg string, ov branch.Overrides) error {
	spec, out, err := branch.LoadTrainConfigWith(cfg, ov)
	if err != nil {
		return &kindError{kind: ErrUsage, err: err}
	}
	var st runfmt.State
	if b, err := os.ReadFile(filepath.Join(out, runfmt.StateFile)); err == nil && json.Unmarshal(b, &st) == nil && st.State == runfmt.StateDone {
		if prev, err := branch.LoadSpec(out); err == nil && prev.Fingerprint() == spec.Fingerprint() {
			fmt.Fprintf(r.o.Log, "%s: done already, skipped\n", out)
			return nil
		}
	}
	if r.o.Threads >= 0 {
		spec.Threads = r.o.Threads
	}
	log := r.o.Log
	last := time.Time{}
	err = branch.Run(ctx, spec, branch.Options{Dir: out, Log: log, Progress: func(p branch.Progress) {
		if time.Since(last) >= 10*time.Second || p.Step == p.Steps {
			last = time.Now()
			fmt.Fprintf(log, "%s: step %d/%d, %s tokens, loss %.4f, %.0f tok/s\n", p.ID, p.Step, p.Steps, branch.Tokens(p.Tokens).Human(), p.TrainLoss, p.TokensPerS)
		}
	}})
	switch {
	case errors.Is(err, branch.ErrInterrupted):
		return errInterrupted()
	case errors.Is(err, branch.ErrDiverged):
		return &kindError{kind: ErrFailed, err: err}
	}
	return err
}

func errInterrupted() error {
	return &kindError{kind: ErrInterrupted, err: fmt.Errorf("interrupted: run the same command to continue")}
}

// sweep runs a sweep stage, or for a refit takes its kept run records, and analyses it into
// resDir.
func (r *runner) sweep(ctx context.Context, cfg string, ov branch.Overrides, resDir string) (summary, fingerprint string, fit *analysis.Result, err error) {
	if r.o.Refit {
		return r.analyse(filepath.Join(resDir, "run"), resDir, "", nil)
	}
	plan, err := sweep.LoadWith(cfg, ov)
	if err != nil {
		var ce *branch.ConfigError
		if errors.As(err, &ce) {
			return "", "", nil, &kindError{kind: ErrUsage, err: err}
		}
		return "", "", nil, err
	}
	if r.o.Threads >= 0 {
		plan.Config.Run.Threads = r.o.Threads
	}
	outcome, err := sweep.Execute(ctx, plan, sweep.Options{Log: r.o.Log, Terminal: r.o.Terminal, CodeVersion: r.o.CodeVersion})
	switch {
	case errors.Is(err, sweep.ErrInterrupted):
		return "", "", nil, errInterrupted()
	case errors.Is(err, sweep.ErrChangedConfig):
		return "", "", nil, &kindError{kind: ErrUsage, err: err}
	case err != nil:
		return "", "", nil, err
	}
	if outcome.AnyFailed() {
		return "", "", nil, &kindError{kind: ErrFailed, err: fmt.Errorf("some branches did not finish:\n  %s", strings.Join(outcome.Failed, "\n  "))}
	}
	fingerprint, _ = plan.Fingerprint()
	// The fit records where its data came from; kept under results/, that is a path from the
	// directory the study ran from, not one of this machine.
	runDir := fromWorkingDir(plan.Out)
	return r.analyse(runDir, resDir, fingerprint, func() error { return keepRunRecords(runDir, filepath.Join(resDir, "run")) })
}
