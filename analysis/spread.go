package analysis

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/stat"
)

// Curve is one run's eval loss at its eval marks.
type Curve struct {
	Run    string    `json:"run"`
	Tokens []float64 `json:"tokens"`
	Loss   []float64 `json:"eval_loss"`
}

// CurveGroup is runs of one setting that differ only in seed.
type CurveGroup struct {
	Label  string  `json:"label"`
	Curves []Curve `json:"curves"`
}

// Band is a reference group's run-to-run spread at the eval marks all its runs share: the
// mean, least and largest loss at each.
type Band struct {
	Label  string    `json:"label"`
	Tokens []float64 `json:"tokens"`
	Mean   []float64 `json:"mean"`
	Min    []float64 `json:"min"`
	Max    []float64 `json:"max"`
	// MaxDeviation is the largest |loss - mean| of any reference run at any mark: how far the
	// replicates stray from their own mean.
	MaxDeviation float64 `json:"max_deviation"`
}

// SpreadCheck places one run's curve in a reference band, at the marks both have.
type SpreadCheck struct {
	Label string `json:"label"`
	Run   string `json:"run"`
	Marks int    `json:"marks"`
	// Inside counts the marks where the loss lies within the band's [min, max].
	Inside int `json:"inside"`
	// MaxDeviation is the largest |loss - band mean| over the marks; WithinSpread says whether
	// it is no larger than the band's own MaxDeviation.
	MaxDeviation float64 `json:"max_deviation"`
	WithinSpread bool    `json:"within_spread"`
	// Closest is the reference run this curve tracks most closely (least largest |difference|
	// over the marks) and ClosestDiff that difference: for a run that shares a reference run's
	// seed, data and eval set, how much the change under test alone moves the loss.
	Closest     string  `json:"closest_reference_run"`
	ClosestDiff float64 `json:"closest_max_abs_diff"`
}

// NewBand is the spread of a group of two or more runs at the marks they all have.
func NewBand(g CurveGroup) (Band, error) {
	if len(g.Curves) < 2 {
		return Band{}, fmt.Errorf("%s: a run-to-run spread needs two or more runs, have %d", g.Label, len(g.Curves))
	}
	b := Band{Label: g.Label}
	for i, t := range g.Curves[0].Tokens {
		losses := []float64{g.Curves[0].Loss[i]}
		for _, c := range g.Curves[1:] {
			if l, ok := lossAt(c.Tokens, c.Loss, t); ok {
				losses = append(losses, l)
			}
		}
		if len(losses) < len(g.Curves) {
			continue
		}
		b.Tokens = append(b.Tokens, t)
		b.Mean = append(b.Mean, stat.Mean(losses, nil))
		b.Min = append(b.Min, slices.Min(losses))
		b.Max = append(b.Max, slices.Max(losses))
	}
	if len(b.Tokens) == 0 {
		return Band{}, fmt.Errorf("%s: the runs share no eval mark", g.Label)
	}
	for i := range b.Tokens {
		b.MaxDeviation = math.Max(b.MaxDeviation, math.Max(b.Max[i]-b.Mean[i], b.Mean[i]-b.Min[i]))
	}
	return b, nil
}

// Check places curve c, labelled label, in the band; ref are the band's runs.
func (b Band) Check(label string, c Curve, ref []Curve) (SpreadCheck, error) {
	s := SpreadCheck{Label: label, Run: c.Run, ClosestDiff: math.Inf(1)}
	for i, t := range b.Tokens {
		l, ok := lossAt(c.Tokens, c.Loss, t)
		if !ok {
			continue
		}
		s.Marks++
		if l >= b.Min[i] && l <= b.Max[i] {
			s.Inside++
		}
		s.MaxDeviation = math.Max(s.MaxDeviation, math.Abs(l-b.Mean[i]))
	}
	if s.Marks == 0 {
		return s, fmt.Errorf("%s (%s): no eval mark in common with %s", label, c.Run, b.Label)
	}
	s.WithinSpread = s.MaxDeviation <= b.MaxDeviation
	for _, r := range ref {
		var d float64
		for i, t := range r.Tokens {
			if l, ok := lossAt(c.Tokens, c.Loss, t); ok {
				d = math.Max(d, math.Abs(l-r.Loss[i]))
			}
		}
		if d < s.ClosestDiff {
			s.Closest, s.ClosestDiff = r.Run, d
		}
	}
	return s, nil
}
