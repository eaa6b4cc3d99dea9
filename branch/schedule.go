package branch

import (
	"fmt"
	"math"
)

// Schedule shapes.
const (
	ShapeConstant = "constant"
	ShapeLinear   = "linear"
	ShapeCosine   = "cosine"
	ShapeWSD      = "wsd" // warmup, stable, then a linear decay over Decay tokens at the end
)

// Schedule is the LR multiplier as a function of tokens consumed: a linear warmup over Warmup
// tokens, then the shape until Total tokens. Every length is in tokens, so branches with
// different batch sizes trace the same curve.
type Schedule struct {
	Shape      string  `json:"shape" toml:"shape" doc:"After warmup: \"constant\", \"linear\" or \"cosine\" decay to min_lr_ratio over the budget, or \"wsd\" (stable, then a linear decay over the last decay tokens)."`
	Warmup     Tokens  `json:"warmup" toml:"warmup" default:"0" doc:"Linear warmup from 0, in tokens."`
	Decay      Tokens  `json:"decay,omitempty" toml:"decay" doc:"wsd only: the length of the final decay, in tokens."`
	MinLRRatio float64 `json:"min_lr_ratio" toml:"min_lr_ratio" doc:"The LR at the end of a decay, as a fraction of the peak."`
	Total      Tokens  `json:"total" toml:"-"` // the run's budget
}

// Validate names the bad key.
func (s Schedule) Validate() error {
	switch s.Shape {
	case ShapeConstant, ShapeLinear, ShapeCosine, ShapeWSD:
	default:
		return fmt.Errorf("schedule.shape = %q, want constant, linear, cosine or wsd", s.Shape)
	}
	switch {
	case s.Warmup < 0:
		return fmt.Errorf("schedule.warmup = %d, want >= 0", s.Warmup)
	case s.Total > 0 && s.Warmup > s.Total:
		return fmt.Errorf("schedule.warmup = %v is longer than the budget %v", s.Warmup, s.Total)
	case !(s.MinLRRatio >= 0 && s.MinLRRatio <= 1):
		return fmt.Errorf("schedule.min_lr_ratio = %g, want 0 <= ratio <= 1", s.MinLRRatio)
	case s.Shape == ShapeWSD && (s.Decay <= 0 || s.Warmup+s.Decay > s.Total):
		return fmt.Errorf("schedule.decay = %v, want > 0 and warmup + decay <= budget %v", s.Decay, s.Total)
	}
	return nil
}

// Factor is the multiplier of the peak LR at a token count. A step uses the factor at the
// tokens it brings the run to (its last token), so no step runs at LR 0 and a batch that spans
// the whole warmup takes its first step at the peak.
func (s Schedule) Factor(tokens Tokens) float64 {
	if s.Warmup > 0 && tokens < s.Warmup {
		return float64(tokens) / float64(s.Warmup)
	}
	minR := s.MinLRRatio
	switch s.Shape {
	case ShapeLinear, ShapeCosine:
		span := s.Total - s.Warmup
		if span <= 0 {
			return 1
		}
		x := math.Min(1, float64(tokens-s.Warmup)/float64(span))
		if s.Shape == ShapeLinear {
			return 1 - (1-minR)*x
		}
		return minR + (1-minR)*0.5*(1+math.Cos(math.Pi*x))
	case ShapeWSD:
		start := s.Total - s.Decay
		if tokens < start {
			return 1
		}
		x := math.Min(1, float64(tokens-start)/float64(s.Decay))
		return 1 - (1-minR)*x
	}
	return 1
}
