package report

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"cbs/analysis"
	"cbs/runfmt"
)

// WriteText writes the result as aligned plain-text tables: the primary estimate, the loss slope
// and the sensitivity table first, then the secondary estimators.
func WriteText(w io.Writer, res *analysis.Result) {
	fmt.Fprintf(w, "source: %s\n", res.Source)
	if res.Partial {
		textPartial(w, res)
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
	if p := res.Primary; p != nil {
		textPrimary(w, p)
	}
	if s := res.Slope; s != nil {
		fmt.Fprintf(w, "\nloss slope: %s\n", s.Statement)
	}
	if len(res.Sensitivity) > 0 {
		textSensitivity(w, res.Sensitivity)
	}
	if res.Primary != nil || res.Slope != nil || len(res.Sensitivity) > 0 {
		fmt.Fprintln(w, "\nsecondary estimators:")
	}
	if res.Metric != "" {
		textLadder(w, res.Ladder)
	}
	if t := res.Tolerance; t != nil {
		fmt.Fprintf(w, "\ntolerance rule (%s): %s\n", fmtEps(res.Options, t.EpsLoss), t.Statement)
	}
	if h := res.Hyperbola; h != nil && len(h.Targets) > 0 {
		textHyperbola(w, h)
	}
	if k := res.Knee; k != nil {
		fmt.Fprintf(w, "\nknee of L(B) = L_inf + A B^-alpha (%s): %s\n", fmtEps(res.Options, k.EpsLoss), k.Statement)
		if k.Error == "" {
			fmt.Fprintf(w, "  L_inf = %s, alpha = %s %s\n", fmtLoss(k.Linf), fmtLoss(k.Alpha), fmtIntervalPlain(k.AlphaCI))
		}
	}
	if n := res.NoiseScale; n != nil {
		textNoiseScale(w, n)
	}
	if len(res.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range res.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
}

// newTable is the aligned table every section of the text writes its rows through.
func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// textPartial says that the fit is partial and how far each unfinished branch got.
func textPartial(w io.Writer, res *analysis.Result) {
	fmt.Fprintf(w, "%s; every estimate below describes training cut short:\n", res.PartialNote())
	tw := newTable(w)
	for _, u := range res.Unfinished {
		use := "analysed as far as it got"
		if !u.Analysed {
			use = "left out: no metrics yet"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", u.ID, u.State, u.Progress(), use)
	}
	tw.Flush()
}

// textPrimary writes the primary estimate: the statement, the CBS with its interval and the
// overhead of every rung.
func textPrimary(w io.Writer, p *analysis.PrimaryFit) {
	fmt.Fprintf(w, "\nprimary estimate: token overhead T_B(L)/T_ref(L), tau %g, reference batch %s\n", p.Tau, runfmt.FormatTokens(p.ReferenceBatch))
	fmt.Fprintf(w, "  %s\n", p.Statement)
	if p.Error == "" {
		fmt.Fprintf(w, "  %s; %s interval %s%s\n", primaryValue(p), fmtLevel(p.Level), primaryInterval(p), primaryResamples(p))
		fmt.Fprintf(w, "  overheads read at loss L = %s; fewest replicates per batch %d\n", fmtLoss(p.LossLevel), p.Replicates)
		tw := newTable(w)
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

// textSensitivity writes how much each answer hangs on its tolerance.
func textSensitivity(w io.Writer, rows []analysis.SensitivityRow) {
	fmt.Fprintln(w, "\nsensitivity (tolerance rule: bracket; token overhead: CBS and interval):")
	tw := newTable(w)
	fmt.Fprintln(tw, "estimator\tparameter\tCBS\tbracket or interval\tcensored")
	for _, r := range rows {
		if strings.HasPrefix(r.Statement, "not estimated") {
			fmt.Fprintf(tw, "%s\t%s %g\t%s\n", r.Estimator, r.Param, r.Value, r.Statement)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s %g\t%s\t%s\t%s\n", r.Estimator, r.Param, r.Value, fmtNum(r.CBS, runfmt.FormatTokens),
			fmtSensitivityRange(r), r.Censored)
	}
	tw.Flush()
}

// textLadder writes the loss of every batch size at the comparison mark.
func textLadder(w io.Writer, ladder []analysis.LadderRow) {
	fmt.Fprintln(w)
	tw := newTable(w)
	fmt.Fprintln(tw, "batch\treplicates\tloss\tsd")
	for _, r := range ladder {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", runfmt.FormatTokens(r.Batch), r.Replicates, fmtLoss(r.Loss), fmtNum(r.LossSD, func(v float64) string { return strconv.FormatFloat(v, 'g', 2, 64) }))
	}
	tw.Flush()
}

// textHyperbola writes the steps-to-target fits, one row per target loss, and their trend.
func textHyperbola(w io.Writer, h *analysis.HyperbolaFit) {
	fmt.Fprintf(w, "\nsteps to target, S(B) = S_min (1 + B_crit/B) on log S (tau %g, B0 %s):\n", h.Tau, runfmt.FormatTokens(h.ReferenceBatch))
	tw := newTable(w)
	fmt.Fprintln(tw, "target\tpoints\tdof\tB_crit\tinterval\toverhead batch\tinterval\tS_min\tE_min")
	for _, t := range h.Targets {
		if t.Error != "" {
			fmt.Fprintf(tw, "%s\t%d\t-\t%s\n", fmtLoss(t.Target), len(t.Points), t.Error)
			continue
		}
		bc, over := bcritCells(t, ">= ", "<= ")
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", fmtLoss(t.Target), len(t.Points), t.DOF, bc, fmtInterval(t.BcritCI),
			over, fmtInterval(t.OverCI), fmtNum(t.SMin, runfmt.FormatSI), fmtNum(t.EMin, runfmt.FormatTokens))
	}
	tw.Flush()
	if tr := h.Trend; tr != nil {
		fmt.Fprintf(w, "trend B_crit ~ L^(-1/alpha_B): alpha_B = %.3g (%d targets, %d dof; Kaplan et al. report 0.21)\n", tr.AlphaB, tr.Targets, tr.DOF)
	}
}

// textNoiseScale writes the gradient noise scale at the end of each branch.
func textNoiseScale(w io.Writer, n *analysis.NoiseScaleFit) {
	fmt.Fprintf(w, "\ngradient noise scale B_simple at the end of each branch (%s):\n", n.Note)
	tw := newTable(w)
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

// bcritCells are the B_crit and overhead-batch cells of a steps-to-target fit: the fitted
// values, or for a censored fit its bound after ge (above) or le (below), and no overhead batch.
func bcritCells(t analysis.TargetFit, ge, le string) (bcrit, overhead string) {
	switch t.Censored {
	case analysis.CensoredAbove:
		return ge + runfmt.FormatTokens(t.Bound()), "-"
	case analysis.CensoredBelow:
		return le + runfmt.FormatTokens(t.Bound()), "-"
	}
	return fmtNum(t.Bcrit, runfmt.FormatTokens), fmtNum(t.Overhead, runfmt.FormatTokens)
}
