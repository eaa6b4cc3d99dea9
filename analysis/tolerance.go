package analysis

import (
	"errors"
	"fmt"
	"math"

	"cbs/runfmt"
)

// Censoring says whether the ladder of batch sizes brackets an estimate.
type Censoring string

const (
	NotCensored   Censoring = "none"
	CensoredAbove Censoring = "above" // the CBS is at least the largest batch tried
	CensoredBelow Censoring = "below" // the CBS is at most the smallest batch tried
)

// Tolerance is the result of the tolerance rule.
type Tolerance struct {
	Eps float64
	// Index is k*: the position in the ladder of the largest batch that lost no more than Eps
	// against every smaller one, scanning upward and stopping at the first failure.
	Index int
	// Lower and Upper bound the CBS: [batch[k*], batch[k*+1]). Upper is +Inf (written as null)
	// when every batch passed; Lower is 0 when the first doubling already failed.
	Lower    float64
	Upper    float64
	GeoMean  float64 // sqrt(Lower*Upper); NaN when censored
	Censored Censoring
	// FailedAt is the index of the first batch that lost more than Eps, or -1.
	FailedAt int
}

// ToleranceRule applies docs/science.md, section 5 to losses at equal tokens for ascending batch sizes: the
// CBS is the largest batch whose loss is within eps of the best loss of every smaller batch,
// scanning upward and stopping at the first batch that is worse by more than eps (later batches
// are not consulted, so a noisy ladder cannot jump past a failure).
//
// When every batch passes, the CBS is at least the largest batch (CensoredAbove, no geometric
// mean). When the second batch already fails, the smallest batch passes only because nothing
// smaller was tried, so the CBS may lie at or below it (CensoredBelow, Lower = 0).
func ToleranceRule(batches, losses []float64, eps float64) (Tolerance, error) {
	if len(batches) != len(losses) {
		return Tolerance{}, fmt.Errorf("tolerance rule: %d batches but %d losses", len(batches), len(losses))
	}
	if len(batches) < 2 {
		return Tolerance{}, fmt.Errorf("tolerance rule: %d batch size(s); needs at least 2", len(batches))
	}
	if !(eps >= 0) {
		return Tolerance{}, fmt.Errorf("tolerance rule: eps = %v: must be >= 0", eps)
	}
	for i := range batches {
		if !(batches[i] > 0) || (i > 0 && batches[i] <= batches[i-1]) {
			return Tolerance{}, errors.New("tolerance rule: batch sizes must be positive and strictly increasing")
		}
		if math.IsNaN(losses[i]) || math.IsInf(losses[i], 0) {
			return Tolerance{}, fmt.Errorf("tolerance rule: loss at batch %s is %v", runfmt.FormatTokens(batches[i]), losses[i])
		}
	}
	t := Tolerance{Eps: eps, FailedAt: -1}
	best := losses[0]
	k := 0
	for i := 1; i < len(losses); i++ {
		if losses[i] > best+eps {
			t.FailedAt = i
			break
		}
		k = i
		best = math.Min(best, losses[i])
	}
	t.Index = k
	switch {
	case t.FailedAt < 0:
		t.Lower, t.Upper, t.GeoMean, t.Censored = batches[k], math.Inf(1), math.NaN(), CensoredAbove
	case k == 0:
		t.Lower, t.Upper, t.GeoMean, t.Censored = 0, batches[1], math.NaN(), CensoredBelow
	default:
		t.Lower, t.Upper, t.Censored = batches[k], batches[k+1], NotCensored
		t.GeoMean = math.Sqrt(t.Lower * t.Upper)
	}
	return t, nil
}

// Statement says in words what the rule supports.
func (t Tolerance) Statement() string {
	switch t.Censored {
	case CensoredAbove:
		return fmt.Sprintf("CBS >= %s tokens (no batch lost more than eps = %.3g; no knee inside the ladder)", runfmt.FormatTokens(t.Lower), t.Eps)
	case CensoredBelow:
		return fmt.Sprintf("CBS < %s tokens, possibly at or below the smallest batch tried (the first doubling lost more than eps = %.3g)", runfmt.FormatTokens(t.Upper), t.Eps)
	}
	return fmt.Sprintf("CBS in [%s, %s) tokens, geometric mean %s", runfmt.FormatTokens(t.Lower), runfmt.FormatTokens(t.Upper), runfmt.FormatTokens(t.GeoMean))
}
