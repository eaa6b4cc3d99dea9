package analysis

import (
	"fmt"
	"math"
)

// NoiseEstimates turns the squared norms of a micro-batch gradient (batch bSmall) and of the
// accumulated gradient (batch bBig) into unbiased estimates of the true gradient's squared norm
// and of the per-token gradient covariance trace, using E|G_B|^2 = |G|^2 + tr(Sigma)/B:
//
//	|G|^2     = (bBig |G_big|^2 - bSmall |G_small|^2) / (bBig - bSmall)
//	tr(Sigma) = (|G_small|^2 - |G_big|^2) / (1/bSmall - 1/bBig)
//
// Single-step estimates are noisy and may be negative; average them (as EMAs) before dividing.
func NoiseEstimates(bSmall, bBig, smallSq, bigSq float64) (gradSq, trace float64) {
	gradSq = (bBig*bigSq - bSmall*smallSq) / (bBig - bSmall)
	trace = (smallSq - bigSq) / (1/bSmall - 1/bBig)
	return gradSq, trace
}

// NoiseSeries is the simple gradient noise scale of one branch over its training.
type NoiseSeries struct {
	ID      string
	Batch   float64
	Tokens  []float64
	BSimple []float64 // tr(Sigma) EMA / |G|^2 EMA, in tokens
	Source  string    // which metrics fields it came from
}

// NoiseScale extracts B_simple = EMA(tr Sigma) / EMA(|G|^2) for a branch: the logged
// gns_b_simple when present, else the ratio of the logged EMAs, else EMAs (time constant
// emaTokens) of the per-step estimates from gns_small_sq and gns_big_sq. It is the ratio of
// averages, never the average of per-step ratios, which is dominated by steps where |G|^2 is
// near zero. ok is false when the branch logged no gradient-noise fields.
func NoiseScale(b *Branch, emaTokens float64) (s NoiseSeries, ok bool) {
	s = NoiseSeries{ID: b.Spec.ID, Batch: float64(b.Spec.BatchTokens)}
	// Both EMAs start at zero with the same bias factor, which cancels in their ratio.
	var trEMA, gEMA float64
	for _, r := range b.Records {
		t := float64(r.Tokens)
		var v float64
		switch {
		case !math.IsNaN(r.GNSBSimple):
			v, s.Source = r.GNSBSimple, "gns_b_simple"
		case !math.IsNaN(r.GNSTraceEMA) && !math.IsNaN(r.GNSGradSqEMA):
			v, s.Source = r.GNSTraceEMA/r.GNSGradSqEMA, "gns_trace_ema / gns_grad_sq_ema"
		case !math.IsNaN(r.GNSSmallSq) && !math.IsNaN(r.GNSBigSq) && r.GNSBSmall > 0 && r.GNSBBig > r.GNSBSmall:
			g, tr := NoiseEstimates(float64(r.GNSBSmall), float64(r.GNSBBig), r.GNSSmallSq, r.GNSBigSq)
			decay := math.Exp(-float64(r.GNSBBig) / emaTokens)
			trEMA = decay*trEMA + (1-decay)*tr
			gEMA = decay*gEMA + (1-decay)*g
			v, s.Source = trEMA/gEMA, fmt.Sprintf("EMA of gns_small_sq, gns_big_sq (time constant %.3g tokens)", emaTokens)
		default:
			continue
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
			// Early on the |G|^2 estimate can be negative or zero: no scale is defined there.
			continue
		}
		s.Tokens = append(s.Tokens, t)
		s.BSimple = append(s.BSimple, v)
	}
	return s, len(s.Tokens) > 0
}
