package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/spf13/cobra"

	"cbs/analysis"
	"cbs/analysis/figure"
	"cbs/branch"
	"cbs/internal/atomicio"
	"cbs/runfmt"
	"cbs/sweep"
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
	run, d, res, err := fitDataPartial(o.runDir, "", o.opts, o.flags.partial)
	if err != nil {
		return err
	}
	warnPartial(stderr, res)
	warnPrimary(stderr, res)
	out := o.out
	if out == "" {
		out = filepath.Join(o.runDir, "report.md")
	}
	if err := writeFitJSON(filepath.Join(o.runDir, "fit", "cbs.json"), res); err != nil {
		return err
	}
	figDir := filepath.Join(filepath.Dir(out), "figures")
	paths, skipped, err := drawFigures(run, d, res, figDir, "svg", figure.Full, stderr)
	if err != nil {
		return err
	}
	var b strings.Builder
	writeReport(&b, run, res, paths, skipped, filepath.Dir(out))
	if err := mkdirFor(out); err != nil {
		return err
	}
	if err := atomicio.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(stdout, out)
	return nil
}

// experimentName is the sweep's experiment.name from its resolved config, else the run
// directory's name (a run another tool wrote).
func experimentName(runDir string) string {
	var c struct {
		Experiment branch.Experiment `toml:"experiment"`
	}
	if raw, err := os.ReadFile(filepath.Join(runDir, sweep.ResolvedFile)); err == nil {
		if _, err := toml.Decode(string(raw), &c); err == nil && c.Experiment.Name != "" {
			return c.Experiment.Name
		}
	}
	return filepath.Base(filepath.Clean(runDir))
}

// mdEscape keeps table cells intact: a | would end the cell.
func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

var figureCaptions = map[string]string{
	"overhead_vs_batch":     "Token overhead T_B(L)/T_ref(L) of each batch size at the loss level of the primary estimate, with its interval, the limit 1 + tau and the CBS.",
	"loss_vs_tokens":        "Loss against tokens, one line per branch.",
	"final_loss_vs_batch":   "Loss at equal tokens against batch size (secondary estimators), with replicate ranges, the fitted curve and its band where the knee fit applies, the tolerance rule's interval or bound, and the knee where it falls inside the ladder.",
	"steps_vs_tokens":       "Steps and tokens each batch size needed to reach each target loss, with the fitted hyperbolas (S/S_min - 1)(E/E_min - 1) = 1; each batch size's points lie on the dashed line E = B S labelled with the batch.",
	"bcrit_vs_target":       "B_crit = E_min/S_min of each steps-to-target fit against the target loss; triangles are bounds where the ladder does not bracket B_crit.",
	"noise_scale_vs_tokens": "Simple gradient noise scale against tokens: a predictor that underestimates the CBS of Adam-trained language models, not the CBS. Lines break where a branch had no positive estimate; a batch size without any is named above the plot with the reason.",
}

func writeReport(w io.Writer, run *analysis.Run, res *analysis.Result, figures []string, skipped []figure.Skipped, base string) {
	title := experimentName(run.Dir)
	if res.Partial {
		title += " (partial)"
	}
	fmt.Fprintf(w, "# Critical batch size: %s\n\n", title)
	fmt.Fprintf(w, "Code version `%s`. Losses compared: `%s` at %s tokens. ", res.CodeVersion, res.Metric, runfmt.FormatTokens(float64(res.CompareTokens)))
	if res.Bootstrap.Method == "none" {
		fmt.Fprintf(w, "No bootstrap intervals.\n\n")
	} else {
		fmt.Fprintf(w, "Intervals: %.0f%% percentile bootstrap (%s, %d resamples, seed %d).\n\n", 100*res.Bootstrap.Level, res.Bootstrap.Method, res.Bootstrap.Resamples, res.Bootstrap.Seed)
	}
	if res.Partial {
		fmt.Fprintf(w, "> **Partial:** %s. The sweep was fitted before it finished (`--partial`), so every estimate below describes training cut short:\n>\n", mdEscape(strings.TrimPrefix(res.PartialNote(), "partial: ")))
		for _, u := range res.Unfinished {
			use := "analysed as far as it got"
			if !u.Analysed {
				use = "left out, no metrics yet"
			}
			fmt.Fprintf(w, "> - %s: %s\n", mdEscape(u.Line()), use)
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintf(w, "Token counts are written with binary suffixes, in the text, the tables and the figures alike: Ki = 1024 and Mi = 1024^2 (64Ki = 65536; a rounded count such as 2.26Ki is 2.26 x 1024). K, M and B, powers of ten, appear only where a count is an exact multiple of them, as a config may write it.\n\n")
	writePrimary(w, res)
	fmt.Fprintf(w, "## Plan\n\n")
	fmt.Fprintln(w, "| branch | batch (tokens) | batch (seqs) | micro-batch x accum | steps | budget (tokens) | peak LR | replicate | state |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
	for _, b := range run.Branches {
		s := b.Spec
		var lrs []string
		for g, v := range s.LRPeak {
			lrs = append(lrs, fmt.Sprintf("%s %.3g", g, v))
		}
		sort.Strings(lrs)
		state := b.State.State
		if state == "" {
			state = "unknown"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d x %d | %d | %s | %s | %d | %s |\n", mdEscape(s.ID), runfmt.FormatTokens(float64(s.BatchTokens)), s.BatchSeqs,
			s.MicroBatch, s.Accum, s.Steps, runfmt.FormatTokens(float64(s.BudgetTokens)), mdEscape(strings.Join(lrs, ", ")), s.Replicate, state)
	}
	for _, e := range run.Excluded {
		fmt.Fprintf(w, "\nExcluded: %s\n", mdEscape(e))
	}

	fmt.Fprintf(w, "\n## Secondary estimates\n\n")
	fmt.Fprintf(w, "Secondary: they answer to other definitions of the CBS and are reported for comparison with the primary estimate above.\n\n")
	fmt.Fprintln(w, "| estimator | result |")
	fmt.Fprintln(w, "| --- | --- |")
	if t := res.Tolerance; t != nil {
		fmt.Fprintf(w, "| tolerance rule (%s) | %s |\n", fmtEps(res.Options, t.EpsLoss), mdEscape(t.Statement))
	}
	if k := res.Knee; k != nil {
		fmt.Fprintf(w, "| knee of L(B) = L_inf + A B^-alpha (%s) | %s |\n", fmtEps(res.Options, k.EpsLoss), mdEscape(k.Statement))
	}
	if n := res.NoiseScale; n != nil {
		byBatch := map[float64][]float64{}
		var batches []float64
		for _, r := range n.Branches {
			if _, ok := byBatch[r.Batch]; !ok {
				batches = append(batches, r.Batch)
			}
			if r.End.Valid() {
				byBatch[r.Batch] = append(byBatch[r.Batch], float64(r.End))
			}
		}
		var parts []string
		for _, b := range batches {
			var sum float64
			for _, v := range byBatch[b] {
				sum += v
			}
			if len(byBatch[b]) > 0 {
				parts = append(parts, fmt.Sprintf("%s: %s", runfmt.FormatTokens(b), runfmt.FormatTokens(sum/float64(len(byBatch[b])))))
			} else {
				parts = append(parts, fmt.Sprintf("%s: too noisy", runfmt.FormatTokens(b)))
			}
		}
		seen := map[float64]bool{}
		for _, g := range n.Missing {
			if _, ok := byBatch[g.Batch]; !ok && !seen[g.Batch] {
				seen[g.Batch] = true
				parts = append(parts, fmt.Sprintf("%s: none (%s)", runfmt.FormatTokens(g.Batch), g.Reason))
			}
		}
		fmt.Fprintf(w, "| gradient noise scale B_simple over the last window (by batch; \"too noisy\" where its interval spans more than 10x) | %s. A predictor, not the CBS. |\n", mdEscape(strings.Join(parts, "; ")))
	}
	if h := res.Hyperbola; h != nil && len(h.Targets) > 0 {
		fmt.Fprintf(w, "\nSteps to target, S(B) = S_min (1 + B_crit/B) fitted on log S; overhead batch: where S exceeds linear scaling from B0 = %s by tau = %g.\n\n", runfmt.FormatTokens(h.ReferenceBatch), h.Tau)
		fmt.Fprintln(w, "| target loss | batches | dof | B_crit (tokens) | interval | overhead batch | interval | S_min | E_min (tokens) |")
		fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: |")
		for _, t := range h.Targets {
			if t.Error != "" {
				fmt.Fprintf(w, "| %s | %d | - | %s | | | | | |\n", fmtLoss(t.Target), len(t.Points), mdEscape(t.Error))
				continue
			}
			bc, over := fmtNum(t.Bcrit, runfmt.FormatTokens), fmtNum(t.Overhead, runfmt.FormatTokens)
			switch t.Censored {
			case analysis.CensoredAbove:
				bc, over = "&ge; "+runfmt.FormatTokens(2*t.Points[len(t.Points)-1].Batch), "-"
			case analysis.CensoredBelow:
				bc, over = "&le; "+runfmt.FormatTokens(t.Points[0].Batch/2), "-"
			}
			fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s | %s | %s |\n", fmtLoss(t.Target), len(t.Points), t.DOF, bc, fmtInterval(t.BcritCI), over,
				fmtInterval(t.OverCI), fmtNum(t.SMin, runfmt.FormatSI), fmtNum(t.EMin, runfmt.FormatTokens))
		}
		if tr := h.Trend; tr != nil {
			fmt.Fprintf(w, "\nTrend over targets: B_crit ~ L^(-1/alpha_B) with alpha_B = %.3g (%d targets, %d dof).\n", tr.AlphaB, tr.Targets, tr.DOF)
		}
	}

	fmt.Fprintf(w, "\n## Figures\n\n")
	for _, p := range figures {
		rel, err := filepath.Rel(base, p)
		if err != nil {
			rel = p
		}
		name := strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
		fmt.Fprintf(w, "![%s](%s)\n\n%s\n\n", name, filepath.ToSlash(rel), figureCaptions[name])
	}
	for _, s := range skipped {
		fmt.Fprintf(w, "Not drawn: %s (%s).\n\n", s.Name, mdEscape(s.Reason))
	}
	if len(res.Notes) > 0 {
		fmt.Fprintf(w, "## Notes\n\n")
		for _, n := range res.Notes {
			fmt.Fprintf(w, "- %s\n", mdEscape(n))
		}
	}
}

// writePrimary writes the primary estimate's section: the statement, the interval, the overhead
// of every rung, the replicate warning, the sensitivity table and the loss slope.
func writePrimary(w io.Writer, res *analysis.Result) {
	p := res.Primary
	if p == nil {
		return
	}
	fmt.Fprintf(w, "## Primary estimate\n\n")
	fmt.Fprintf(w, "Token overhead: for each batch B, overhead(B) = T_B(L)/T_ref(L), the tokens B needed to reach loss L over the tokens the reference batch %s needed; "+
		"the CBS is the largest batch whose overhead is at most 1 + tau = %g.\n\n", runfmt.FormatTokens(p.ReferenceBatch), 1+p.Tau)
	fmt.Fprintf(w, "**%s**\n\n", mdEscape(p.Statement))
	if p.Error == "" {
		fmt.Fprintf(w, "%s; %s interval %s%s. Overheads read at loss L = %s; fewest replicates per batch: %d.\n\n",
			primaryValue(p), fmtLevel(p.Level), primaryInterval(p), primaryResamples(p), fmtLoss(p.LossLevel), p.Replicates)
		fmt.Fprintln(w, "| batch (tokens) | replicates | tokens to L | overhead | interval |")
		fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | --- |")
		for _, r := range p.Rungs {
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", runfmt.FormatTokens(r.Batch), r.Replicates, fmtLevelTokens(r.Tokens), fmtRatio(r.Overhead), fmtRatioInterval(r.Lo, r.Hi))
		}
		fmt.Fprintln(w)
	}
	if p.Warning != "" {
		fmt.Fprintf(w, "> **Warning:** %s.\n\n", mdEscape(p.Warning))
	}
	if len(res.Sensitivity) > 0 {
		fmt.Fprintf(w, "### Sensitivity\n\n")
		fmt.Fprintln(w, "How much each answer hangs on its tolerance: the tolerance rule's bracket and the token-overhead CBS with its interval.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| estimator | parameter | CBS (tokens) | bracket or interval | censored | statement |")
		fmt.Fprintln(w, "| --- | --- | ---: | --- | --- | --- |")
		for _, r := range res.Sensitivity {
			fmt.Fprintf(w, "| %s | %s %g | %s | %s | %s | %s |\n", r.Estimator, r.Param, r.Value, fmtNum(r.CBS, runfmt.FormatTokens),
				mdEscape(fmtSensitivityRange(r)), r.Censored, mdEscape(r.Statement))
		}
		fmt.Fprintln(w)
	}
	if s := res.Slope; s != nil {
		fmt.Fprintf(w, "### Loss slope\n\n%s.\n\n", mdEscape(s.Statement))
	}
}
