package analysis

import (
	"math"
	"strings"
	"testing"

	"gonum.org/v1/gonum/floats/scalar"

	"cbs/internal/rng"
)

func ladder2(n int, first float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = first * math.Pow(2, float64(i))
	}
	return out
}

func TestHyperbolaRecoversExactData(t *testing.T) {
	for _, tc := range []struct {
		name        string
		smin, bcrit float64
		batches     []float64
	}{
		{"bcrit inside ladder", 1000, 256 * 1024, ladder2(8, 16*1024)},
		{"three points", 50, 3000, []float64{1000, 4000, 16000}},
		{"uneven ladder", 12345, 1e6, []float64{1e5, 3e5, 7e5, 2e6, 9e6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps := make([]float64, len(tc.batches))
			for i, b := range tc.batches {
				steps[i] = tc.smin * (1 + tc.bcrit/b)
			}
			h, err := FitHyperbola(tc.batches, steps)
			if err != nil {
				t.Fatal(err)
			}
			if !scalar.EqualWithinRel(h.A, tc.smin, 1e-9) || !scalar.EqualWithinRel(h.Bcrit(), tc.bcrit, 1e-9) {
				t.Errorf("S_min = %v, B_crit = %v; want %v, %v", h.A, h.Bcrit(), tc.smin, tc.bcrit)
			}
			if !scalar.EqualWithinRel(h.B, tc.smin*tc.bcrit, 1e-9) {
				t.Errorf("E_min = %v, want %v", h.B, tc.smin*tc.bcrit)
			}
			if h.DOF != len(tc.batches)-2 || h.RMSELog > 1e-9 {
				t.Errorf("dof %d rmse %v", h.DOF, h.RMSELog)
			}
			// The overhead batch must solve its defining equation
			// a + b/B = (1+tau) S(B0) B0 / B with S(B0) from the fitted curve.
			b0, tau := tc.batches[0], 0.2
			bo := h.OverheadBatch(b0, tau)
			lhs, rhs := h.Steps(bo), (1+tau)*h.Steps(b0)*b0/bo
			if !scalar.EqualWithinRel(lhs, rhs, 1e-12) {
				t.Errorf("overhead batch %v: S = %v but (1+tau) S(B0) B0/B = %v", bo, lhs, rhs)
			}
			if want := (1+tau)*b0 + tau*tc.bcrit; !scalar.EqualWithinRel(bo, want, 1e-9) {
				t.Errorf("overhead batch %v, want %v", bo, want)
			}
		})
	}
}

func TestHyperbolaFitsLogSpace(t *testing.T) {
	// One point 10% high at the smallest batch: a fit in linear space would chase it, the log-space
	// fit weighs it like the others. The log residual at that point must be near half of the
	// 10% (the fit spreads the misfit), not near zero.
	batches := ladder2(6, 1024)
	steps := make([]float64, len(batches))
	for i, b := range batches {
		steps[i] = 100 * (1 + 8192/b)
	}
	steps[0] *= 1.1
	h, err := FitHyperbola(batches, steps)
	if err != nil {
		t.Fatal(err)
	}
	r0 := math.Log(steps[0]) - math.Log(h.Steps(batches[0]))
	if r0 < 0.01 || r0 > 0.09 {
		t.Errorf("log residual at the outlier = %v; a relative-error fit leaves part of it", r0)
	}
}

func TestFitsOnTooFewPointsFail(t *testing.T) {
	_, err := FitHyperbola([]float64{1024, 2048}, []float64{300, 200})
	if err == nil || !strings.Contains(err.Error(), "needs at least 3") {
		t.Errorf("hyperbola on 2 points: err = %v, want a message asking for 3", err)
	}
	_, err = FitHyperbola([]float64{1024, 1024, 2048}, []float64{300, 310, 200})
	if err == nil || !strings.Contains(err.Error(), "distinct") {
		t.Errorf("hyperbola on 2 distinct batches: err = %v", err)
	}
	_, err = FitPowerLaw([]float64{1, 2, 4}, []float64{3, 2.5, 2.3})
	if err == nil || !strings.Contains(err.Error(), "needs at least 4") {
		t.Errorf("power law on 3 points: err = %v, want a message asking for 4", err)
	}
	_, err = ToleranceRule([]float64{1024}, []float64{3}, 0.01)
	if err == nil || !strings.Contains(err.Error(), "needs at least 2") {
		t.Errorf("tolerance rule on 1 point: err = %v", err)
	}
}

func TestToleranceRule(t *testing.T) {
	b := []float64{1, 2, 4, 8, 16}
	for _, tc := range []struct {
		name         string
		losses       []float64
		eps          float64
		lower, upper float64
		censored     Censoring
	}{
		// 3.00 -> 3.005 (ok, +0.005) -> 3.012 (ok vs 3.00 + 0.015) -> 3.03 (fails: > 3.015).
		{"monotone knee", []float64{3.00, 3.005, 3.012, 3.03, 3.10}, 0.015, 4, 8, NotCensored},
		// Noisy and non-monotone: the dip at 4 lowers the best loss to 2.95, so 8 (2.97) fails by
		// 0.02 > 0.01 even though it is below the loss of batch 1; 16 would pass again but the
		// scan has stopped.
		{"noisy non-monotone", []float64{3.00, 3.005, 2.95, 2.97, 2.955}, 0.01, 4, 8, NotCensored},
		{"every batch passes", []float64{3.0, 2.9, 2.8, 2.7, 2.6}, 0.01, 16, math.Inf(1), CensoredAbove},
		{"first doubling fails", []float64{3.0, 3.2, 3.1, 3.0, 3.0}, 0.01, 0, 2, CensoredBelow},
		{"exactly eps passes", []float64{3.0, 3.25, 3.25, 3.5, 3.0}, 0.25, 4, 8, NotCensored},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ToleranceRule(b, tc.losses, tc.eps)
			if err != nil {
				t.Fatal(err)
			}
			if got.Lower != tc.lower || got.Upper != tc.upper || got.Censored != tc.censored {
				t.Errorf("got [%v, %v) %s, want [%v, %v) %s", got.Lower, got.Upper, got.Censored, tc.lower, tc.upper, tc.censored)
			}
			if tc.censored == NotCensored && got.GeoMean != math.Sqrt(tc.lower*tc.upper) {
				t.Errorf("geometric mean %v", got.GeoMean)
			}
			if tc.censored != NotCensored && !math.IsNaN(got.GeoMean) {
				t.Errorf("censored result carries a geometric mean %v", got.GeoMean)
			}
		})
	}
	got, _ := ToleranceRule([]float64{1 << 20, 1 << 21, 1 << 22, 1 << 23}, []float64{3, 2.9, 2.8, 2.7}, 0.01)
	if s := got.Statement(); !strings.HasPrefix(s, "CBS >= 8Mi tokens") {
		t.Errorf("statement %q", s)
	}
}

func TestKneeFormula(t *testing.T) {
	// A = 1, alpha = 1: L(B) - L(2B) = 1/(2B) = eps = 1/8 at B = 4.
	if k := KneeBatch(1, 1, 0.125); !scalar.EqualWithinRel(k, 4, 1e-12) {
		t.Errorf("knee %v, want 4", k)
	}
	// alpha = 0.5, A = 10, eps = 0.01: (10 (1 - 2^-0.5) / 0.01)^2.
	want := math.Pow(10*(1-1/math.Sqrt2)/0.01, 2)
	if k := KneeBatch(10, 0.5, 0.01); !scalar.EqualWithinRel(k, want, 1e-12) {
		t.Errorf("knee %v, want %v", k, want)
	}
	// At the knee one more doubling gains exactly eps.
	p := PowerLaw{Linf: 2, A: 40, Alpha: 0.3}
	k := p.Knee(0.02)
	if d := p.Loss(k) - p.Loss(2*k); !scalar.EqualWithinRel(d, 0.02, 1e-9) {
		t.Errorf("gain of a doubling at the knee = %v, want 0.02", d)
	}
}

func TestPowerLawRecoversExactData(t *testing.T) {
	batches := ladder2(6, 1<<16)
	losses := make([]float64, len(batches))
	truth := PowerLaw{Linf: 2.5, A: 300, Alpha: 0.45}
	for i, b := range batches {
		losses[i] = truth.Loss(b)
	}
	p, err := FitPowerLaw(batches, losses)
	if err != nil {
		t.Fatal(err)
	}
	if !scalar.EqualWithinRel(p.Linf, truth.Linf, 1e-5) || !scalar.EqualWithinRel(p.Alpha, truth.Alpha, 1e-4) || !scalar.EqualWithinRel(p.A, truth.A, 1e-3) {
		t.Errorf("fit %+v, want %+v", p, truth)
	}
	if p.DOF != 3 {
		t.Errorf("dof %d", p.DOF)
	}
	if !scalar.EqualWithinRel(p.Knee(0.01), truth.Knee(0.01), 1e-3) {
		t.Errorf("knee %v, want %v", p.Knee(0.01), truth.Knee(0.01))
	}
	flat, err := FitPowerLaw(batches, []float64{3, 3.01, 3.02, 3.05, 3.1, 3.2})
	if err != nil || !flat.Flat || flat.Knee(0.01) != 0 {
		t.Errorf("rising losses: %+v, %v; want a flat fit", flat, err)
	}
}

func TestNoiseEstimatesFromExpectations(t *testing.T) {
	// E|G_B|^2 = |G|^2 + tr(Sigma)/B, so the expectations give back the truth exactly.
	g2, tr := 0.7, 3500.0
	bs, bb := 512.0, 65536.0
	gotG, gotTr := NoiseEstimates(bs, bb, g2+tr/bs, g2+tr/bb)
	if !scalar.EqualWithinRel(gotG, g2, 1e-12) || !scalar.EqualWithinRel(gotTr, tr, 1e-12) {
		t.Errorf("|G|^2 = %v, tr = %v; want %v, %v", gotG, gotTr, g2, tr)
	}
	// The same from sampled gradients: per-token gradients g + noise, averaged over micro and big
	// batches; the mean of the estimates over many draws approaches the truth.
	const dim = 8
	grad := []float64{0.3, -0.2, 0.1, 0.05, 0, 0.4, -0.1, 0.2}
	sigma := 2.0 // per-coordinate SD of one token's gradient
	wantG := 0.0
	for _, g := range grad {
		wantG += g * g
	}
	wantTr := dim * sigma * sigma
	s := rng.New(7, "gns-test", 0)
	const small, big, draws = 4, 32, 4000
	var sumG, sumTr float64
	for d := 0; d < draws; d++ {
		var sumBig [dim]float64
		var smallSq float64
		for k := 0; k < big; k++ {
			for i := range grad {
				v := grad[i] + sigma*s.NormFloat64()
				sumBig[i] += v
			}
			if k == small-1 {
				for i := range sumBig {
					m := sumBig[i] / small
					smallSq += m * m
				}
			}
		}
		var bigSq float64
		for i := range sumBig {
			m := sumBig[i] / big
			bigSq += m * m
		}
		g, tr := NoiseEstimates(small, big, smallSq, bigSq)
		sumG += g
		sumTr += tr
	}
	if !scalar.EqualWithinRel(sumG/draws, wantG, 0.1) || !scalar.EqualWithinRel(sumTr/draws, wantTr, 0.05) {
		t.Errorf("mean estimates |G|^2 = %v, tr = %v; want %v, %v", sumG/draws, sumTr/draws, wantG, wantTr)
	}
}

func TestCrossingTokens(t *testing.T) {
	tokens := []float64{100, 200, 300}
	loss := []float64{4, 2, 1}
	// Between 200 (loss 2) and 300 (loss 1), log loss falls linearly: sqrt(2) is halfway.
	got, ok, _ := CrossingTokens(tokens, loss, math.Sqrt2)
	if !ok || !scalar.EqualWithinRel(got, 250, 1e-12) {
		t.Errorf("crossing at %v (ok %v), want 250", got, ok)
	}
	if got, ok, _ := CrossingTokens(tokens, loss, 2); !ok || got != 200 {
		t.Errorf("crossing at a logged point: %v", got)
	}
	if _, ok, why := CrossingTokens(tokens, loss, 0.5); ok || !strings.Contains(why, "never") {
		t.Errorf("unreached target: ok %v, %q", ok, why)
	}
	if _, ok, why := CrossingTokens(tokens, loss, 5); ok || !strings.Contains(why, "first mark") {
		t.Errorf("target above the start: ok %v, %q", ok, why)
	}
}
