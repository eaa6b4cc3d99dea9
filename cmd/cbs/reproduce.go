package main

import (
	"bytes"
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

	"github.com/spf13/cobra"

	"cbs/analysis"
	"cbs/analysis/figure"
	"cbs/branch"
	"cbs/compute/blas"
	"cbs/internal/atomicio"
	"cbs/model"
	"cbs/runfmt"
	"cbs/sweep"
)

func init() { verbs = append(verbs, newReproduceCmd) }

// study is experiments/<name>/experiment.toml: the stages of a reproducible study.
type study struct {
	Name  string `toml:"name"`
	Title string `toml:"title"`
	// Runs names the directory under runs/ the stages write to (default: the study's name);
	// studies that share stages share it, so a shared stage runs once.
	Runs   string  `toml:"runs"`
	Stages []stage `toml:"stage"`
}

// stage is one step: a train run or a sweep, optionally starting from an earlier stage's
// checkpoint.
type stage struct {
	Name   string `toml:"name"`
	Kind   string `toml:"kind"` // train, sweep, compare or trajectory
	Config string `toml:"config"`
	Parent string `toml:"parent"` // name of an earlier train stage
	// Sweeps and Labels: the earlier sweep stages a compare stage draws on one figure (the
	// first is the denominator of the CBS ratios), or a trajectory stage draws against the
	// tokens each had trained when it branched (sweeps with the same label form one arm).
	Sweeps []string `toml:"sweeps"`
	Labels []string `toml:"labels"`
}

type reproduceOptions struct {
	name        string
	experiments string
	runs        string
	results     string
	scale       float64
	threads     int
	device      string
	refit       bool
}

func newReproduceCmd() *cobra.Command {
	o := &reproduceOptions{}
	cmd := &cobra.Command{
		Use:   "reproduce NAME",
		Short: "Run a study under experiments/ and regenerate its figures and fit tables under results/",
		Long: `Run the stages of experiments/NAME/experiment.toml in order (training runs and sweeps, each
starting from the previous stage's checkpoint where it says so), then fit, plot and report every
sweep into results/NAME/. Stages whose outputs are complete are skipped and interrupted ones
resume, so running the command again continues where it stopped.

--scale multiplies every token quantity (budgets, batch ladders, warmups, eval intervals) by a
power of two, for a quick look (0.25) or a bigger machine (4); scaled runs go to
runs/NAME-xSCALE and results/NAME-xSCALE.

Exit status: 0 ok, 1 error, 2 bad config, 3 some branches failed, 130 interrupted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return runReproduce(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.Float64Var(&o.scale, "scale", 1, "multiply token budgets and batch ladders by this power of two")
	f.StringVar(&o.experiments, "experiments", "experiments", "directory of studies")
	f.StringVar(&o.runs, "runs", "runs", "directory for run outputs")
	f.StringVar(&o.results, "results", "results", "directory for figures, fit tables and reports")
	f.IntVar(&o.threads, "threads", -1, "CPU threads (default: each config's run.threads, else all cores)")
	f.StringVar(&o.device, "device", "", "auto, cpu, cuda or cuda:N for every stage (default: each config's run.device); never changes what is compared")
	f.BoolVar(&o.refit, "refit", false, "train nothing: fit, plot and report every sweep again from the run records kept under results/")
	return cmd
}

func loadStudy(dir string) (*study, error) {
	path := filepath.Join(dir, "experiment.toml")
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			entries, _ := os.ReadDir(filepath.Dir(dir))
			var names []string
			for _, e := range entries {
				if _, err := os.Stat(filepath.Join(filepath.Dir(dir), e.Name(), "experiment.toml")); err == nil {
					names = append(names, e.Name())
				}
			}
			return nil, usageErrorf("reproduce: no study %q (%s not found); studies: %s", filepath.Base(dir), path, strings.Join(names, ", "))
		}
		return nil, err
	}
	var s study
	if err := branch.DecodeStrict(path, string(raw), &s, "study file"); err != nil {
		return nil, &codedError{code: exitUsage, err: err}
	}
	seen := map[string]string{}
	for i, st := range s.Stages {
		switch {
		case st.Name == "":
			return nil, usageErrorf("%s: stage[%d].name is required", path, i)
		case st.Kind != "train" && st.Kind != "sweep" && st.Kind != "compare" && st.Kind != "trajectory":
			return nil, usageErrorf("%s: stage[%d].kind = %q, want train, sweep, compare or trajectory", path, i, st.Kind)
		case st.Kind == "compare" || st.Kind == "trajectory":
			if len(st.Sweeps) < 2 || len(st.Labels) != len(st.Sweeps) {
				return nil, usageErrorf("%s: stage[%d]: a %s stage needs two or more sweeps and one label each", path, i, st.Kind)
			}
			for _, name := range st.Sweeps {
				if seen[name] != "sweep" {
					return nil, usageErrorf("%s: stage[%d].sweeps: %q is not an earlier sweep stage", path, i, name)
				}
			}
		case st.Config == "":
			return nil, usageErrorf("%s: stage[%d].config is required", path, i)
		case st.Parent != "" && seen[st.Parent] != "train":
			return nil, usageErrorf("%s: stage[%d].parent = %q, want the name of an earlier train stage", path, i, st.Parent)
		}
		seen[st.Name] = st.Kind
	}
	if len(s.Stages) == 0 {
		return nil, usageErrorf("%s: no [[stage]] tables", path)
	}
	return &s, nil
}

// stageRecord is the provenance of one stage.
type stageRecord struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Config string `json:"config"`
	Out    string `json:"out"`
	// TrainS is the training wall time recorded in the stage's runs (perf.jsonl), summed over
	// branches: what the stage cost when it ran, even when this invocation skipped it.
	TrainS   float64 `json:"train_s"`
	Results  string  `json:"results,omitempty"`
	Fingerpr string  `json:"config_fingerprint,omitempty"`
	// BranchTokens is, for a sweep, the training tokens of its parent at the branch point.
	BranchTokens analysis.Num `json:"branch_tokens,omitempty"`
}

type provenance struct {
	Study string  `json:"study"`
	Scale float64 `json:"scale"`
	// Refit is set when the sweeps were fitted again from their kept run records, with no
	// training; the stages' train_s are then those recorded when they ran.
	Refit       bool          `json:"refit,omitempty"`
	CodeVersion string        `json:"code_version"`
	Machine     sweep.Machine `json:"machine"`
	Go          string        `json:"go"`
	BLAS        string        `json:"blas"`
	Stages      []stageRecord `json:"stages"`
}

func runReproduce(ctx context.Context, o *reproduceOptions, stdout, stderr io.Writer) error {
	if e := math.Log2(o.scale); !(o.scale > 0) || e != math.Trunc(e) {
		return usageErrorf("reproduce: --scale = %g, want a power of two (0.25, 0.5, 1, 2, ...)", o.scale)
	}
	dir := filepath.Join(o.experiments, o.name)
	s, err := loadStudy(dir)
	if err != nil {
		return err
	}
	suffix := ""
	if o.scale != 1 {
		suffix = fmt.Sprintf("-x%g", o.scale)
	}
	runName := s.Runs
	if runName == "" {
		runName = o.name
	}
	runRoot := filepath.Join(o.runs, runName+suffix)
	resRoot := filepath.Join(o.results, o.name+suffix)
	if !o.refit {
		warnSlowPath(stderr)
	}
	ctx, stop := interruptible(ctx)
	defer stop()

	host, _ := os.Hostname()
	_, info := blas.Default()
	prov := provenance{Study: o.name, Scale: o.scale, CodeVersion: codeVersion(), Go: runtime.Version(), BLAS: info.String(),
		Machine: sweep.Machine{Hostname: host, CPU: blas.CPUInfo(), Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH}}
	prov.Refit = o.refit
	var previous provenance
	if o.refit {
		b, err := os.ReadFile(filepath.Join(resRoot, "provenance.json"))
		if err == nil {
			err = json.Unmarshal(b, &previous)
		}
		if err != nil {
			return fmt.Errorf("reproduce --refit: %w (the study's results must have been made by reproduce first)", err)
		}
	}
	outs := map[string]string{}
	results := map[string]*analysis.Result{}
	branchTokens := map[string]float64{} // sweep stage -> tokens its parent had trained
	var summaries []string
	for _, st := range s.Stages {
		cfg := filepath.Join(dir, st.Config)
		out := filepath.Join(runRoot, st.Name)
		ov := branch.Overrides{Out: out, Scale: o.scale, Device: o.device}
		if st.Parent != "" {
			ov.Parent = filepath.Join(outs[st.Parent], branch.CkptDir)
		}
		rec := stageRecord{Name: st.Name, Kind: st.Kind, Config: cfg, Out: out}
		fmt.Fprintf(stderr, "== %s: stage %s (%s %s)\n", o.name, st.Name, st.Kind, cfg)
		switch st.Kind {
		case "train":
			if o.refit {
				break
			}
			if err := reproduceTrain(ctx, cfg, ov, o.threads, stderr); err != nil {
				return err
			}
		case "sweep":
			res := filepath.Join(resRoot, st.Name)
			summary, fp, fit, err := reproduceSweep(ctx, cfg, ov, o.threads, res, o.refit, stdout, stderr)
			if err != nil {
				return err
			}
			rec.Results, rec.Fingerpr = res, fp
			results[st.Name] = fit
			rec.BranchTokens = analysis.Num(math.NaN())
			if st.Parent != "" && !o.refit {
				rec.BranchTokens = analysis.Num(trainedTokens(outs[st.Parent]))
			} else if o.refit {
				rec.BranchTokens = previous.branchTokens(st.Name)
			}
			branchTokens[st.Name] = float64(rec.BranchTokens)
			summaries = append(summaries, summary)
		case "compare", "trajectory":
			rec.Config, rec.Out, rec.Results = "", "", filepath.Join(resRoot, st.Name)
			summary, err := reproduceComparison(st, results, branchTokens, rec.Results)
			if err != nil {
				return err
			}
			summaries = append(summaries, summary)
		}
		switch {
		case o.refit && st.Kind == "sweep":
			rec.TrainS = recordedWall(filepath.Join(resRoot, st.Name, "run"))
		case o.refit && st.Kind == "train":
			rec.TrainS = previous.trainS(st.Name)
		case st.Kind == "train" || st.Kind == "sweep":
			rec.TrainS = recordedWall(out)
		}
		outs[st.Name] = out
		prov.Stages = append(prov.Stages, rec)
	}
	if err := mkdirFor(filepath.Join(resRoot, "x")); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(prov, "", "  ")
	if err := atomicio.WriteFile(filepath.Join(resRoot, "provenance.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(stdout, strings.Join(summaries, "\n"))
	return nil
}

func reproduceTrain(ctx context.Context, cfg string, ov branch.Overrides, threads int, stderr io.Writer) error {
	spec, out, err := branch.LoadTrainConfigWith(cfg, ov)
	if err != nil {
		return &codedError{code: exitUsage, err: err}
	}
	var st runfmt.State
	if b, err := os.ReadFile(filepath.Join(out, runfmt.StateFile)); err == nil && json.Unmarshal(b, &st) == nil && st.State == runfmt.StateDone {
		if prev, err := branch.LoadSpec(out); err == nil && prev.Fingerprint() == spec.Fingerprint() {
			fmt.Fprintf(stderr, "%s: done already, skipped\n", out)
			return nil
		}
	}
	if threads >= 0 {
		spec.Threads = threads
	}
	last := time.Time{}
	err = branch.Run(ctx, spec, branch.Options{Dir: out, Log: stderr, Progress: func(p branch.Progress) {
		if time.Since(last) >= 10*time.Second || p.Step == p.Steps {
			last = time.Now()
			fmt.Fprintf(stderr, "%s: step %d/%d, %s tokens, loss %.4f, %.0f tok/s\n", p.ID, p.Step, p.Steps, branch.Tokens(p.Tokens).Human(), p.TrainLoss, p.TokensPerS)
		}
	}})
	switch {
	case errors.Is(err, branch.ErrInterrupted):
		return &codedError{code: exitInterrupted, err: fmt.Errorf("interrupted: run the same command to continue")}
	case errors.Is(err, branch.ErrDiverged):
		return &codedError{code: exitSomeFailed, err: err}
	}
	return err
}

// recordedWall sums the final wall_s of every perf.jsonl under dir: a train run has one, a
// sweep one per branch.
func recordedWall(dir string) float64 {
	var total float64
	filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Name() != runfmt.PerfFile {
			return nil
		}
		var last float64
		eachLine(path, func(b []byte) {
			var p runfmt.Perf
			if json.Unmarshal(b, &p) == nil {
				last = p.WallS
			}
		})
		total += last
		return nil
	})
	return total
}

// keepRunRecords copies what a sweep's numbers can be re-derived from into the results: the
// config as given and resolved, the manifest, and each branch's spec, state and metrics
// (checkpoints stay in runs/). `cbs fit` and `cbs plot` work on the copy.
func keepRunRecords(runDir, dst string) error {
	// The records name checkpoints and caches by absolute path; kept under results/, they name
	// them relative to the directory the study ran from, which is the repository's root.
	var root []byte
	if wd, err := os.Getwd(); err == nil {
		root = []byte(wd + string(filepath.Separator))
	}
	copyFile := func(rel string) error {
		b, err := os.ReadFile(filepath.Join(runDir, rel))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(root) > 1 {
			b = bytes.ReplaceAll(b, root, nil)
		}
		if err := mkdirFor(filepath.Join(dst, rel)); err != nil {
			return err
		}
		return atomicio.WriteFile(filepath.Join(dst, rel), b, 0o644)
	}
	for _, f := range []string{sweep.SweepFile, sweep.ResolvedFile, runfmt.ManifestFile} {
		if err := copyFile(f); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(filepath.Join(runDir, runfmt.BranchesDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		for _, f := range []string{runfmt.SpecFile, runfmt.StateFile, runfmt.MetricsFile, runfmt.PerfFile, runfmt.SegmentsFile} {
			if err := copyFile(filepath.Join(runfmt.BranchesDir, e.Name(), f)); err != nil {
				return err
			}
		}
	}
	return nil
}

// stage returns the record of the named stage, or nil.
func (p *provenance) stage(name string) *stageRecord {
	for i := range p.Stages {
		if p.Stages[i].Name == name {
			return &p.Stages[i]
		}
	}
	return nil
}

func (p *provenance) branchTokens(name string) analysis.Num {
	if r := p.stage(name); r != nil {
		return r.BranchTokens
	}
	return analysis.Num(math.NaN())
}

func (p *provenance) trainS(name string) float64 {
	if r := p.stage(name); r != nil {
		return r.TrainS
	}
	return 0
}

// reproduceComparison draws a compare or trajectory stage from earlier sweeps' fits into dir and
// returns its summary: the figure, and for a compare stage compare.json with the CBS ratios.
func reproduceComparison(st stage, results map[string]*analysis.Result, branchTokens map[string]float64, dir string) (string, error) {
	var f *figure.Figure
	var table string
	var cmp *comparison
	var err error
	switch st.Kind {
	case "compare":
		var in []figure.CompareInput
		for i, name := range st.Sweeps {
			in = append(in, figure.CompareInput{Label: st.Labels[i], Result: results[name]})
		}
		if f, err = figure.Compare(in, figure.Full); err != nil {
			return "", err
		}
		var c comparison
		table, c = compareTable(in)
		cmp = &c
	default:
		var in []figure.TrajectoryInput
		arm := map[string]int{}
		for i, name := range st.Sweeps {
			k, ok := arm[st.Labels[i]]
			if !ok {
				k = len(in)
				arm[st.Labels[i]] = k
				in = append(in, figure.TrajectoryInput{Label: st.Labels[i]})
			}
			in[k].Points = append(in[k].Points, figure.TrajectoryPoint{Tokens: branchTokens[name], Result: results[name]})
		}
		if f, err = figure.Trajectory(in, figure.Full); err != nil {
			return "", err
		}
		table = trajectoryTable(in)
	}
	paths, err := saveStageFigure(f, dir)
	if err != nil {
		return "", err
	}
	if cmp != nil {
		if err := writeJSONFile(filepath.Join(dir, "compare.json"), cmp); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("== %s\n%s\nfigures:\n  %s", st.Name, table, strings.Join(paths, "\n  ")), nil
}

// comparison is a compare stage's compare.json: each sweep's primary estimate and its CBS over
// the first sweep's, with a bootstrap interval.
type comparison struct {
	Reference string          `json:"reference"`
	Sweeps    []comparedSweep `json:"sweeps"`
}

type comparedSweep struct {
	Label   string               `json:"label"`
	Primary *analysis.PrimaryFit `json:"primary"`
	Ratio   *analysis.RatioFit   `json:"ratio_to_reference,omitempty"`
}

// compareTable is each compared sweep's token-overhead CBS and its ratio to the first sweep's,
// one line each, and the same as JSON.
func compareTable(in []figure.CompareInput) (string, comparison) {
	var b strings.Builder
	cmp := comparison{Reference: in[0].Label}
	for i, c := range in {
		p := c.Result.Primary
		cs := comparedSweep{Label: c.Label, Primary: p}
		switch {
		case p == nil:
			fmt.Fprintf(&b, "%-12s no token-overhead CBS\n", c.Label)
		default:
			fmt.Fprintf(&b, "%-12s %s\n", c.Label, p.Statement)
		}
		if i > 0 {
			r := analysis.CBSRatio(p, in[0].Result.Primary, c.Result.Options.Level)
			cs.Ratio = &r
			fmt.Fprintf(&b, "%-12s CBS %s / %s: %s\n", "", c.Label, in[0].Label, r.Statement)
		}
		cmp.Sweeps = append(cmp.Sweeps, cs)
	}
	return strings.TrimRight(b.String(), "\n"), cmp
}

// trajectoryTable is each arm's CBS at each branch point, one line each.
func trajectoryTable(in []figure.TrajectoryInput) string {
	var b strings.Builder
	for _, arm := range in {
		for _, pt := range arm.Points {
			st := "no token-overhead CBS"
			if p := pt.Result.Primary; p != nil {
				st = p.Statement
			}
			fmt.Fprintf(&b, "%-12s at %s tokens: %s\n", arm.Label, runfmt.FormatTokens(pt.Tokens), st)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// trainedTokens is how many training tokens a train stage's checkpoint lineage has read: its data
// cursor (sequences from the start of the stream) times its sequence length; NaN when the run
// directory does not say.
func trainedTokens(runDir string) float64 {
	st, err := model.LoadTrainerState(filepath.Join(runDir, branch.CkptDir))
	if err != nil || st == nil {
		return math.NaN()
	}
	spec, err := branch.LoadSpec(runDir)
	if err != nil {
		return math.NaN()
	}
	return float64(st.DataCursor) * float64(spec.SeqLen())
}

// saveStageFigure writes a comparison-stage figure as SVG and PNG into dir.
func saveStageFigure(f *figure.Figure, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, format := range []string{"svg", "png"} {
		path, err := f.Save(dir, format, nil)
		if err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicio.WriteFile(path, append(b, '\n'), 0o644)
}

func reproduceSweep(ctx context.Context, cfg string, ov branch.Overrides, threads int, resDir string, refit bool, stdout, stderr io.Writer) (summary, fingerprint string, fit *analysis.Result, err error) {
	if refit {
		return analyseSweep(filepath.Join(resDir, "run"), resDir, "", nil, stderr)
	}
	plan, err := sweep.LoadWith(cfg, ov)
	if err != nil {
		var ce *branch.ConfigError
		if errors.As(err, &ce) {
			return "", "", nil, &codedError{code: exitUsage, err: err}
		}
		return "", "", nil, err
	}
	if threads >= 0 {
		plan.Config.Run.Threads = threads
	}
	outcome, err := sweep.Execute(ctx, plan, sweep.Options{Log: stderr, Terminal: isTerminal(stderr), CodeVersion: codeVersion()})
	switch {
	case errors.Is(err, sweep.ErrInterrupted):
		return "", "", nil, &codedError{code: exitInterrupted, err: fmt.Errorf("interrupted: run the same command to continue")}
	case errors.Is(err, sweep.ErrChangedConfig):
		return "", "", nil, &codedError{code: exitUsage, err: err}
	case err != nil:
		return "", "", nil, err
	}
	if outcome.AnyFailed() {
		return "", "", nil, &codedError{code: exitSomeFailed, err: fmt.Errorf("some branches did not finish:\n  %s", strings.Join(outcome.Failed, "\n  "))}
	}
	fingerprint, _ = plan.Fingerprint()
	// The fit records where its data came from; kept under results/, that is a path from the
	// directory the study ran from, not one of this machine.
	runDir := fromWorkingDir(plan.Out)
	return analyseSweep(runDir, resDir, fingerprint, func() error { return keepRunRecords(runDir, filepath.Join(resDir, "run")) }, stderr)
}

// fromWorkingDir names path relative to the working directory when it lies below it.
func fromWorkingDir(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if rel, err := filepath.Rel(wd, path); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return rel
	}
	return path
}

// analyseSweep fits, plots and reports the sweep in runDir (its run directory, or the run
// records kept under results) into resDir with the [analysis] options the sweep recorded, then
// calls keep, when given, to keep the run records.
func analyseSweep(runDir, resDir, fingerprint string, keep func() error, stderr io.Writer) (summary, fp string, fit *analysis.Result, err error) {
	opts, ok := sweepAnalysis(runDir)
	if !ok {
		return "", "", nil, fmt.Errorf("%s holds no sweep (no readable %s): run the study without --refit", runDir, sweep.ResolvedFile)
	}
	run, d, res, err := fitData(runDir, "", opts)
	if err != nil {
		return "", "", nil, fmt.Errorf("fit %s: %w", runDir, err)
	}
	paths := []string{filepath.Join(resDir, "cbs.json")}
	if keep != nil {
		paths = append(paths, filepath.Join(runDir, "fit", "cbs.json"))
	}
	for _, path := range paths {
		if err := writeFitJSON(path, res); err != nil {
			return "", "", nil, err
		}
	}
	figDir := filepath.Join(resDir, "figures")
	paths, skipped, err := drawFigures(run, d, res, figDir, "svg", figure.Full, stderr)
	if err != nil {
		return "", "", nil, err
	}
	pngs, _, err := drawFigures(run, d, res, figDir, "png", figure.Full, io.Discard)
	if err != nil {
		return "", "", nil, err
	}
	var rep strings.Builder
	writeReport(&rep, run, res, paths, skipped, resDir)
	reportPath := filepath.Join(resDir, "report.md")
	if err := atomicio.WriteFile(reportPath, []byte(rep.String()), 0o644); err != nil {
		return "", "", nil, err
	}
	if keep != nil {
		if err := keep(); err != nil {
			return "", "", nil, err
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "== %s\n", runDir)
	printFit(&sb, res)
	fmt.Fprintf(&sb, "\nreport:  %s\nfit:     %s\nfigures:\n", reportPath, filepath.Join(resDir, "cbs.json"))
	for i := range paths {
		fmt.Fprintf(&sb, "  %s\n", paths[i])
		if i < len(pngs) {
			fmt.Fprintf(&sb, "  %s\n", pngs[i])
		}
	}
	return sb.String(), fingerprint, res, nil
}
