package main

import (
	"encoding/json"
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
	fs        *pflag.FlagSet
}

func (f *analysisFlags) bind(fs *pflag.FlagSet) {
	f.fs = fs
	f.opts = analysis.Defaults()
	fs.StringVar(&f.opts.Metric, "metric", f.opts.Metric, "loss to compare: auto, eval_loss or train_loss_ema")
	fs.Float64Var(&f.opts.Eps, "eps", f.opts.Eps, "loss tolerance of the tolerance rule and the knee (nats)")
	fs.StringVar(&f.targets, "targets", "", "comma-separated target losses for steps-to-target fits (default: picked from the data)")
	fs.IntVar(&f.opts.NumTargets, "num-targets", f.opts.NumTargets, "number of target losses to pick when --targets is not given")
	fs.Float64Var(&f.opts.Tau, "tau", f.opts.Tau, "overhead fraction of the overhead definition of the critical batch")
	fs.StringVar(&f.refBatch, "ref-batch", "", "reference batch B0 of the overhead definition, in tokens (default: the smallest batch)")
	fs.StringVar(&f.emaTokens, "ema-tokens", "", "EMA time constant for train_loss, in tokens (default: 1/20 of the shortest branch)")
	fs.IntVar(&f.opts.Bootstrap, "bootstrap", f.opts.Bootstrap, "bootstrap resamples for the intervals (0: none)")
	fs.Uint64Var(&f.opts.Seed, "seed", f.opts.Seed, "seed of the bootstrap resamples")
	fs.Float64Var(&f.opts.Level, "level", f.opts.Level, "coverage of the bootstrap intervals")
}

// sweepAnalysis reads the [analysis] table a sweep recorded in runDir/resolved.toml, so that
// `cbs fit RUN_DIR` analyses a sweep the way its config asked; ok is false when there is none.
func sweepAnalysis(runDir string) (analysis.Options, bool) {
	raw, err := os.ReadFile(filepath.Join(runDir, sweep.ResolvedFile))
	if err != nil {
		return analysis.Options{}, false
	}
	var c struct {
		Experiment branch.Experiment   `toml:"experiment"`
		Analysis   sweep.AnalysisTable `toml:"analysis"`
	}
	if _, err := toml.Decode(string(raw), &c); err != nil {
		return analysis.Options{}, false
	}
	return c.Analysis.Options(c.Experiment.Seed, 0), true
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
			f.opts.Eps = given.Eps
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
		v, err := analysis.ParseTokens(f.refBatch)
		if err != nil {
			return o, usageErrorf("--ref-batch: %v", err)
		}
		o.ReferenceBatch = v
	}
	if f.emaTokens != "" {
		v, err := analysis.ParseTokens(f.emaTokens)
		if err != nil {
			return o, usageErrorf("--ema-tokens: %v", err)
		}
		o.EMATokens = v
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
		Long: `fit applies the estimators of SCIENCE.md section 4 to a run directory: the tolerance rule,
steps-to-target hyperbolas over several target losses, the knee of a saturating power law, and the
gradient noise scale. Each comes with its inputs, a bootstrap interval, its degrees of freedom and
a censoring flag; a ladder that does not bracket the answer gives a bound ("CBS >= 8Mi tokens").

For a run directory the result is written to RUN_DIR/fit/cbs.json (or --out) and a table is
printed. --table reads a CSV file from any trainer instead, with a header naming one of:

  batch_size,steps          steps one batch size needed to reach one target loss (rows with the
                            same batch_size are replicates)
  batch_size,tokens,loss    loss curves: loss after a branch consumed that many tokens

batch_size and tokens are in tokens (65536, 64Ki, 4M); steps and loss are positive numbers.
Lines starting with # are comments. With --table nothing is written unless --out is given.

Exit status: 0 ok, 1 error (unreadable or malformed data), 2 bad usage.`,
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

// fitData loads a run directory or table and runs the estimators.
func fitData(runDir, table string, opts analysis.Options) (*analysis.Run, *analysis.Data, *analysis.Result, error) {
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
	d, res, err := analysis.FitRun(run, opts, codeVersion())
	return run, d, res, err
}

func runFit(o *fitOptions, stdout, stderr io.Writer) error {
	_, _, res, err := fitData(o.runDir, o.table, o.opts)
	if err != nil {
		return err
	}
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

// printFit writes the result as aligned plain-text tables.
func printFit(w io.Writer, res *analysis.Result) {
	fmt.Fprintf(w, "source: %s\n", res.Source)
	if res.Metric != "" {
		fmt.Fprintf(w, "metric: %s, compared at %s tokens\n", res.Metric, fmtNum(res.CompareTokens, analysis.FormatTokens))
	}
	b := res.Bootstrap
	if b.Method == "none" {
		fmt.Fprintf(w, "intervals: none\n")
	} else {
		fmt.Fprintf(w, "intervals: %.0f%%, %s bootstrap, %d resamples, seed %d\n", 100*b.Level, b.Method, b.Resamples, b.Seed)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if res.Metric != "" {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "batch\treplicates\tloss\tsd")
		for _, r := range res.Ladder {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", analysis.FormatTokens(r.Batch), r.Replicates, fmtLoss(r.Loss), fmtNum(r.LossSD, func(v float64) string { return strconv.FormatFloat(v, 'g', 2, 64) }))
		}
		tw.Flush()
	}
	if t := res.Tolerance; t != nil {
		fmt.Fprintf(w, "\ntolerance rule (eps %g): %s\n", t.Eps, t.Statement)
	}
	if h := res.Hyperbola; h != nil && len(h.Targets) > 0 {
		fmt.Fprintf(w, "\nsteps to target, S(B) = S_min (1 + B_crit/B) on log S (tau %g, B0 %s):\n", h.Tau, analysis.FormatTokens(h.ReferenceBatch))
		fmt.Fprintln(tw, "target\tpoints\tdof\tB_crit\tinterval\toverhead batch\tinterval\tS_min\tE_min")
		for _, t := range h.Targets {
			if t.Error != "" {
				fmt.Fprintf(tw, "%s\t%d\t-\t%s\n", fmtLoss(t.Target), len(t.Points), t.Error)
				continue
			}
			bc, over := fmtNum(t.Bcrit, analysis.FormatSI), fmtNum(t.Overhead, analysis.FormatSI)
			switch t.Censored {
			case analysis.CensoredAbove:
				bc, over = ">= "+analysis.FormatTokens(2*t.Points[len(t.Points)-1].Batch), "-"
			case analysis.CensoredBelow:
				bc, over = "<= "+analysis.FormatTokens(t.Points[0].Batch/2), "-"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", fmtLoss(t.Target), len(t.Points), t.DOF, bc, fmtInterval(t.BcritCI),
				over, fmtInterval(t.OverCI), fmtNum(t.SMin, analysis.FormatSI), fmtNum(t.EMin, analysis.FormatSI))
		}
		tw.Flush()
		if tr := h.Trend; tr != nil {
			fmt.Fprintf(w, "trend B_crit ~ L^(-1/alpha_B): alpha_B = %.3g (%d targets, %d dof; Kaplan et al. report 0.21)\n", tr.AlphaB, tr.Targets, tr.DOF)
		}
	}
	if k := res.Knee; k != nil {
		fmt.Fprintf(w, "\nknee of L(B) = L_inf + A B^-alpha (eps %g): %s\n", k.Eps, k.Statement)
		if k.Error == "" {
			fmt.Fprintf(w, "  L_inf = %s, alpha = %s %s\n", fmtLoss(k.Linf), fmtLoss(k.Alpha), fmtIntervalPlain(k.AlphaCI))
		}
	}
	if n := res.NoiseScale; n != nil {
		fmt.Fprintf(w, "\ngradient noise scale B_simple at the end of each branch (%s):\n", n.Note)
		fmt.Fprintln(tw, "branch\tbatch\tB_simple")
		for _, r := range n.Branches {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.ID, analysis.FormatTokens(r.Batch), fmtNum(r.Final, analysis.FormatSI))
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
	return "[" + fmtNum(iv.Lo, analysis.FormatSI) + ", " + fmtNum(iv.Hi, analysis.FormatSI) + "]"
}

func fmtIntervalPlain(iv analysis.Interval) string {
	if iv.Used == 0 || !iv.Lo.Valid() {
		return ""
	}
	return fmt.Sprintf("[%.3g, %.3g]", float64(iv.Lo), float64(iv.Hi))
}

func mkdirFor(path string) error { return os.MkdirAll(filepath.Dir(path), 0o755) }
