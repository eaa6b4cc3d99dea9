package analysis

import (
	"fmt"
	"math"
	"sort"

	"cbs/internal/rng"
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
	// Breaks are the indices i at which steps without a positive value lie between points i-1
	// and i: a line drawn across them would show values that were never measured.
	Breaks []int `json:",omitempty"`
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
	gap := false
	for _, r := range b.Records {
		t := float64(r.Tokens)
		var v float64
		switch {
		case r.GNSBSimple != nil:
			v, s.Source = *r.GNSBSimple, "gns_b_simple"
		case r.GNSTraceEMA != nil && r.GNSGradSqEMA != nil:
			v, s.Source = *r.GNSTraceEMA / *r.GNSGradSqEMA, "gns_trace_ema / gns_grad_sq_ema"
		case r.GNSSmallSq != nil && r.GNSBigSq != nil && r.GNSBSmall > 0 && r.GNSBBig > r.GNSBSmall:
			g, tr := NoiseEstimates(float64(r.GNSBSmall), float64(r.GNSBBig), *r.GNSSmallSq, *r.GNSBigSq)
			decay := math.Exp(-float64(r.GNSBBig) / emaTokens)
			trEMA = decay*trEMA + (1-decay)*tr
			gEMA = decay*gEMA + (1-decay)*g
			v, s.Source = trEMA/gEMA, fmt.Sprintf("EMA of gns_small_sq, gns_big_sq (time constant %.3g tokens)", emaTokens)
		default:
			continue
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
			// Early on the |G|^2 estimate can be negative or zero: no scale is defined there.
			gap = len(s.Tokens) > 0
			continue
		}
		if gap {
			s.Breaks = append(s.Breaks, len(s.Tokens))
			gap = false
		}
		s.Tokens = append(s.Tokens, t)
		s.BSimple = append(s.BSimple, v)
	}
	return s, len(s.Tokens) > 0
}

// NoiseGap is an analysed branch without a gradient noise scale, and why it has none.
type NoiseGap struct {
	ID     string  `json:"id"`
	Batch  float64 `json:"batch_tokens"`
	Reason string  `json:"reason"`
}

// Reasons a branch has no gradient noise scale.
const (
	// The estimate compares a micro-batch's gradient with the whole batch's; a step of one
	// micro-batch has nothing to compare, and the trainer logs no gradient-noise fields for it.
	NoGNSOneMicroBatch = "one micro-batch per step"
	NoGNSNonPositive   = "|G|^2 estimate never positive"
	NoGNSNotLogged     = "no gradient-noise fields logged"
)

// NoiseGaps lists the analysed branches of a run that have no B_simple series, with the reason.
func NoiseGaps(run *Run, emaTokens float64) []NoiseGap {
	emaTokens = noiseEMATokens(run, emaTokens)
	var out []NoiseGap
	for _, b := range run.Branches {
		if _, ok := NoiseScale(b, emaTokens); ok {
			continue
		}
		logged, single := false, b.Spec.Accum == 1
		for _, r := range b.Records {
			if r.GNSSmallSq != nil || r.GNSBigSq != nil || r.GNSTraceEMA != nil || r.GNSBSimple != nil {
				logged = true
			}
			if r.GNSBSmall > 0 && r.GNSBBig <= r.GNSBSmall {
				single = true
			}
		}
		reason := NoGNSNotLogged
		switch {
		case logged && !single:
			reason = NoGNSNonPositive
		case single:
			reason = NoGNSOneMicroBatch
		}
		out = append(out, NoiseGap{ID: b.Spec.ID, Batch: float64(b.Spec.BatchTokens), Reason: reason})
	}
	return out
}

// NoiseEnd is a branch's simple noise scale over the last window of its training, with the
// evidence for trusting it.
type NoiseEnd struct {
	BSimple float64 // mean tr(Sigma) / mean |G|^2 over the window, tokens; NaN when undefined
	Lo, Hi  float64 // block-bootstrap interval of BSimple
	// NonPositive is the share of the branch's per-step |G|^2 estimates that are <= 0: noise
	// so large against the signal that a single step says nothing.
	NonPositive float64
	Steps       int // steps in the window
	// TooNoisy is set when the interval spans more than a factor of 10 or reaches <= 0.
	TooNoisy bool
}

// noisyFactor is the widest interval, hi/lo, for which an end value is reported as a number.
const noisyFactor = 10

// EndNoiseScale estimates B_simple over the last windowTokens of a branch from the per-step
// gns_small_sq and gns_big_sq as a ratio of means, and bootstraps it over blocks of consecutive
// steps (a tenth of the window each, so the steps' autocorrelation stays inside a block).
// ok is false when the branch logged no per-step gradient norms.
func EndNoiseScale(b *Branch, windowTokens float64, resamples int, seed uint64, level float64) (NoiseEnd, bool) {
	var g2, tr, tokens []float64
	nonPos, total := 0, 0
	for _, r := range b.Records {
		if r.GNSSmallSq == nil || r.GNSBigSq == nil || !(r.GNSBSmall > 0) || r.GNSBBig <= r.GNSBSmall {
			continue
		}
		g, t := NoiseEstimates(float64(r.GNSBSmall), float64(r.GNSBBig), *r.GNSSmallSq, *r.GNSBigSq)
		total++
		if g <= 0 {
			nonPos++
		}
		g2, tr, tokens = append(g2, g), append(tr, t), append(tokens, float64(r.Tokens))
	}
	if total == 0 {
		return NoiseEnd{}, false
	}
	e := NoiseEnd{NonPositive: float64(nonPos) / float64(total), BSimple: math.NaN(), Lo: math.NaN(), Hi: math.NaN()}
	start := sort.SearchFloat64s(tokens, tokens[len(tokens)-1]-windowTokens)
	g2, tr = g2[start:], tr[start:]
	e.Steps = len(g2)
	ratio := func(idx []int) float64 {
		var sg, st float64
		for _, i := range idx {
			sg += g2[i]
			st += tr[i]
		}
		if sg <= 0 {
			return math.NaN()
		}
		return st / sg
	}
	all := make([]int, len(g2))
	for i := range all {
		all[i] = i
	}
	e.BSimple = ratio(all)
	block := max(1, len(g2)/10)
	var draws []float64
	failed := 0
	idx := make([]int, 0, len(g2))
	for r := 0; r < resamples; r++ {
		s := rng.Key(seed, "gns-bootstrap", uint64(r))
		idx = idx[:0]
		for len(idx) < len(g2) {
			from := s.Intn(len(g2) - block + 1)
			for j := from; j < from+block && len(idx) < len(g2); j++ {
				idx = append(idx, j)
			}
		}
		if v := ratio(idx); math.IsNaN(v) || v <= 0 {
			failed++
		} else {
			draws = append(draws, v)
		}
	}
	iv := percentile(draws, failed, level)
	e.Lo, e.Hi = float64(iv.Lo), float64(iv.Hi)
	e.TooNoisy = math.IsNaN(e.BSimple) || e.BSimple <= 0 || !(e.Lo > 0) || !(e.Hi/e.Lo <= noisyFactor)
	return e, true
}
