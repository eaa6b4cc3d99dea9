package analysis

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"gonum.org/v1/gonum/stat"

	"cbs/internal/rng"
	"cbs/runfmt"
)

// curve is one batch size's mean loss curve.
type curve struct{ tokens, loss []float64 }

// ladder builds every group's mean curve from one choice of replicates per group (nil: all) and
// of eval shards (nil: the logged eval loss).
func (d *Data) ladder(reps [][]int, shards []int) []curve {
	out := make([]curve, len(d.Groups))
	for i := range d.Groups {
		var r []int
		if reps != nil {
			r = reps[i]
		}
		out[i].tokens, out[i].loss = d.Groups[i].Mean(r, shards)
	}
	return out
}

// estimates are the point estimators run on one ladder of curves (the data or a resample).
type estimates struct {
	final  []float64
	eps    float64 // the absolute tolerance the tolerance rule and the knee used
	tol    Tolerance
	tolErr error
	knee   PowerLaw
	kErr   error
	hyp    []targetEstimate
	over   TokenOverhead
	oErr   error
	// overAt and tolAt are the sensitivity rows: the overhead at sensitivityTaus and the
	// tolerance rule at sensitivityEps.
	overAt  []TokenOverhead
	oAtErr  []error
	tolAt   []Tolerance
	tAtErr  []error
	slope   float64
	slopeOK bool
}

// The tolerances of the sensitivity table.
var (
	sensitivityTaus = []float64{0.1, 0.2, 0.5}
	sensitivityEps  = []float64{0.005, 0.01, 0.02}
)

type targetEstimate struct {
	target   float64
	points   []Crossing
	excluded []Excluded
	// censored are the branches that never reached the target: S > Steps at their last mark.
	censored []Crossing
	h        Hyperbola
	err      error
}

// estimator holds what every run of the point estimators shares, on the data or a resample.
type estimator struct {
	batches []float64
	mark    float64
	targets []float64
	// autoTargets re-picks the targets from each ladder of curves (the data's or a resample's),
	// so a resample is asked about losses it reaches, not about the data's.
	autoTargets bool
	ref         int // index of the reference batch; -1 when it is not on the ladder
	opts        Options
}

// absEps is the absolute tolerance for a relative eps against the reference loss.
func (e *estimator) absEps(eps float64, final []float64) float64 {
	if e.opts.EpsAbs > 0 {
		return e.opts.EpsAbs
	}
	ref := max(e.ref, 0)
	return eps * final[ref]
}

func (e *estimator) run(curves []curve) estimates {
	var r estimates
	batches := e.batches
	r.final = make([]float64, len(curves))
	for i, c := range curves {
		r.final[i], _ = lossAt(c.tokens, c.loss, e.mark)
	}
	r.eps = e.absEps(e.opts.Eps, r.final)
	r.tol, r.tolErr = ToleranceRule(batches, r.final, r.eps)
	r.knee, r.kErr = FitPowerLaw(batches, r.final)
	targets := e.targets
	if e.autoTargets {
		targets = autoTargets(curves, e.opts.NumTargets)
	}
	r.hyp = make([]targetEstimate, len(targets))
	for ti, target := range targets {
		te := &r.hyp[ti]
		te.target = target
		for i, c := range curves {
			t, ok, why := CrossingTokens(c.tokens, c.loss, target)
			switch {
			case ok:
				te.points = append(te.points, Crossing{Batch: batches[i], Steps: t / batches[i], Tokens: t})
			case why == notReached && len(c.tokens) > 0:
				last := c.tokens[len(c.tokens)-1]
				te.censored = append(te.censored, Crossing{Batch: batches[i], Steps: last / batches[i], Tokens: last})
			default:
				te.excluded = append(te.excluded, Excluded{Batch: batches[i], Reason: why})
			}
		}
		te.h, te.err = fitCensoredHyperbola(te.points, te.censored)
	}
	if e.ref < 0 {
		r.oErr = fmt.Errorf("the reference batch is not on the ladder")
	} else {
		toks, losses := make([][]float64, len(curves)), make([][]float64, len(curves))
		for i, c := range curves {
			toks[i], losses[i] = c.tokens, c.loss
		}
		r.over, r.oErr = OverheadCBS(batches, toks, losses, e.ref, e.opts.Tau)
		for _, tau := range sensitivityTaus {
			o, err := OverheadCBS(batches, toks, losses, e.ref, tau)
			r.overAt, r.oAtErr = append(r.overAt, o), append(r.oAtErr, err)
		}
	}
	for _, eps := range sensitivityEps {
		t, err := ToleranceRule(batches, r.final, e.absEps(eps, r.final))
		r.tolAt, r.tAtErr = append(r.tolAt, t), append(r.tAtErr, err)
	}
	if len(batches) >= 2 {
		x := make([]float64, len(batches))
		for i, b := range batches {
			x[i] = math.Log2(b)
		}
		_, r.slope = stat.LinearRegression(x, r.final, nil, false)
		r.slopeOK = !math.IsNaN(r.slope)
	}
	return r
}

// fitCensoredHyperbola fits S(B) = a + b/B to the crossings, then holds the fit to the branches
// that never reached the target: where the fit says such a branch would have got there within
// its budget (S(B) below its steps), the branch joins the fit at its budget, the least it can
// have needed, and the fit is redone until it contradicts none of them. Dropping those branches
// instead would bias B_crit upward, since the batches that miss a target are the large ones.
func fitCensoredHyperbola(points, censored []Crossing) (Hyperbola, error) {
	pts := append([]Crossing(nil), points...)
	used := make([]bool, len(censored))
	for {
		b, s := crossingXY(pts)
		h, err := FitHyperbola(b, s)
		if err != nil {
			return h, err
		}
		added := false
		for i, c := range censored {
			if !used[i] && h.Steps(c.Batch) < c.Steps {
				used[i], added = true, true
				pts = append(pts, c)
			}
		}
		if !added {
			return h, nil
		}
	}
}

func crossingXY(pts []Crossing) (b, s []float64) {
	for _, p := range pts {
		b = append(b, p.Batch)
		s = append(s, p.Steps)
	}
	return b, s
}

// Analyze runs every estimator the data support and bootstraps their intervals. It returns an
// error only for invalid options or unusable data; an estimator that cannot be fitted (too few
// points, no convergence) is reported in the result with its reason.
func Analyze(d *Data, opts Options, codeVersion string) (*Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := d.check(); err != nil {
		return nil, err
	}
	res := &Result{
		CodeVersion:   codeVersion,
		Source:        d.Source,
		Metric:        d.Metric,
		Options:       opts,
		CompareTokens: Num(math.NaN()),
		Notes:         append([]string(nil), d.Notes...),
	}
	if len(d.Groups) == 0 {
		return analyzeSteps(d, opts, res)
	}
	mark, err := commonMark(d.Groups)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Source, err)
	}
	res.CompareTokens = Num(mark)
	batches := d.Batches()
	res.Ladder = ladderRows(d, mark)
	full := d.ladder(nil, nil)
	targets := opts.Targets
	if len(targets) == 0 {
		targets = autoTargets(full, opts.NumTargets)
		if len(targets) == 0 {
			res.Notes = append(res.Notes, "no target loss is crossed by three or more batch sizes: no steps-to-target fit")
		}
	}
	b0 := opts.ReferenceBatch
	if b0 == 0 {
		b0 = batches[0]
	}
	est := &estimator{batches: batches, mark: mark, targets: targets, autoTargets: len(opts.Targets) == 0, ref: -1, opts: opts}
	for i, b := range batches {
		if b == b0 {
			est.ref = i
		}
	}
	pt := est.run(full)
	boots := bootstrap(d, est, full, pt, res)

	dof := 0
	if res.Bootstrap.Method == "data" {
		dof = effectiveDOF(d, est, full, d.NumShards(), res.Bootstrap.PairedReplicates, opts)
	}
	res.Primary = primaryFit(d, b0, est.ref, pt, boots, dof, opts)
	if res.Primary.Warning != "" {
		res.Notes = append(res.Notes, res.Primary.Warning)
	}
	res.Slope = slopeFit(pt, boots, opts)
	res.Sensitivity = sensitivity(batches, pt, boots, opts)
	res.Tolerance = toleranceFit(batches, pt, boots, opts)
	res.Knee = kneeFit(batches, pt, boots, opts)
	res.Hyperbola = hyperbolaFit(targets, pt, boots, b0, opts)
	return res, nil
}

// bootstrap draws the resamples of the estimates pt of the ladder full: the data themselves
// (replicates and eval shards) where there is more than one of either, else the fit residuals.
// It records in res how it resampled, with notes on what the intervals leave out.
func bootstrap(d *Data, est *estimator, full []curve, pt estimates, res *Result) []estimates {
	opts := est.opts
	nshards := d.NumShards()
	multiRep := false
	var single []string
	for _, g := range d.Groups {
		if len(g.Replicates) > 1 {
			multiRep = true
		} else {
			single = append(single, runfmt.FormatTokens(g.Batch))
		}
	}
	res.Bootstrap = BootstrapInfo{Method: "none", Level: opts.Level, Seed: opts.Seed, Shards: nshards}
	if opts.Bootstrap == 0 {
		return nil
	}
	res.Bootstrap.Resamples = opts.Bootstrap
	if nshards <= 1 && !multiRep {
		res.Bootstrap.Method = "residual"
		res.Notes = append(res.Notes, "one replicate per batch size and no eval shards: intervals resample fit residuals (model-based), and the tolerance rule has none")
		return residualBoots(est.batches, pt, opts)
	}
	res.Bootstrap.Method = "data"
	if nshards <= 1 && len(single) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("batch sizes %s have one replicate and the run logged no eval shards: their noise is missing from the intervals", strings.Join(single, ", ")))
	}
	paired := multiRep && d.pairedReplicates()
	res.Bootstrap.PairedReplicates = paired
	boots := make([]estimates, opts.Bootstrap)
	for r := range boots {
		s := rng.Key(opts.Seed, "bootstrap", uint64(r))
		reps, shards := d.resample(&s, paired, true, nshards > 1)
		boots[r] = est.run(inflate(d, full, d.ladder(reps, shards), nshards))
	}
	return boots
}

// hyperbolaFit fits the steps-to-target hyperbola at each target, with the resamples' fits as
// its bootstrap, and the trend of B_crit in the target.
func hyperbolaFit(targets []float64, pt estimates, boots []estimates, b0 float64, opts Options) *HyperbolaFit {
	h := &HyperbolaFit{Tau: opts.Tau, ReferenceBatch: b0}
	for ti, target := range targets {
		var tb []targetEstimate
		for _, b := range boots {
			if ti < len(b.hyp) {
				tb = append(tb, b.hyp[ti])
			} else {
				tb = append(tb, targetEstimate{err: fmt.Errorf("the resample's curves cross too few targets")})
			}
		}
		h.Targets = append(h.Targets, targetFit(target, pt.hyp[ti], tb, b0, opts))
	}
	h.Trend = bcritTrend(h.Targets)
	return h
}

// resample draws one bootstrap choice of replicates (within each batch size, or one set for the
// whole ladder when paired) and of eval shards (one set for every branch); a level not drawn is
// nil, which keeps all of it.
func (d *Data) resample(s *rng.Stream, paired, replicates, shards bool) (reps [][]int, sh []int) {
	if shards {
		n := d.NumShards()
		sh = make([]int, n)
		for i := range sh {
			sh[i] = s.Intn(n)
		}
	}
	if !replicates {
		return nil, sh
	}
	reps = make([][]int, len(d.Groups))
	for gi, g := range d.Groups {
		if paired && gi > 0 {
			reps[gi] = reps[0]
			continue
		}
		reps[gi] = make([]int, len(g.Replicates))
		for i := range reps[gi] {
			reps[gi][i] = s.Intn(len(g.Replicates))
		}
	}
	return reps, sh
}

// effectiveDOF is the degrees of freedom behind the primary interval, which set how far the
// expanded percentile interval widens it. Seed replicates and eval shards are two sources of
// noise, each known from few units: replicates less one (per batch size, or once when the ladder
// shares its replicates), shards less one. Their variances in log CBS are measured by
// resampling each level alone, and combined by Welch and Satterthwaite's formula, which gives
// the dof of the level that dominates the variance.
func effectiveDOF(d *Data, est *estimator, full []curve, nshards int, paired bool, opts Options) int {
	dfRep := 0
	for _, g := range d.Groups {
		dfRep += len(g.Replicates) - 1
	}
	if paired {
		dfRep = len(d.Groups[0].Replicates) - 1
	}
	dfShard := max(nshards-1, 0)
	if dfRep == 0 || dfShard == 0 {
		return max(dfRep, dfShard)
	}
	n := min(opts.Bootstrap, 200)
	variance := func(reps, shards bool) float64 {
		var x []float64
		for r := 0; r < n; r++ {
			s := rng.Key(opts.Seed, "bootstrap-dof", uint64(r))
			rp, sh := d.resample(&s, paired, reps, shards)
			b := est.run(inflate(d, full, d.ladder(rp, sh), nshards))
			if b.oErr == nil && b.over.Censored == NotCensored {
				x = append(x, math.Log(b.over.CBS))
			}
		}
		if len(x) < 2 {
			return math.NaN()
		}
		return stat.Variance(x, nil)
	}
	vr, vs := variance(true, false), variance(false, true)
	if !(vr+vs > 0) {
		return dfRep
	}
	dof := (vr + vs) * (vr + vs) / (vr*vr/float64(dfRep) + vs*vs/float64(dfShard))
	return max(1, int(math.Round(dof)))
}

// inflate scales each resampled curve's deviation from the data's curve by sqrt(m/(m-1)), m the
// number of units resampled (replicates, or shards when there are fewer of those). A resample of
// m units has (m-1)/m of the data's variance; with 4 replicates the plain percentile interval
// covers markedly less than its nominal rate (Davison and Hinkley 1997, section 3.3).
func inflate(d *Data, full, boot []curve, nshards int) []curve {
	for gi := range boot {
		m := len(d.Groups[gi].Replicates)
		if nshards > 1 && (m < 2 || nshards < m) {
			m = nshards
		}
		if m < 2 {
			continue
		}
		c := math.Sqrt(float64(m) / float64(m-1))
		for i, t := range boot[gi].tokens {
			if l, ok := lossAt(full[gi].tokens, full[gi].loss, t); ok {
				boot[gi].loss[i] = l + c*(boot[gi].loss[i]-l)
			}
		}
	}
	return boot
}

func ladderRows(d *Data, mark float64) []LadderRow {
	var rows []LadderRow
	for _, g := range d.Groups {
		row := LadderRow{Batch: g.Batch, Replicates: len(g.Replicates)}
		var ls []float64
		for _, r := range g.Replicates {
			row.IDs = append(row.IDs, r.ID)
			if l, ok := lossAt(r.Tokens, r.Loss, mark); ok {
				ls = append(ls, l)
			}
		}
		row.Loss = Num(stat.Mean(ls, nil))
		row.LossSD = Num(math.NaN())
		if len(ls) > 1 {
			row.LossSD = Num(stat.StdDev(ls, nil))
		}
		sort.Float64s(ls)
		row.LossMin, row.LossMax = Num(ls[0]), Num(ls[len(ls)-1])
		rows = append(rows, row)
	}
	return rows
}

// autoTargets spreads n target losses over the lower half of the range most curves cross: from
// just above the loss two thirds of the batch sizes reach to halfway up to the lowest starting
// loss. Late targets
// are where the critical batch matters; early ones are dominated by warmup.
func autoTargets(curves []curve, n int) []float64 {
	var first, low []float64
	for _, c := range curves {
		if len(c.loss) == 0 {
			continue
		}
		first = append(first, c.loss[0])
		m := c.loss[0]
		for _, l := range c.loss {
			m = math.Min(m, l)
		}
		low = append(low, m)
	}
	if len(first) < 3 {
		return nil
	}
	hi := first[0]
	for _, f := range first {
		hi = math.Min(hi, f)
	}
	// The largest batches get few steps at equal tokens and stop at high losses; a target every
	// branch reaches would sit early in training. Two thirds of the batch sizes (at least three)
	// must reach the lowest target.
	sort.Float64s(low)
	k := max(3, (2*len(low)+2)/3)
	lo := low[k-1]
	if lo >= hi {
		return nil
	}
	var out []float64
	for i := 0; i < n; i++ {
		f := 0.02
		if n > 1 {
			f += 0.48 * float64(i) / float64(n-1)
		}
		t := roundSig(lo+f*(hi-lo), 4)
		if len(out) == 0 || t != out[len(out)-1] {
			out = append(out, t)
		}
	}
	return out
}

// residualBoots resamples each fit's residuals (scaled by sqrt(n/dof) to undo the shrinkage of
// fitted residuals) when the data hold no replicates or shards to resample.
func residualBoots(batches []float64, pt estimates, opts Options) []estimates {
	boots := make([]estimates, opts.Bootstrap)
	for r := range boots {
		s := rng.Key(opts.Seed, "bootstrap-residual", uint64(r))
		e := &boots[r]
		e.eps = pt.eps
		e.oErr = fmt.Errorf("no resampling for the token overhead")
		e.tolErr = fmt.Errorf("no resampling for the tolerance rule")
		e.kErr = fmt.Errorf("no point fit")
		if pt.kErr == nil && !pt.knee.Flat {
			n := len(batches)
			scale := math.Sqrt(float64(n) / float64(pt.knee.DOF))
			l := make([]float64, n)
			for i, b := range batches {
				j := s.Intn(n)
				l[i] = pt.knee.Loss(b) + scale*(pt.final[j]-pt.knee.Loss(batches[j]))
			}
			e.knee, e.kErr = FitPowerLaw(batches, l)
		}
		e.hyp = make([]targetEstimate, len(pt.hyp))
		for ti, te := range pt.hyp {
			e.hyp[ti].err = fmt.Errorf("no point fit")
			if te.err != nil {
				continue
			}
			e.hyp[ti].h, e.hyp[ti].err = residualHyperbola(te.h, te.points, &s)
		}
	}
	return boots
}

func residualHyperbola(h Hyperbola, pts []Crossing, s *rng.Stream) (Hyperbola, error) {
	n := len(pts)
	scale := math.Sqrt(float64(n) / float64(h.DOF))
	b, st := crossingXY(pts)
	star := make([]float64, n)
	for i := range pts {
		j := s.Intn(n)
		resid := math.Log(st[j]) - math.Log(h.Steps(b[j]))
		star[i] = h.Steps(b[i]) * math.Exp(scale*resid)
	}
	return FitHyperbola(b, star)
}

// percentile returns the central level interval of vals and how many were used.
func percentile(vals []float64, failed int, level float64) Interval {
	iv := Interval{Lo: Num(math.NaN()), Hi: Num(math.NaN()), Used: len(vals), Failed: failed}
	// Fewer than half the resamples succeeding means the interval would describe the lucky ones.
	if len(vals) == 0 || len(vals) < failed {
		return iv
	}
	x := append([]float64(nil), vals...)
	sort.Float64s(x)
	iv.Lo = Num(stat.Quantile((1-level)/2, stat.Empirical, x, nil))
	iv.Hi = Num(stat.Quantile(1-(1-level)/2, stat.Empirical, x, nil))
	return iv
}

func toleranceFit(batches []float64, pt estimates, boots []estimates, opts Options) *ToleranceFit {
	tf := &ToleranceFit{Eps: opts.Eps, EpsLoss: Num(pt.eps), Lower: Num(math.NaN()), Upper: Num(math.NaN()), GeoMean: Num(math.NaN()), FailedAt: Num(math.NaN())}
	for _, l := range pt.final {
		tf.Losses = append(tf.Losses, Num(l))
	}
	if pt.tolErr != nil {
		tf.Error = pt.tolErr.Error()
		tf.Statement = "not estimated: " + tf.Error
		return tf
	}
	t := pt.tol
	tf.Lower, tf.Upper, tf.GeoMean, tf.Censored = Num(t.Lower), Num(t.Upper), Num(t.GeoMean), t.Censored
	if t.FailedAt >= 0 {
		tf.FailedAt = Num(batches[t.FailedAt])
	}
	tf.Statement = t.Statement()
	counts := map[[2]float64]int{}
	total := 0
	for _, b := range boots {
		if b.tolErr != nil {
			continue
		}
		counts[[2]float64{b.tol.Lower, b.tol.Upper}]++
		total++
	}
	for k, c := range counts {
		tf.Resampled = append(tf.Resampled, ToleranceOutcome{Lower: Num(k[0]), Upper: Num(k[1]), Fraction: float64(c) / float64(total)})
	}
	sort.Slice(tf.Resampled, func(i, j int) bool { return tf.Resampled[i].Lower < tf.Resampled[j].Lower })
	for _, o := range tf.Resampled {
		if float64(o.Lower) == t.Lower {
			tf.Statement += fmt.Sprintf("; the same interval in %.0f%% of %d resamples", 100*o.Fraction, total)
		}
	}
	return tf
}

func kneeFit(batches []float64, pt estimates, boots []estimates, opts Options) *KneeFit {
	nan := Num(math.NaN())
	kf := &KneeFit{Eps: opts.Eps, EpsLoss: Num(pt.eps), Linf: nan, A: nan, Alpha: nan, RMSE: nan, Knee: nan, KneeFit: nan}
	if pt.kErr != nil {
		kf.Error = pt.kErr.Error()
		kf.Statement = "not estimated: " + kf.Error
		return kf
	}
	p := pt.knee
	kf.Linf, kf.A, kf.Alpha, kf.DOF, kf.RMSE = Num(p.Linf), Num(p.A), Num(p.Alpha), p.DOF, Num(p.RMSE)
	knee := p.Knee(pt.eps)
	kf.KneeFit = Num(knee)
	bmin, bmax := batches[0], batches[len(batches)-1]
	if p.Flat {
		kf.Error = "not applicable: the final loss does not fall with batch size (no A > 0 fits better than a constant); the tolerance rule and the steps-to-target fits apply"
		kf.Statement = kf.Error
		return kf
	}
	switch {
	case knee > bmax:
		kf.Censored = CensoredAbove
		kf.Statement = fmt.Sprintf("CBS >= %s tokens: the fitted knee (%s) lies beyond the largest batch tried", runfmt.FormatTokens(bmax), runfmt.FormatTokens(knee))
	case knee < bmin:
		kf.Censored = CensoredBelow
		kf.Statement = fmt.Sprintf("CBS <= %s tokens: the fitted knee (%s) lies below the smallest batch tried", runfmt.FormatTokens(bmin), runfmt.FormatTokens(knee))
	default:
		kf.Censored = NotCensored
		kf.Knee = Num(knee)
		kf.Statement = fmt.Sprintf("knee at %s tokens (a doubling past it gains < %.3g)", runfmt.FormatTokens(knee), pt.eps)
	}
	kf.Statement += fmt.Sprintf("; %d points, 3 parameters, %d degree(s) of freedom", p.N, p.DOF)
	if p.DOF <= 2 {
		kf.Statement += ": the fit can hardly be checked against the data"
	}
	// Bootstrap.
	grid := make([]float64, 41)
	lo, hi := math.Log(bmin/1.5), math.Log(bmax*1.5)
	for i := range grid {
		grid[i] = math.Exp(lo + (hi-lo)*float64(i)/40)
	}
	var knees, alphas []float64
	bands := make([][]float64, len(grid))
	failed := 0
	for _, b := range boots {
		if b.kErr != nil {
			failed++
			continue
		}
		knees = append(knees, b.knee.Knee(b.eps))
		alphas = append(alphas, b.knee.Alpha)
		for i, x := range grid {
			bands[i] = append(bands[i], b.knee.Loss(x))
		}
	}
	if len(boots) > 0 {
		kf.KneeCI = percentile(knees, failed, opts.Level)
		kf.AlphaCI = percentile(alphas, failed, opts.Level)
		if kf.KneeCI.Lo.Valid() || kf.KneeCI.Hi.Valid() {
			kf.Statement += fmt.Sprintf("; %.0f%% interval of the fitted knee [%s, %s]", 100*opts.Level, fmtBound(kf.KneeCI.Lo), fmtBound(kf.KneeCI.Hi))
		}
	}
	for i, x := range grid {
		row := BandRow{Batch: x, Loss: Num(p.Loss(x)), Lo: nan, Hi: nan}
		if len(boots) > 0 {
			iv := percentile(bands[i], failed, opts.Level)
			row.Lo, row.Hi = iv.Lo, iv.Hi
		}
		kf.Band = append(kf.Band, row)
	}
	return kf
}

func fmtBound(n Num) string {
	if math.IsInf(float64(n), 1) {
		return "inf"
	}
	if !n.Valid() {
		return "?"
	}
	return runfmt.FormatTokens(float64(n))
}

func targetFit(target float64, te targetEstimate, boots []targetEstimate, b0 float64, opts Options) TargetFit {
	nan := Num(math.NaN())
	tf := TargetFit{Target: Num(target), Points: te.points, Excluded: te.excluded, Censored: NotCensored, CensoredPoints: te.censored,
		SMin: nan, EMin: nan, RMSELog: nan, Bcrit: nan, BcritFit: nan, Overhead: nan, OverFit: nan}
	if te.err != nil {
		tf.Error = te.err.Error()
		tf.Statement = "not estimated: " + tf.Error
		return tf
	}
	h := te.h
	tf.SMin, tf.EMin, tf.DOF, tf.RMSELog = Num(h.A), Num(h.B), h.DOF, Num(h.RMSELog)
	bc, over := h.Bcrit(), h.OverheadBatch(b0, opts.Tau)
	tf.BcritFit, tf.OverFit = Num(bc), Num(over)
	b, _ := crossingXY(te.points)
	bmin, bmax := b[0], b[len(b)-1]
	// S(B)/S_min = 1 + B_crit/B: at B = B_crit/2 the S_min term is still a third of S and the
	// bend is measurable; past that, the fitted S_min (and with it B_crit) is extrapolation.
	// The same factor applies at the small end, where the E_min/B term fades. TargetFit.Bound
	// is the batch each statement names.
	switch {
	case bc > 2*bmax:
		tf.Censored = CensoredAbove
		tf.Statement = fmt.Sprintf("B_crit >= %s tokens: S(B) still falls as 1/B across the batches that reach loss %g", runfmt.FormatTokens(tf.Bound()), target)
	case bc < bmin/2:
		tf.Censored = CensoredBelow
		tf.Statement = fmt.Sprintf("B_crit <= %s tokens: S(B) is already flat at the smallest batch that reaches loss %g", runfmt.FormatTokens(tf.Bound()), target)
	default:
		tf.Censored = NotCensored
		tf.Bcrit, tf.Overhead = Num(bc), Num(over)
		tf.Statement = fmt.Sprintf("B_crit = %s tokens; S exceeds linear scaling from %s by %g at %s tokens", runfmt.FormatTokens(bc), runfmt.FormatTokens(b0), opts.Tau, runfmt.FormatTokens(over))
	}
	tf.Statement += fmt.Sprintf(" (%d points, %d dof)", h.N, h.DOF)
	if len(boots) > 0 {
		var bcs, overs []float64
		failed := 0
		for _, bt := range boots {
			if bt.err != nil {
				failed++
				continue
			}
			bcs = append(bcs, bt.h.Bcrit())
			overs = append(overs, bt.h.OverheadBatch(b0, opts.Tau))
		}
		tf.BcritCI = percentile(bcs, failed, opts.Level)
		tf.OverCI = percentile(overs, failed, opts.Level)
	}
	return tf
}

func bcritTrend(fits []TargetFit) *BcritTrend {
	var x, y []float64
	for _, f := range fits {
		if f.Bcrit.Valid() {
			x = append(x, math.Log(float64(f.Target)))
			y = append(y, math.Log(float64(f.Bcrit)))
		}
	}
	if len(x) < 3 {
		return nil
	}
	c, slope := stat.LinearRegression(x, y, nil, false)
	if slope == 0 || math.IsNaN(slope) {
		return nil
	}
	return &BcritTrend{AlphaB: -1 / slope, LogC: c, Targets: len(x), DOF: len(x) - 2}
}

// analyzeSteps fits the hyperbola to a batch_size,steps table: one target, reached at the given
// steps. Rows sharing a batch size are replicates and are resampled within their batch size.
func analyzeSteps(d *Data, opts Options, res *Result) (*Result, error) {
	pts := append([]StepsPoint(nil), d.Steps...)
	sort.SliceStable(pts, func(i, j int) bool { return pts[i].Batch < pts[j].Batch })
	var te targetEstimate
	byBatch := map[float64][]int{}
	var order []float64
	for i, p := range pts {
		te.points = append(te.points, Crossing{Batch: p.Batch, Steps: p.Steps, Tokens: p.Steps * p.Batch})
		if _, ok := byBatch[p.Batch]; !ok {
			order = append(order, p.Batch)
		}
		byBatch[p.Batch] = append(byBatch[p.Batch], i)
	}
	for _, b := range order {
		rows := byBatch[b]
		res.Ladder = append(res.Ladder, LadderRow{Batch: b, Replicates: len(rows), Loss: Num(math.NaN()), LossSD: Num(math.NaN()), LossMin: Num(math.NaN()), LossMax: Num(math.NaN())})
	}
	b, s := crossingXY(te.points)
	te.h, te.err = FitHyperbola(b, s)
	b0 := opts.ReferenceBatch
	if b0 == 0 {
		b0 = order[0]
	}
	res.Bootstrap = BootstrapInfo{Method: "none", Level: opts.Level, Seed: opts.Seed}
	var boots []targetEstimate
	if opts.Bootstrap > 0 && te.err == nil {
		res.Bootstrap.Resamples = opts.Bootstrap
		multi := len(order) < len(pts)
		if multi {
			res.Bootstrap.Method = "data"
		} else {
			res.Bootstrap.Method = "residual"
			res.Notes = append(res.Notes, "one row per batch size: intervals resample fit residuals (model-based)")
		}
		for r := 0; r < opts.Bootstrap; r++ {
			var bt targetEstimate
			if multi {
				st := rng.Key(opts.Seed, "bootstrap", uint64(r))
				var bb, ss []float64
				for _, batch := range order {
					rows := byBatch[batch]
					// Deviations from the batch's mean log steps, inflated as in inflate.
					var mean float64
					for _, i := range rows {
						mean += math.Log(pts[i].Steps) / float64(len(rows))
					}
					c := 1.0
					if len(rows) > 1 {
						c = math.Sqrt(float64(len(rows)) / float64(len(rows)-1))
					}
					for range rows {
						i := rows[st.Intn(len(rows))]
						bb = append(bb, pts[i].Batch)
						ss = append(ss, math.Exp(mean+c*(math.Log(pts[i].Steps)-mean)))
					}
				}
				bt.h, bt.err = FitHyperbola(bb, ss)
			} else {
				st := rng.Key(opts.Seed, "bootstrap-residual", uint64(r))
				bt.h, bt.err = residualHyperbola(te.h, te.points, &st)
			}
			boots = append(boots, bt)
		}
	}
	tf := targetFit(math.NaN(), te, boots, b0, opts)
	tf.Statement = strings.ReplaceAll(tf.Statement, " that reach loss NaN", "")
	res.Hyperbola = &HyperbolaFit{Tau: opts.Tau, ReferenceBatch: b0, Targets: []TargetFit{tf}}
	return res, nil
}
