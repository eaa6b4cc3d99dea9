package analysis

import (
	"fmt"
	"math"
	"strings"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"

	"cbs/runfmt"
)

// primaryFit turns the token overhead of the data and of every resample into the primary estimate.
func primaryFit(d *Data, b0 float64, ref int, pt estimates, boots []estimates, dof int, opts Options) *PrimaryFit {
	nan := Num(math.NaN())
	p := &PrimaryFit{Estimator: "token_overhead", Tau: opts.Tau, ReferenceBatch: b0, CBS: nan, Interval: [2]Num{nan, nan},
		Level: opts.Level, Bound: nan, LossLevel: nan}
	p.Replicates, p.Warning = replicateWarning(d, ref)
	if ref < 0 {
		p.Error = fmt.Sprintf("the reference batch %s is not on the ladder (%s); set the reference batch to one of them", runfmt.FormatTokens(b0), formatBatches(d.Batches()))
		p.Statement = "not estimated: " + p.Error
		return p
	}
	if pt.oErr != nil {
		p.Error = pt.oErr.Error()
		p.Statement = "not estimated: " + p.Error
		return p
	}
	o := pt.over
	p.CBS, p.Censored, p.Bound, p.LossLevel = Num(o.CBS), o.Censored, Num(o.Bound), Num(o.Level)
	p.Statement = o.Statement(d.Batches())
	perRung, cbs, failed := p.readResamples(boots, len(d.Groups))
	p.Resampled, p.FailedResample, p.Draws = len(cbs), failed, cbs
	p.DOF = dof
	level := expandedLevel(opts.Level, p.DOF)
	if len(boots) > 0 {
		iv := percentile(cbs, failed, level)
		p.Interval = [2]Num{iv.Lo, iv.Hi}
		p.Statement += fmt.Sprintf("; %.0f%% interval [%s, %s]", 100*opts.Level, fmtLow(iv.Lo), fmtBound(iv.Hi))
	}
	for i, g := range d.Groups {
		row := OverheadRow{Batch: g.Batch, Replicates: len(g.Replicates), Tokens: Num(o.Tokens[i]), Overhead: Num(o.Overhead[i]), Lo: nan, Hi: nan}
		if len(boots) > 0 {
			iv := percentile(perRung[i], len(boots)-len(perRung[i]), level)
			row.Lo, row.Hi = iv.Lo, iv.Hi
		}
		p.Rungs = append(p.Rungs, row)
	}
	return p
}

// replicateWarning is the fewest replicates of any batch size and the warning the estimate
// carries: which batch sizes have one replicate, and whether the reference batch ref (when on
// the ladder) reached a plateau.
func replicateWarning(d *Data, ref int) (replicates int, warning string) {
	replicates = math.MaxInt
	var single []string
	for _, g := range d.Groups {
		replicates = min(replicates, len(g.Replicates))
		if len(g.Replicates) == 1 {
			single = append(single, runfmt.FormatTokens(g.Batch))
		}
	}
	if len(single) > 0 {
		warning = fmt.Sprintf("one replicate at batch %s: the intervals cover eval-set noise only, not seed-to-seed variation", strings.Join(single, ", "))
	}
	if ref >= 0 {
		if w := plateauWarning(&d.Groups[ref]); w != "" {
			warning = strings.TrimPrefix(warning+"; "+w, "; ")
		}
	}
	return replicates, warning
}

// readResamples collects the per-rung overheads of the n rungs, and the CBS of every resample
// (+Inf censored above, -Inf below), so that an interval end lands on "unbounded" when enough
// resamples are censored. It counts the resamples that failed and sets the fractions censored.
func (p *PrimaryFit) readResamples(boots []estimates, n int) (perRung [][]float64, cbs []float64, failed int) {
	perRung = make([][]float64, n)
	for _, b := range boots {
		if b.oErr != nil {
			failed++
			continue
		}
		for i, v := range b.over.Overhead {
			if !math.IsNaN(v) {
				perRung[i] = append(perRung[i], v)
			}
		}
		switch b.over.Censored {
		case CensoredAbove:
			cbs = append(cbs, math.Inf(1))
			p.CensoredAbove++
		case CensoredBelow:
			cbs = append(cbs, math.Inf(-1))
			p.CensoredBelow++
		default:
			cbs = append(cbs, b.over.CBS)
		}
	}
	if len(cbs) > 0 {
		p.CensoredAbove /= float64(len(cbs))
		p.CensoredBelow /= float64(len(cbs))
	}
	return perRung, cbs, failed
}

// fmtLow writes a lower interval end; -Inf (resamples censored below) is "below the ladder".
func fmtLow(n Num) string {
	if math.IsInf(float64(n), -1) {
		return "below the ladder"
	}
	return fmtBound(n)
}

func formatBatches(b []float64) string {
	var s []string
	for _, x := range b {
		s = append(s, runfmt.FormatTokens(x))
	}
	return strings.Join(s, ", ")
}

// slopeFit reports the loss cost of one doubling of the batch at equal tokens.
func slopeFit(pt estimates, boots []estimates, opts Options) *SlopeFit {
	if !pt.slopeOK {
		return nil
	}
	sf := &SlopeFit{PerDoubling: Num(pt.slope), Relative: Num(math.NaN())}
	if pt.eps > 0 && opts.EpsAbs == 0 {
		sf.Relative = Num(pt.slope * opts.Eps / pt.eps)
	}
	var v []float64
	failed := 0
	for _, b := range boots {
		if !b.slopeOK {
			failed++
			continue
		}
		v = append(v, b.slope)
	}
	sf.CI = percentile(v, failed, opts.Level)
	sf.Statement = fmt.Sprintf("loss at equal tokens changes by %+.4g per doubling of the batch", pt.slope)
	if sf.Relative.Valid() {
		sf.Statement += fmt.Sprintf(" (%+.2f%% of the reference loss)", 100*float64(sf.Relative))
	}
	if sf.CI.Lo.Valid() && sf.CI.Hi.Valid() {
		sf.Statement += fmt.Sprintf("; %.0f%% interval [%+.4g, %+.4g]", 100*opts.Level, float64(sf.CI.Lo), float64(sf.CI.Hi))
	}
	return sf
}

// sensitivity is the tolerance rule at eps 0.005, 0.01, 0.02 and the token-overhead CBS at
// tau 0.1, 0.2, 0.5: how much each answer hangs on its tolerance.
func sensitivity(batches []float64, pt estimates, boots []estimates, opts Options) []SensitivityRow {
	nan := Num(math.NaN())
	var rows []SensitivityRow
	for i, eps := range sensitivityEps {
		row := SensitivityRow{Estimator: "tolerance", Param: "eps", Value: eps, Lower: nan, Upper: nan, CBS: nan}
		if opts.EpsAbs > 0 {
			row.Param, row.Value = "eps_abs", opts.EpsAbs*eps/sensitivityEps[1]
		}
		if err := pt.tAtErr[i]; err != nil {
			row.Statement = "not estimated: " + err.Error()
		} else {
			t := pt.tolAt[i]
			row.Lower, row.Upper, row.CBS, row.Censored, row.Statement = Num(t.Lower), Num(t.Upper), Num(t.GeoMean), t.Censored, t.Statement()
		}
		rows = append(rows, row)
	}
	if len(pt.overAt) == 0 {
		return rows
	}
	for i, tau := range sensitivityTaus {
		row := SensitivityRow{Estimator: "token_overhead", Param: "tau", Value: tau, Lower: nan, Upper: nan, CBS: nan}
		if err := pt.oAtErr[i]; err != nil {
			row.Statement = "not estimated: " + err.Error()
			rows = append(rows, row)
			continue
		}
		o := pt.overAt[i]
		row.CBS, row.Censored, row.Statement = Num(o.CBS), o.Censored, o.Statement(batches)
		var v []float64
		failed := 0
		for _, b := range boots {
			if len(b.overAt) == 0 || b.oAtErr[i] != nil {
				failed++
				continue
			}
			switch bo := b.overAt[i]; bo.Censored {
			case CensoredAbove:
				v = append(v, math.Inf(1))
			case CensoredBelow:
				v = append(v, math.Inf(-1))
			default:
				v = append(v, bo.CBS)
			}
		}
		if len(boots) > 0 {
			iv := percentile(v, failed, opts.Level)
			row.Lower, row.Upper = iv.Lo, iv.Hi
		}
		rows = append(rows, row)
	}
	return rows
}

// expandedLevel widens a percentile interval's level for a variance estimated with few degrees
// of freedom: the expanded percentile interval (Hesterberg 2015), which asks the bootstrap
// distribution for the normal quantile that matches Student's t with dof degrees of freedom. The
// resampled deviations are already scaled by sqrt(m/(m-1)) (inflate), so only t/z remains.
// With 16 degrees of freedom a nominal 90% reads the 91.9% central range.
func expandedLevel(level float64, dof int) float64 {
	if dof < 1 {
		return level
	}
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(dof)}.Quantile(0.5 + level/2)
	return 2*distuv.UnitNormal.CDF(t) - 1
}

// RatioFit is the ratio of two sweeps' token-overhead CBS with a bootstrap interval.
type RatioFit struct {
	Ratio     Num     `json:"ratio"` // null when either CBS is censored
	Interval  [2]Num  `json:"interval"`
	Level     float64 `json:"level"`
	Used      int     `json:"resamples_used"`
	Failed    int     `json:"resamples_failed"`
	Lower     Num     `json:"lower_bound"` // a bound on the ratio when censoring allows one
	Upper     Num     `json:"upper_bound"`
	Statement string  `json:"statement"`
}

// CBSRatio is num's CBS over den's, from two independent sweeps: the point estimate is the ratio
// of the point estimates and the interval the percentile interval of the ratio of their
// bootstrap draws taken in resample order, at the level expanded for both sweeps' degrees of
// freedom (censored draws as 0 or +Inf; both unbounded on the
// same side is no ratio, and counted failed). A censored point estimate gives a bound instead
// of a ratio: num above its ladder over den inside it is a lower bound, and so on.
func CBSRatio(num, den *PrimaryFit, level float64) RatioFit {
	nan := Num(math.NaN())
	r := RatioFit{Ratio: nan, Interval: [2]Num{nan, nan}, Level: level, Lower: nan, Upper: nan}
	if num == nil || den == nil || num.Error != "" || den.Error != "" {
		r.Statement = "no ratio: a CBS is missing"
		return r
	}
	value := func(p *PrimaryFit) float64 {
		switch p.Censored {
		case CensoredAbove:
			return math.Inf(1)
		case CensoredBelow:
			return math.Inf(-1)
		}
		return float64(p.CBS)
	}
	n, d := value(num), value(den)
	switch {
	case !math.IsInf(n, 0) && !math.IsInf(d, 0):
		r.Ratio = Num(n / d)
		r.Statement = fmt.Sprintf("ratio %.3g", n/d)
	case math.IsInf(n, 1) && !math.IsInf(d, 0):
		r.Lower = Num(float64(num.Bound) / d)
		r.Statement = fmt.Sprintf("ratio >= %.3g (the numerator's CBS is beyond its ladder)", float64(r.Lower))
	case math.IsInf(n, -1) && !math.IsInf(d, 0):
		r.Upper = Num(float64(num.Bound) / d)
		r.Statement = fmt.Sprintf("ratio < %.3g (the numerator's CBS is below its ladder)", float64(r.Upper))
	case !math.IsInf(n, 0) && math.IsInf(d, 1):
		r.Upper = Num(n / float64(den.Bound))
		r.Statement = fmt.Sprintf("ratio <= %.3g (the denominator's CBS is beyond its ladder)", float64(r.Upper))
	case !math.IsInf(n, 0) && math.IsInf(d, -1):
		r.Lower = Num(n / float64(den.Bound))
		r.Statement = fmt.Sprintf("ratio > %.3g (the denominator's CBS is below its ladder)", float64(r.Lower))
	default:
		r.Statement = "no ratio: both CBS are censored"
	}
	k := min(len(num.Draws), len(den.Draws))
	var v []float64
	for i := 0; i < k; i++ {
		a, b := num.Draws[i], den.Draws[i]
		switch {
		case math.IsInf(a, 0) && math.IsInf(b, 0):
			r.Failed++
			continue
		case math.IsInf(a, -1) || math.IsInf(b, 1):
			v = append(v, 0)
		case math.IsInf(a, 1) || math.IsInf(b, -1):
			v = append(v, math.Inf(1))
		default:
			v = append(v, a/b)
		}
	}
	r.Used = len(v)
	if k > 0 {
		iv := percentile(v, r.Failed, expandedLevel(level, num.DOF+den.DOF))
		r.Interval = [2]Num{iv.Lo, iv.Hi}
		r.Statement += fmt.Sprintf("; %.0f%% interval [%s, %s]", 100*level, fmtRatio(iv.Lo), fmtRatio(iv.Hi))
	}
	return r
}

func fmtRatio(n Num) string {
	switch f := float64(n); {
	case math.IsInf(f, 1):
		return "inf"
	case !n.Valid():
		return "?"
	default:
		return fmt.Sprintf("%.3g", f)
	}
}

// plateauWarning says when the reference batch's loss falls over its branch by less than twice
// its seed-to-seed spread at the end: crossing times on a curve that flat are set by noise, and
// no overhead read off it means much, whatever the interval says.
func plateauWarning(g *Group) string {
	if len(g.Replicates) < 2 {
		return ""
	}
	_, mean := g.Mean(nil, nil)
	if len(mean) < 2 {
		return ""
	}
	drop := mean[0] - mean[len(mean)-1]
	var final []float64
	for _, r := range g.Replicates {
		final = append(final, r.Loss[len(r.Loss)-1])
	}
	sd := stat.StdDev(final, nil)
	if drop >= 2*sd {
		return ""
	}
	return fmt.Sprintf("the reference batch's loss falls by %.3g over its branch, less than twice its seed-to-seed SD at the end (%.3g): the curves are near a plateau and crossing times there are mostly noise", drop, sd)
}
