package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"cbs/analysis"
	"cbs/analysis/figure"
	"cbs/internal/atomicio"
	"cbs/report"
)

func init() { verbs = append(verbs, newReportCmd) }

type reportOptions struct {
	runDir string
	out    string
	flags  analysisFlags
	opts   analysis.Options
}

func newReportCmd() *cobra.Command {
	o := &reportOptions{}
	cmd := &cobra.Command{
		Use:   "report RUN_DIR",
		Short: "Write a Markdown report of a sweep: plan, estimates and figures",
		Long: `report fits the run (as cbs fit does, writing RUN_DIR/fit/cbs.json), draws its figures as SVG
into a figures/ directory beside the report, and writes one Markdown file (default
RUN_DIR/report.md): the primary estimate (the token-overhead CBS with its interval, the overhead
of every rung, the sensitivity table and the loss slope) first, then the plan of branches, the
secondary estimators and the figures, linked by relative paths so the report reads well where the
directory is published.

The estimator flags are those of cbs fit. An unfinished sweep is refused unless --partial is
given; the report then says in its title, at its top and in every figure that it is partial.

Exit status: 0 ok, 1 error (an unfinished sweep without --partial included), 2 bad usage.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("report takes one RUN_DIR, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.runDir = args[0]
			var err error
			if o.opts, err = o.flags.resolveFor(o.runDir); err != nil {
				return err
			}
			return runReport(o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&o.out, "out", "", "report file (default RUN_DIR/report.md)")
	o.flags.bind(cmd.Flags())
	return cmd
}

func runReport(o *reportOptions, stdout, stderr io.Writer) error {
	run, d, res, err := report.Fit(o.runDir, "", o.opts, o.flags.partial, codeVersion())
	if err != nil {
		return err
	}
	warnPartial(stderr, res)
	warnPrimary(stderr, res)
	out := o.out
	if out == "" {
		out = filepath.Join(o.runDir, "report.md")
	}
	if err := report.WriteJSON(filepath.Join(o.runDir, "fit", "cbs.json"), res); err != nil {
		return err
	}
	figDir := filepath.Join(filepath.Dir(out), "figures")
	paths, skipped, err := report.Figures(run, d, res, figDir, "svg", figure.Full, stderr)
	if err != nil {
		return err
	}
	var b strings.Builder
	report.WriteMarkdown(&b, run, res, paths, skipped, filepath.Dir(out))
	if err := mkdirFor(out); err != nil {
		return err
	}
	if err := atomicio.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(stdout, out)
	return nil
}
