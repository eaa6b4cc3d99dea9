package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"cbs/analysis"
	"cbs/report"
	"cbs/runfmt"
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

// resolveFor is resolve with the sweep's own [analysis] options as the defaults when runDir is
// a sweep; flags given on the command line still win.
func (f *analysisFlags) resolveFor(runDir string) (analysis.Options, error) {
	if base, ok := report.SweepOptions(runDir); ok && runDir != "" {
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
		Args: atMostOneRunDir("fit"),
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
	var err error
	if o.runDir, err = runDirOrTable(args, o.table); err != nil {
		return err
	}
	o.opts, err = o.flags.resolveFor(o.runDir)
	return err
}

// atMostOneRunDir refuses more than one argument to verb, which reads one RUN_DIR or a table.
func atMostOneRunDir(verb string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > 1 {
			return usageErrorf("%s takes one RUN_DIR, got %d arguments", verb, len(args))
		}
		return nil
	}
}

// runDirOrTable is the run directory args name, "" when --table names a table instead; one of
// the two must be given, not both.
func runDirOrTable(args []string, table string) (string, error) {
	switch {
	case len(args) == 1 && table != "":
		return "", usageErrorf("give a run directory or --table, not both")
	case len(args) == 0 && table == "":
		return "", usageErrorf("missing RUN_DIR (or --table FILE.csv)")
	case len(args) == 1:
		return args[0], nil
	}
	return "", nil
}

// warnPartial says on stderr that a fit is partial, where it is seen even when stdout goes to a
// file or a JSON consumer.
func warnPartial(stderr io.Writer, res *analysis.Result) {
	if res.Partial {
		fmt.Fprintf(stderr, "warning: %s: %s\n", res.PartialNote(), strings.Join(analysis.UnfinishedLines(res.Unfinished), "; "))
	}
}

func runFit(o *fitOptions, stdout, stderr io.Writer) error {
	_, _, res, err := report.Fit(o.runDir, o.table, o.opts, o.flags.partial, codeVersion())
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
		if err := report.WriteJSON(out, res); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "cbs fit: wrote %s\n", out)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	report.WriteText(stdout, res)
	return nil
}

// warnPrimary repeats the primary estimate's warning on stderr, where it is seen even when
// stdout goes to a file or a JSON consumer.
func warnPrimary(stderr io.Writer, res *analysis.Result) {
	if p := res.Primary; p != nil && p.Warning != "" {
		fmt.Fprintf(stderr, "warning: %s\n", p.Warning)
	}
}

func mkdirFor(path string) error { return os.MkdirAll(filepath.Dir(path), 0o755) }
