package report

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"cbs/analysis"
	"cbs/analysis/figure"
	"cbs/branch"
	"cbs/runfmt"
	"cbs/sweep"
)

// WriteMarkdown writes the Markdown report of a fitted sweep: the primary estimate first, then
// the plan of branches, the secondary estimators and the figures. figures are the paths of the
// figures drawn, linked relative to base, the directory the report is written to; skipped are
// those the data could not support.
func WriteMarkdown(w io.Writer, run *analysis.Run, res *analysis.Result, figures []string, skipped []figure.Skipped, base string) {
	mdHeader(w, run, res)
	fmt.Fprintf(w, "Token counts are written with binary suffixes, in the text, the tables and the figures alike: Ki = 1024 and Mi = 1024^2 (64Ki = 65536; a rounded count such as 2.26Ki is 2.26 x 1024). K, M and B, powers of ten, appear only where a count is an exact multiple of them, as a config may write it.\n\n")
	writePrimary(w, res)
	mdPlan(w, run)
	mdSecondary(w, res)
	mdFigures(w, res, figures, skipped, base)
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

// figureCaptions is the caption under each figure, by name.
var figureCaptions = map[string]string{
	"overhead_vs_batch":     "Token overhead T_B(L)/T_ref(L) of each batch size at the loss level of the primary estimate, with its interval, the limit 1 + tau and the CBS.",
	"loss_vs_tokens":        "Loss against tokens, one line per branch.",
	"final_loss_vs_batch":   "Loss at equal tokens against batch size (secondary estimators), with replicate ranges, the fitted curve and its band where the knee fit applies, the tolerance rule's interval or bound, and the knee where it falls inside the ladder.",
	"steps_vs_tokens":       "Steps and tokens each batch size needed to reach each target loss, with the fitted hyperbolas (S/S_min - 1)(E/E_min - 1) = 1; each batch size's points lie on the dashed line E = B S labelled with the batch.",
	"bcrit_vs_target":       "B_crit = E_min/S_min of each steps-to-target fit against the target loss; triangles are bounds where the ladder does not bracket B_crit.",
	"noise_scale_vs_tokens": "Simple gradient noise scale against tokens: a predictor that underestimates the CBS of Adam-trained language models, not the CBS. Lines break where a branch had no positive estimate; a batch size without any is named above the plot with the reason.",
}

// mdHeader writes the title, the code version, the losses compared, the intervals and, for a
// partial fit, how far each unfinished branch got.
func mdHeader(w io.Writer, run *analysis.Run, res *analysis.Result) {
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
}

// mdPlan writes the plan of branches and the branches left out.
func mdPlan(w io.Writer, run *analysis.Run) {
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
}

// mdSecondary writes the secondary estimators: the tolerance rule, the knee, the gradient noise
// scale and the steps-to-target fits.
func mdSecondary(w io.Writer, res *analysis.Result) {
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
		mdNoiseScale(w, n)
	}
	if h := res.Hyperbola; h != nil && len(h.Targets) > 0 {
		mdHyperbola(w, h)
	}
}

// mdNoiseScale writes the gradient noise scale over the last window, averaged by batch size.
func mdNoiseScale(w io.Writer, n *analysis.NoiseScaleFit) {
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

// mdHyperbola writes the steps-to-target fits, one row per target loss, and their trend.
func mdHyperbola(w io.Writer, h *analysis.HyperbolaFit) {
	fmt.Fprintf(w, "\nSteps to target, S(B) = S_min (1 + B_crit/B) fitted on log S; overhead batch: where S exceeds linear scaling from B0 = %s by tau = %g.\n\n", runfmt.FormatTokens(h.ReferenceBatch), h.Tau)
	fmt.Fprintln(w, "| target loss | batches | dof | B_crit (tokens) | interval | overhead batch | interval | S_min | E_min (tokens) |")
	fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: |")
	for _, t := range h.Targets {
		if t.Error != "" {
			fmt.Fprintf(w, "| %s | %d | - | %s | | | | | |\n", fmtLoss(t.Target), len(t.Points), mdEscape(t.Error))
			continue
		}
		bc, over := bcritCells(t, "&ge; ", "&le; ")
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s | %s | %s |\n", fmtLoss(t.Target), len(t.Points), t.DOF, bc, fmtInterval(t.BcritCI), over,
			fmtInterval(t.OverCI), fmtNum(t.SMin, runfmt.FormatSI), fmtNum(t.EMin, runfmt.FormatTokens))
	}
	if tr := h.Trend; tr != nil {
		fmt.Fprintf(w, "\nTrend over targets: B_crit ~ L^(-1/alpha_B) with alpha_B = %.3g (%d targets, %d dof).\n", tr.AlphaB, tr.Targets, tr.DOF)
	}
}

// mdFigures links the figures with their captions, names those not drawn, and lists the notes.
func mdFigures(w io.Writer, res *analysis.Result, figures []string, skipped []figure.Skipped, base string) {
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
