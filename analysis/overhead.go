package analysis

import (
	"fmt"
	"math"
	"slices"

	"cbs/runfmt"
)

// TokenOverhead is the primary estimand read off one ladder of loss curves (docs/science.md, section 3).
//
// For a loss level L every batch size reached, overhead(B) = T_B(L) / T_ref(L): the tokens batch B
// needed to reach L over the tokens the reference batch needed. Under McCandlish et al.'s
// E(B) = E_min (1 + B/B_noise) it is (1 + B/B_noise) / (1 + B_ref/B_noise), a straight line in B,
// so the CBS at overhead tau, the largest batch whose overhead stays within 1 + tau, is read by
// linear interpolation in B between the last rung within and the first rung past, and equals
// tau B_noise + (1 + tau) B_ref. It has no loss units, so objectives with different loss scales
// compare directly.
type TokenOverhead struct {
	Tau float64
	// Ref is the reference batch's index in the ladder.
	Ref int
	// Level is the loss at which every overhead is read.
	Level float64
	// Tokens is T_B(Level) per rung; Overhead is Tokens / Tokens[Ref].
	Tokens, Overhead []float64
	// CBS is the interpolated batch, NaN when censored. Bound is the largest batch tried
	// (CensoredAbove: CBS >= Bound) or the smallest (CensoredBelow: CBS < Bound).
	CBS      float64
	Censored Censoring
	Bound    float64
	// FailedAt is the first rung whose overhead exceeds 1 + Tau, or -1.
	FailedAt int
}

// OverheadCBS reads the token overhead off mean loss curves (tokens ascending, one per batch
// size, batches ascending) against the curve at index ref.
//
// The level is the lowest loss that the reference and every rung up to the first failing one
// reach: the decision is made as late in training as the data allow, and rungs past the first
// failure, which reach only high losses, do not hold the level up. It is found by iteration: a
// level from all rungs, the first failure at that level, the level again from the rungs up to it,
// until the first failure no longer moves.
func OverheadCBS(batches []float64, tokens, losses [][]float64, ref int, tau float64) (TokenOverhead, error) {
	n := len(batches)
	if len(tokens) != n || len(losses) != n {
		return TokenOverhead{}, fmt.Errorf("token overhead: %d batches, %d token and %d loss curves", n, len(tokens), len(losses))
	}
	if n < 2 {
		return TokenOverhead{}, fmt.Errorf("token overhead: %d batch size(s); needs at least 2", n)
	}
	if ref < 0 || ref >= n {
		return TokenOverhead{}, fmt.Errorf("token overhead: reference index %d outside the ladder", ref)
	}
	if !(tau > 0) {
		return TokenOverhead{}, fmt.Errorf("token overhead: tau = %v: must be > 0", tau)
	}
	for i := range batches {
		if !(batches[i] > 0) || (i > 0 && batches[i] <= batches[i-1]) {
			return TokenOverhead{}, fmt.Errorf("token overhead: batch sizes must be positive and strictly increasing")
		}
		if len(losses[i]) == 0 || len(tokens[i]) != len(losses[i]) {
			return TokenOverhead{}, fmt.Errorf("token overhead: batch %s has no loss curve", runfmt.FormatTokens(batches[i]))
		}
	}
	// A rung whose curve never gets below the reference's loss at the reference's first mark
	// cannot be compared at any level the reference is measured at: it is slower than anything
	// the marks resolve, an overhead past every limit, and it takes no part in choosing the level.
	catchable := make([]bool, n)
	for i := range losses {
		catchable[i] = slices.Min(losses[i]) < losses[ref][0]
	}
	if !catchable[ref] {
		return TokenOverhead{}, fmt.Errorf("token overhead: the reference batch %s never gets below its loss at its first eval mark, %.4g, so no level is measured on it", runfmt.FormatTokens(batches[ref]), losses[ref][0])
	}
	upTo := n - 1
	var o TokenOverhead
	for iter := 0; iter <= n; iter++ {
		var err error
		o, err = overheadAt(batches, tokens, losses, ref, tau, reachedByAll(losses, catchable, ref, upTo), catchable)
		if err != nil {
			return o, err
		}
		next := n - 1
		if o.FailedAt >= 0 {
			next = max(o.FailedAt, ref)
		}
		if next == upTo {
			break
		}
		upTo = next
	}
	return o, nil
}

// reachedByAll is the lowest loss that curve ref and the catchable curves 0..upTo all reach.
func reachedByAll(losses [][]float64, catchable []bool, ref, upTo int) float64 {
	level := math.Inf(-1)
	for i := range losses {
		if (i > upTo || !catchable[i]) && i != ref {
			continue
		}
		lo := math.Inf(1)
		for _, l := range losses[i] {
			lo = math.Min(lo, l)
		}
		level = math.Max(level, lo)
	}
	return level
}

func overheadAt(batches []float64, tokens, losses [][]float64, ref int, tau, level float64, catchable []bool) (TokenOverhead, error) {
	n := len(batches)
	o := TokenOverhead{Tau: tau, Ref: ref, Level: level, CBS: math.NaN(), Bound: math.NaN(), FailedAt: -1,
		Tokens: make([]float64, n), Overhead: make([]float64, n)}
	for i := range batches {
		o.Tokens[i] = math.Inf(1)
		if catchable[i] {
			o.Tokens[i] = tokensToLevel(tokens[i], losses[i], level)
		}
	}
	tr := o.Tokens[ref]
	if math.IsNaN(tr) {
		return o, fmt.Errorf("token overhead: the reference batch %s reaches loss %.4g before its first eval mark, so T_ref is not measured; log an earlier mark", runfmt.FormatTokens(batches[ref]), level)
	}
	for i := range batches {
		o.Overhead[i] = o.Tokens[i] / tr
	}
	limit := 1 + tau
	for i := range batches {
		if math.IsNaN(o.Overhead[i]) {
			// Reached before the first mark: a batch that fast is well within the limit.
			continue
		}
		if o.Overhead[i] > limit {
			o.FailedAt = i
			break
		}
	}
	switch k := o.FailedAt; {
	case k < 0:
		o.Censored, o.Bound = CensoredAbove, batches[n-1]
	case k == 0:
		o.Censored, o.Bound = CensoredBelow, batches[0]
	default:
		prev := o.Overhead[k-1]
		if math.IsNaN(prev) {
			prev = 0 // reached before the first mark: the straight line starts no higher than 0
		}
		frac := (limit - prev) / (o.Overhead[k] - prev)
		o.CBS = batches[k-1] + frac*(batches[k]-batches[k-1])
		o.Censored = NotCensored
	}
	return o, nil
}

// tokensToLevel is the first crossing of level, interpolated between marks linearly in log loss
// (CrossingTokens), NaN when the curve starts at or below level and +Inf when it never gets there.
func tokensToLevel(tokens, loss []float64, level float64) float64 {
	if len(loss) == 0 {
		return math.Inf(1)
	}
	if loss[0] <= level {
		return math.NaN()
	}
	t, ok, _ := CrossingTokens(tokens, loss, level)
	if !ok {
		return math.Inf(1)
	}
	return t
}

// Statement says the estimate in words, censored bounds exactly as the figures draw them.
func (o TokenOverhead) Statement(batches []float64) string {
	switch o.Censored {
	case CensoredAbove:
		return fmt.Sprintf("CBS >= %s tokens: every batch up to the largest tried needs at most %.0f%% more tokens than %s to reach loss %.4g", runfmt.FormatTokens(o.Bound), 100*o.Tau, runfmt.FormatTokens(batches[o.Ref]), o.Level)
	case CensoredBelow:
		return fmt.Sprintf("CBS < %s tokens: the smallest batch tried already needs more than %.0f%% more tokens than %s to reach loss %.4g", runfmt.FormatTokens(o.Bound), 100*o.Tau, runfmt.FormatTokens(batches[o.Ref]), o.Level)
	}
	return fmt.Sprintf("CBS = %s tokens: the largest batch needing at most %.0f%% more tokens than %s to reach loss %.4g (interpolated between %s and %s, linearly in B)",
		runfmt.FormatTokens(o.CBS), 100*o.Tau, runfmt.FormatTokens(batches[o.Ref]), o.Level, runfmt.FormatTokens(batches[o.FailedAt-1]), runfmt.FormatTokens(batches[o.FailedAt]))
}
