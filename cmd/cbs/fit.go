package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"cbs/analysis"
	"cbs/branch"
	"cbs/internal/atomicio"
	"cbs/runfmt"
	"cbs/sweep"
)

func init() { verbs = append(verbs, newFitCmd) }

// analysisFlags are the estimator options shared by fit, plot and report. Quantities arrive as
// strings so that "64Ki" works and a bad value is reported with its flag name.
type analysisFlags struct {
	opts      analysis.Options
	targets   string
	refBatch  string
	emaTokens string
	// partial fits a sweep whose branches have not all finished, instead of refusing it.
	partial bool
	fs      *pflag.FlagSet
}

func (f *analysisFlags) bind(fs *pflag.FlagSet) {
	f.fs = fs
	f.opts = analysis.Defaults()
	fs.StringVar(&f.opts.Metric, "metric", f.opts.Metric, "loss to compare: auto, eval_loss or train_loss_ema")
	fs.Float64Var(&f.opts.Eps, "eps", f.opts.Eps, "loss tolerance of the (secondary) tolerance rule and knee, as a fraction of the reference batch's loss (0.01: 1%)")
	fs.Float64Var(&f.opts.EpsAbs, "eps-abs", f.opts.EpsAbs, "absolute loss tolerance in nats, replacing the relative --eps when > 0")
	fs.StringVar(&f.targets, "targets", "", "comma-separated target losses for steps-to-target fits (default: picked from the data)")
	fs.IntVar(&f.opts.NumTargets, "num-targets", f.opts.NumTargets, "number of target losses to pick when --targets is not given")
	fs.Float64Var(&f.opts.Tau, "tau", f.opts.Tau, "token overhead tau of the primary CBS: the largest batch needing at most 1+tau times the reference batch's tokens to reach a loss")
	fs.StringVar(&f.refBatch, "ref-batch", "", "reference batch of the token overhead (and B0 of the steps-to-target overhead batch), in tokens (default: a sweep's branches.reference_batch when it is on the ladder, else the smallest batch)")
	fs.StringVar(&f.emaTokens, "ema-tokens", "", "EMA time constant for train_loss, in tokens (default: 1/20 of the shortest branch)")
	fs.IntVar(&f.opts.Bootstrap, "bootstrap", f.opts.Bootstrap, "bootstrap resamples for the intervals (0: none)")
	fs.Uint64Var(&f.opts.Seed, "seed", f.opts.Seed, "seed of the bootstrap resamples")
	fs.Float64Var(&f.opts.Level, "level", f.opts.Level, "coverage of the bootstrap intervals")
	fs.BoolVar(&f.partial, "partial", false, "fit a sweep whose branches have not all finished, as far as they got; every output is marked partial")
}

// sweepAnalysis reads the [analysis] table a sweep recorded in runDir/resolved.toml, so that
// `cbs fit RUN_DIR` analyses a sweep the way its config asked; ok is false when there is none.
// The reference batch is the sweep's branches.reference_batch, the batch its learning rates were
// tuned at, so that overheads are measured against the run the others were scaled from; when
// that batch is not on the ladder no curve exists to measure against, and the smallest batch is
// used instead.
func sweepAnalysis(runDir string) (analysis.Options, bool) {
	raw, err := os.ReadFile(filepath.Join(runDir, sweep.ResolvedFile))
	if err != nil {
		return analysis.Options{}, false
	}
	var c struct {
		Experiment branch.Experiment `toml:"experiment"`
		Branches   struct {
			BatchSizes     []branch.Tokens `toml:"batch_sizes"`
			ReferenceBatch branch.Tokens   `toml:"reference_batch"`
		} `toml:"branches"`
		Analysis sweep.AnalysisTable `toml:"analysis"`
	}
	c.Analysis = sweep.DefaultAnalysis() // for the keys an older or foreign resolved.toml lacks
	if _, err := toml.Decode(string(raw), &c); err != nil {
		return analysis.Options{}, false
	}
	ref := 0.0
	for _, b := range c.Branches.BatchSizes {
		if b == c.Branches.ReferenceBatch && b > 0 {
			ref = float64(b)
		}
	}
	return c.Analysis.Options(c.Experiment.Seed, ref), true
}

// resolveFor is resolve with the sweep's own [analysis] options as the defaults when runDir is
// a sweep; flags given on the command line still win.
func (f *analysisFlags) resolveFor(runDir string) (analysis.Options, error) {
	if base, ok := sweepAnalysis(runDir); ok && runDir != "" {
		given := f.opts
		f.opts = base
		changed := func(name string) bool { return f.fs != nil && f.fs.Changed(name) }
		if changed("metric") {
			f.opts.Metric = given.Metric
		}
		if changed("eps") {
			// A relative tolerance asked for on the command line is meant to apply, so it
			// also sets aside an absolute one the sweep recorded.
			f.opts.Eps, f.opts.EpsAbs = given.Eps, 0
		}
		if changed("eps-abs") {
			f.opts.EpsAbs = given.EpsAbs
		}
		if changed("num-targets") {
			f.opts.NumTargets = given.NumTargets
		}
		if changed("tau") {
			f.opts.Tau = given.Tau
		}
		if changed("bootstrap") {
			f.opts.Bootstrap = given.Bootstrap
		}
		if changed("seed") {
			f.opts.Seed = given.Seed
		}
		if changed("level") {
			f.opts.Level = given.Level
		}
	}
	return f.resolve()
}

// resolve parses the string flags and validates the options; errors are usage errors.
func (f *analysisFlags) resolve() (analysis.Options, error) {
	o := f.opts
	if f.targets != "" {
		o.Targets = nil
		for _, s := range strings.Split(f.targets, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil {
				return o, usageErrorf("--targets: %q is not a number (allowed: a comma-separated list of losses, e.g. 3.2,3.1)", s)
			}
			o.Targets = append(o.Targets, v)
		}
	}
	if f.refBatch != "" {
		v, err := runfmt.ParseTokens(f.refBatch)
		if err != nil {
			return o, usageErrorf("--ref-batch: %v", err)
		}
		o.ReferenceBatch = float64(v)
	}
	if f.emaTokens != "" {
		v, err := runfmt.ParseTokens(f.emaTokens)
		if err != nil {
			return o, usageErrorf("--ema-tokens: %v", err)
		}
		o.EMATokens = float64(v)
	}
	if err := o.Validate(); err != nil {
		return o, usageErrorf("%v", err)
	}
	return o, nil
}

type fitOptions struct {
	runDir string
	table  string
	out    string
	json   bool
	flags  analysisFlags
	opts   analysis.Options
}

func newFitCmd() *cobra.Command {
	o := &fitOptions{}
	cmd := &cobra.Command{
		Use:   "fit RUN_DIR | fit --table FILE.csv",
		Short: "Estimate the critical batch size from a sweep",
		Long: `fit applies the estimators of docs/science.md to a run directory. The primary estimate is
the token overhead: for each batch B, overhead(B) = T_B(L)/T_ref(L), the tokens B needed to reach a
loss L over the tokens the reference batch needed, and the CBS is the largest batch whose overhead
stays within 1 + tau (--tau). It comes with a bootstrap interval, the overhead of every rung, the
loss change per doubling of the batch, and a sensitivity table (the CBS at tau 0.1, 0.2, 0.5 and
the tolerance rule at eps 0.005, 0.01, 0.02). The secondary estimators follow: the tolerance rule,
steps-to-target hyperbolas over several target losses, the knee of a saturating power law, and
the gradient noise scale. Each comes with its inputs, an interval and a censoring flag; a ladder
that does not bracket the answer gives a bound ("CBS >= 8Mi tokens").

For a run directory the result is written to RUN_DIR/fit/cbs.json (or --out) and a table is
printed. --table reads a CSV file from any trainer instead, with a header naming one of:

  batch_size,steps                  steps one batch size needed to reach one target loss (rows
                                    with the same batch_size are replicates)
  batch_size,tokens,loss            loss curves: loss after a branch consumed that many tokens
  batch_size,replicate,tokens,loss  loss curves with seed replicates; replicate is any label,
                                    and every replicate of a batch size logs the same tokens

batch_size and tokens are in tokens (65536, 64Ki, 4M); steps and loss are positive numbers.
Lines starting with # are comments. The reference batch is the smallest unless --ref-batch names
another (for a run directory: the sweep's branches.reference_batch when it is on the ladder).
With --table nothing is written unless --out is given.

A sweep whose branches have not all finished is refused, naming them: finish it first (cbs sweep
resumes it), or give --partial to fit what the branches logged so far; the result then says
"partial" in the table, in the JSON ("partial": true and the unfinished branches) and on stderr.

Exit status: 0 ok, 1 error (unreadable or malformed data, an unfinished sweep without --partial),
2 bad usage.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("fit takes one RUN_DIR, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.resolve(args); err != nil {
				return err
			}
			return runFit(o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.table, "table", "", "fit a CSV table instead of a run directory")
	fs.StringVar(&o.out, "out", "", "where to write the JSON result (default RUN_DIR/fit/cbs.json)")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON instead of a table")
	o.flags.bind(fs)
	return cmd
}

func (o *fitOptions) resolve(args []string) error {
	switch {
	case len(args) == 1 && o.table != "":
		return usageErrorf("give a run directory or --table, not both")
	case len(args) == 0 && o.table == "":
		return usageErrorf("missing RUN_DIR (or --table FILE.csv)")
	case len(args) == 1:
		o.runDir = args[0]
	}
	var err error
	o.opts, err = o.flags.resolveFor(o.runDir)
	return err
}

// fitData loads a run directory or table and runs the estimators; a sweep with unfinished
// branches is refused.
func fitData(runDir, table string, opts analysis.Options) (*analysis.Run, *analysis.Data, *analysis.Result, error) {
	return fitDataPartial(runDir, table, opts, false)
}

// fitDataPartial is fitData that, with partial set, fits an unfinished sweep as far as its
// branches got, and marks the result partial.
func fitDataPartial(runDir, table string, opts analysis.Options, partial bool) (*analysis.Run, *analysis.Data, *analysis.Result, error) {
	if table != "" {
		d, err := analysis.ReadTableFile(table)
		if err != nil {
			return nil, nil, nil, err
		}
		res, err := analysis.Analyze(d, opts, codeVersion())
		return nil, d, res, err
	}
	run, err := analysis.LoadRun(runDir)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(run.Unfinished) > 0 && (!partial || len(run.Branches) == 0) {
		return nil, nil, nil, unfinishedError(run)
	}
	d, res, err := analysis.FitRun(run, opts, codeVersion())
	return run, d, res, err
}

// unfinishedError refuses to fit a sweep some of whose branches have not finished. Their curves
// stop short, so the comparison mark, the loss level and every estimate would quietly describe
// an earlier point of training than the sweep was planned for.
func unfinishedError(run *analysis.Run) error {
	var b strings.Builder
	if len(run.Branches) == 0 {
		fmt.Fprintf(&b, "%s: no branch has metrics yet; %d of %d branches unfinished:\n", run.Dir, len(run.Unfinished), run.Total)
	} else {
		verb := "are"
		if len(run.Unfinished) == 1 {
			verb = "is"
		}
		fmt.Fprintf(&b, "%s: the sweep is unfinished; %d of %d branches %s not done:\n", run.Dir, len(run.Unfinished), run.Total, verb)
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, u := range run.Unfinished {
		state := u.State
		if u.Reason != "" {
			state += " (" + u.Reason + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", u.ID, state, u.Progress())
	}
	tw.Flush()
	fmt.Fprintf(&b, "finish the sweep first: cbs sweep --config FILE resumes it (cbs status %s shows how far it got)", run.Dir)
	if len(run.Branches) > 0 {
		b.WriteString(", or fit what is there with --partial")
	}
	return errors.New(b.String())
}

// warnPartial says on stderr that a fit is partial, where it is seen even when stdout goes to a
// file or a JSON consumer.
func warnPartial(stderr io.Writer, res *analysis.Result) {
	if res.Partial {
		fmt.Fprintf(stderr, "warning: %s: %s\n", res.PartialNote(), strings.Join(analysis.UnfinishedLines(res.Unfinished), "; "))
	}
}

func runFit(o *fitOptions, stdout, stderr io.Writer) error {
	_, _, res, err := fitDataPartial(o.runDir, o.table, o.opts, o.flags.partial)
	if err != nil {
		return err
	}
	warnPartial(stderr, res)
	warnPrimary(stderr, res)
	out := o.out
	if out == "" && o.runDir != "" {
		out = filepath.Join(o.runDir, "fit", "cbs.json")
	}
	if out != "" {
		if err := writeFitJSON(out, res); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "cbs fit: wrote %s\n", out)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printFit(stdout, res)
	return nil
}

// warnPrimary repeats the primary estimate's warning on stderr, where it is seen even when
// stdout goes to a file or a JSON consumer.
func warnPrimary(stderr io.Writer, res *analysis.Result) {
	if p := res.Primary; p != nil && p.Warning != "" {
		fmt.Fprintf(stderr, "warning: %s\n", p.Warning)
	}
}

func writeFitJSON(path string, res *analysis.Result) error {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := mkdirFor(path); err != nil {
		return err
	}
	return atomicio.WriteFile(path, append(data, '\n'), 0o644)
}

// printFit writes the result as aligned plain-text tables: the primary estimate, the loss slope
// and the sensitivity table first, then the secondary estimators.
func printFit(w io.Writer, res *analysis.Result) {
	fmt.Fprintf(w, "source: %s\n", res.Source)
	if res.Partial {
		fmt.Fprintf(w, "%s; every estimate below describes training cut short:\n", res.PartialNote())
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, u := range res.Unfinished {
			use := "analysed as far as it got"
			if !u.Analysed {
				use = "left out: no metrics yet"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", u.ID, u.State, u.Progress(), use)
		}
		tw.Flush()
	}
	if res.Metric != "" {
		fmt.Fprintf(w, "metric: %s, compared at %s tokens\n", res.Metric, fmtNum(res.CompareTokens, runfmt.FormatTokens))
	}
	b := res.Bootstrap
	if b.Method == "none" {
		fmt.Fprintf(w, "intervals: none\n")
	} else {
		fmt.Fprintf(w, "intervals: %.0f%%, %s bootstrap, %d resamples, seed %d\n", 100*b.Level, b.Method, b.Resamples, b.Seed)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if p := res.Primary; p != nil {
		fmt.Fprintf(w, "\nprimary estimate: token overhead T_B(L)/T_ref(L), tau %g, reference batch %s\n", p.Tau, runfmt.FormatTokens(p.ReferenceBatch))
		fmt.Fprintf(w, "  %s\n", p.Statement)
		if p.Error == "" {
			fmt.Fprintf(w, "  %s; %s interval %s%s\n", primaryValue(p), fmtLevel(p.Level), primaryInterval(p), primaryResamples(p))
			fmt.Fprintf(w, "  overheads read at loss L = %s; fewest replicates per batch %d\n", fmtLoss(p.LossLevel), p.Replicates)
			fmt.Fprintln(tw, "batch\treplicates\ttokens to level\toverhead\tinterval")
			for _, r := range p.Rungs {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", runfmt.FormatTokens(r.Batch), r.Replicates, fmtLevelTokens(r.Tokens), fmtRatio(r.Overhead), fmtRatioInterval(r.Lo, r.Hi))
			}
			tw.Flush()
		}
		if p.Warning != "" {
			fmt.Fprintf(w, "warning: %s\n", p.Warning)
		}
	}
	if s := res.Slope; s != nil {
		fmt.Fprintf(w, "\nloss slope: %s\n", s.Statement)
	}
	if len(res.Sensitivity) > 0 {
		fmt.Fprintln(w, "\nsensitivity (tolerance rule: bracket; token overhead: CBS and interval):")
		fmt.Fprintln(tw, "estimator\tparameter\tCBS\tbracket or interval\tcensored")
		for _, r := range res.Sensitivity {
			if strings.HasPrefix(r.Statement, "not estimated") {
				fmt.Fprintf(tw, "%s\t%s %g\t%s\n", r.Estimator, r.Param, r.Value, r.Statement)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s %g\t%s\t%s\t%s\n", r.Estimator, r.Param, r.Value, fmtNum(r.CBS, runfmt.FormatTokens),
				fmtSensitivityRange(r), r.Censored)
		}
		tw.Flush()
	}
	if res.Primary != nil || res.Slope != nil || len(res.Sensitivity) > 0 {
		fmt.Fprintln(w, "\nsecondary estimators:")
	}
	if res.Metric != "" {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "batch\treplicates\tloss\tsd")
		for _, r := range res.Ladder {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", runfmt.FormatTokens(r.Batch), r.Replicates, fmtLoss(r.Loss), fmtNum(r.LossSD, func(v float64) string { return strconv.FormatFloat(v, 'g', 2, 64) }))
		}
		tw.Flush()
	}
	if t := res.Tolerance; t != nil {
		fmt.Fprintf(w, "\ntolerance rule (%s): %s\n", fmtEps(res.Options, t.EpsLoss), t.Statement)
	}
	if h := res.Hyperbola; h != nil && len(h.Targets) > 0 {
		fmt.Fprintf(w, "\nsteps to target, S(B) = S_min (1 + B_crit/B) on log S (tau %g, B0 %s):\n", h.Tau, runfmt.FormatTokens(h.ReferenceBatch))
		fmt.Fprintln(tw, "target\tpoints\tdof\tB_crit\tinterval\toverhead batch\tinterval\tS_min\tE_min")
		for _, t := range h.Targets {
			if t.Error != "" {
				fmt.Fprintf(tw, "%s\t%d\t-\t%s\n", fmtLoss(t.Target), len(t.Points), t.Error)
				continue
			}
			bc, over := fmtNum(t.Bcrit, runfmt.FormatTokens), fmtNum(t.Overhead, runfmt.FormatTokens)
			switch t.Censored {
			case analysis.CensoredAbove:
				bc, over = ">= "+runfmt.FormatTokens(2*t.Points[len(t.Points)-1].Batch), "-"
			case analysis.CensoredBelow:
				bc, over = "<= "+runfmt.FormatTokens(t.Points[0].Batch/2), "-"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", fmtLoss(t.Target), len(t.Points), t.DOF, bc, fmtInterval(t.BcritCI),
				over, fmtInterval(t.OverCI), fmtNum(t.SMin, runfmt.FormatSI), fmtNum(t.EMin, runfmt.FormatTokens))
		}
		tw.Flush()
		if tr := h.Trend; tr != nil {
			fmt.Fprintf(w, "trend B_crit ~ L^(-1/alpha_B): alpha_B = %.3g (%d targets, %d dof; Kaplan et al. report 0.21)\n", tr.AlphaB, tr.Targets, tr.DOF)
		}
	}
	if k := res.Knee; k != nil {
		fmt.Fprintf(w, "\nknee of L(B) = L_inf + A B^-alpha (%s): %s\n", fmtEps(res.Options, k.EpsLoss), k.Statement)
		if k.Error == "" {
			fmt.Fprintf(w, "  L_inf = %s, alpha = %s %s\n", fmtLoss(k.Linf), fmtLoss(k.Alpha), fmtIntervalPlain(k.AlphaCI))
		}
	}
	if n := res.NoiseScale; n != nil {
		fmt.Fprintf(w, "\ngradient noise scale B_simple at the end of each branch (%s):\n", n.Note)
		fmt.Fprintln(tw, "branch\tbatch\tB_simple (EMA)\tB_simple (window)\tinterval\t|G|^2 <= 0")
		for _, r := range n.Branches {
			window := fmtNum(r.End, runfmt.FormatTokens)
			if r.TooNoisy {
				window = "too noisy"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t[%s, %s]\t%s\n", r.ID, runfmt.FormatTokens(r.Batch), fmtNum(r.Final, runfmt.FormatTokens), window,
				fmtNum(r.EndLo, runfmt.FormatTokens), fmtNum(r.EndHi, runfmt.FormatTokens), fmtNum(r.NonPositive, func(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }))
		}
		for _, g := range n.Missing {
			fmt.Fprintf(tw, "%s\t%s\tnone: %s\n", g.ID, runfmt.FormatTokens(g.Batch), g.Reason)
		}
		tw.Flush()
	}
	if len(res.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range res.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
}

// fmtEps names the tolerance the tolerance rule and the knee applied: relative to the reference
// loss unless an absolute one was set, with the loss difference it came to.
func fmtEps(o analysis.Options, epsLoss analysis.Num) string {
	if o.EpsAbs > 0 {
		return fmt.Sprintf("eps_abs %g", o.EpsAbs)
	}
	if !epsLoss.Valid() {
		return fmt.Sprintf("eps %g", o.Eps)
	}
	return fmt.Sprintf("eps %g = %.3g in loss", o.Eps, float64(epsLoss))
}

func fmtLevel(level float64) string { return strconv.FormatFloat(100*level, 'f', -1, 64) + "%" }

// primaryValue is the CBS, or the bound a censored one is reported as.
func primaryValue(p *analysis.PrimaryFit) string {
	switch p.Censored {
	case analysis.CensoredAbove:
		return "CBS >= " + fmtNum(p.Bound, runfmt.FormatTokens) + " tokens (censored above)"
	case analysis.CensoredBelow:
		return "CBS < " + fmtNum(p.Bound, runfmt.FormatTokens) + " tokens (censored below)"
	}
	return "CBS " + fmtNum(p.CBS, runfmt.FormatTokens) + " tokens"
}

// primaryInterval writes the CBS interval; an end past the ladder (resamples censored on that
// side) is written as such rather than as a number.
func primaryInterval(p *analysis.PrimaryFit) string {
	lo, hi := p.Interval[0], p.Interval[1]
	if !lo.Valid() && !hi.Valid() && !math.IsInf(float64(lo), 0) && !math.IsInf(float64(hi), 0) {
		if p.Resampled == 0 && p.FailedResample == 0 {
			return "none"
		}
		return fmt.Sprintf("none (%d of %d resamples failed)", p.FailedResample, p.Resampled+p.FailedResample)
	}
	return "[" + fmtCBSEnd(lo) + ", " + fmtCBSEnd(hi) + "]"
}

// primaryResamples says how the resamples behind the interval came out.
func primaryResamples(p *analysis.PrimaryFit) string {
	if p.Resampled == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d resamples, %d failed; censored above in %.0f%%, below in %.0f%%)",
		p.Resampled, p.FailedResample, 100*p.CensoredAbove, 100*p.CensoredBelow)
}

func fmtCBSEnd(n analysis.Num) string {
	switch {
	case math.IsInf(float64(n), -1):
		return "below the ladder"
	case math.IsInf(float64(n), 1):
		return "above the ladder"
	}
	return fmtNum(n, runfmt.FormatTokens)
}

// fmtLevelTokens writes a rung's tokens to the loss level: NaN is a curve that starts below the
// level, +Inf one that never reaches it.
func fmtLevelTokens(n analysis.Num) string {
	switch {
	case math.IsNaN(float64(n)):
		return "before the first mark"
	case math.IsInf(float64(n), 1):
		return "not reached"
	}
	return runfmt.FormatTokens(float64(n))
}

func fmtRatio(n analysis.Num) string {
	return fmtNum(n, func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) })
}

func fmtRatioInterval(lo, hi analysis.Num) string {
	if math.IsNaN(float64(lo)) && math.IsNaN(float64(hi)) {
		return "-"
	}
	return "[" + fmtRatio(lo) + ", " + fmtRatio(hi) + "]"
}

// fmtSensitivityRange is the tolerance rule's bracket or the token-overhead interval.
func fmtSensitivityRange(r analysis.SensitivityRow) string {
	if math.IsNaN(float64(r.Lower)) && math.IsNaN(float64(r.Upper)) {
		return "-"
	}
	if r.Estimator == "tolerance" {
		switch r.Censored {
		case analysis.CensoredAbove:
			return ">= " + fmtNum(r.Lower, runfmt.FormatTokens)
		case analysis.CensoredBelow:
			return "< " + fmtNum(r.Upper, runfmt.FormatTokens)
		}
		return "[" + fmtNum(r.Lower, runfmt.FormatTokens) + ", " + fmtNum(r.Upper, runfmt.FormatTokens) + ")"
	}
	return "[" + fmtCBSEnd(r.Lower) + ", " + fmtCBSEnd(r.Upper) + "]"
}

func fmtNum(n analysis.Num, f func(float64) string) string {
	if math.IsInf(float64(n), 1) {
		return "inf"
	}
	if !n.Valid() {
		return "-"
	}
	return f(float64(n))
}

func fmtLoss(n analysis.Num) string {
	return fmtNum(n, func(v float64) string { return strconv.FormatFloat(v, 'g', 5, 64) })
}

func fmtInterval(iv analysis.Interval) string {
	if iv.Used == 0 {
		return "-"
	}
	if !iv.Lo.Valid() && !iv.Hi.Valid() {
		return fmt.Sprintf("(%d of %d resamples failed)", iv.Failed, iv.Used+iv.Failed)
	}
	return "[" + fmtNum(iv.Lo, runfmt.FormatTokens) + ", " + fmtNum(iv.Hi, runfmt.FormatTokens) + "]"
}

func fmtIntervalPlain(iv analysis.Interval) string {
	if iv.Used == 0 || !iv.Lo.Valid() {
		return ""
	}
	return fmt.Sprintf("[%.3g, %.3g]", float64(iv.Lo), float64(iv.Hi))
}

func mkdirFor(path string) error { return os.MkdirAll(filepath.Dir(path), 0o755) }
