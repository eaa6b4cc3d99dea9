package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"gonum.org/v1/plot/vg"

	"cbs/analysis"
	"cbs/analysis/figure"
	"cbs/report"
)

func init() { verbs = append(verbs, newPlotCmd) }

type plotOptions struct {
	runDir string
	table  string
	out    string
	format string
	width  string
	flags  analysisFlags
	opts   analysis.Options
	widthL vg.Length
}

func newPlotCmd() *cobra.Command {
	o := &plotOptions{}
	cmd := &cobra.Command{
		Use:   "plot RUN_DIR | plot --table FILE.csv --out DIR",
		Short: "Draw the figures of a sweep",
		Long: `plot draws every figure the data support: the token overhead against batch size with the limit
1 + tau and the CBS (overhead_vs_batch, the primary estimate), loss against tokens, final loss
against batch size with the fitted curve and the CBS, steps against tokens to reach each target
loss with the fitted hyperbolas, B_crit against target loss, and the gradient noise scale against
tokens. Beside each figure it writes <file>.json with the inputs, the fit options and the code
version. A figure the data cannot support is skipped with the reason on stderr, never drawn empty.

The estimator flags are those of cbs fit. Paths of the written figures go to stdout. An
unfinished sweep is refused unless --partial is given; every figure then carries a note saying
how many branches are unfinished.

Exit status: 0 ok, 1 error (an unfinished sweep without --partial included), 2 bad usage.`,
		Args: atMostOneRunDir("plot"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.resolve(args); err != nil {
				return err
			}
			return runPlot(o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.table, "table", "", "plot a CSV table (see cbs fit --help) instead of a run directory")
	fs.StringVar(&o.out, "out", "", "directory for the figures (default RUN_DIR/figures)")
	fs.StringVar(&o.format, "format", "svg", "file format: svg, png or pdf")
	fs.StringVar(&o.width, "width", "column", "figure width: column (3.25 in), full (6.75 in) or inches")
	o.flags.bind(fs)
	return cmd
}

func (o *plotOptions) resolve(args []string) error {
	var err error
	if o.runDir, err = runDirOrTable(args, o.table); err != nil {
		return err
	}
	if o.out == "" {
		if o.runDir == "" {
			return usageErrorf("--table needs --out DIR for the figures")
		}
		o.out = filepath.Join(o.runDir, "figures")
	}
	o.format = strings.ToLower(o.format)
	ok := false
	for _, f := range figure.Formats {
		ok = ok || f == o.format
	}
	if !ok {
		return usageErrorf("--format %q: allowed %s", o.format, strings.Join(figure.Formats, ", "))
	}
	if o.widthL, err = parseFigureWidth(o.width); err != nil {
		return err
	}
	o.opts, err = o.flags.resolveFor(o.runDir)
	return err
}

func parseFigureWidth(s string) (vg.Length, error) {
	switch s {
	case "column":
		return figure.Column, nil
	case "full":
		return figure.Full, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= 1 && v <= 20) {
		return 0, usageErrorf("--width %q: allowed column, full or a width in inches from 1 to 20", s)
	}
	return vg.Length(v) * vg.Inch, nil
}

func runPlot(o *plotOptions, stdout, stderr io.Writer) error {
	run, d, res, err := report.Fit(o.runDir, o.table, o.opts, o.flags.partial, codeVersion())
	if err != nil {
		return err
	}
	warnPartial(stderr, res)
	paths, _, err := report.Figures(run, d, res, o.out, o.format, o.widthL, stderr)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("no figure could be drawn from %s", res.Source)
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	return nil
}
