package analysis

import (
	"math"
	"testing"
)

func TestSpread(t *testing.T) {
	tok := []float64{1, 2, 3}
	ref := CurveGroup{Label: "fp32", Curves: []Curve{
		{Run: "a", Tokens: tok, Loss: []float64{3.0, 2.0, 1.0}},
		{Run: "b", Tokens: tok, Loss: []float64{3.2, 2.2, 1.1}},
		// c misses mark 2: the band keeps only the marks every run has.
		{Run: "c", Tokens: []float64{1, 3}, Loss: []float64{3.4, 1.2}},
	}}
	band, err := NewBand(ref)
	if err != nil {
		t.Fatal(err)
	}
	const tol = 1e-12
	if len(band.Tokens) != 2 || band.Tokens[0] != 1 || band.Tokens[1] != 3 {
		t.Fatalf("marks %v, want [1 3]", band.Tokens)
	}
	for i, want := range []struct{ mean, lo, hi float64 }{{3.2, 3.0, 3.4}, {1.1, 1.0, 1.2}} {
		if math.Abs(band.Mean[i]-want.mean) > tol || band.Min[i] != want.lo || band.Max[i] != want.hi {
			t.Errorf("mark %v: mean %v [%v, %v], want %v [%v, %v]", band.Tokens[i], band.Mean[i], band.Min[i], band.Max[i], want.mean, want.lo, want.hi)
		}
	}
	if math.Abs(band.MaxDeviation-0.2) > tol {
		t.Errorf("band max deviation %v, want 0.2", band.MaxDeviation)
	}
	for _, tc := range []struct {
		name        string
		loss        []float64
		inside      int
		maxDev      float64
		within      bool
		closest     string
		closestDiff float64
	}{
		{name: "on a", loss: []float64{3.001, 2.0, 1.0}, inside: 2, maxDev: 0.199, within: true, closest: "a", closestDiff: 0.001},
		{name: "above the band", loss: []float64{3.5, 2.2, 1.05}, inside: 1, maxDev: 0.3, within: false, closest: "c", closestDiff: 0.15},
		{name: "between", loss: []float64{3.2, 2.1, 1.1}, inside: 2, maxDev: 0, within: true, closest: "b", closestDiff: 0.1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := band.Check("bf16", Curve{Run: "x", Tokens: tok, Loss: tc.loss}, ref.Curves)
			if err != nil {
				t.Fatal(err)
			}
			if s.Marks != 2 || s.Inside != tc.inside || math.Abs(s.MaxDeviation-tc.maxDev) > 1e-9 || s.WithinSpread != tc.within ||
				s.Closest != tc.closest || math.Abs(s.ClosestDiff-tc.closestDiff) > 1e-9 {
				t.Errorf("got %+v", s)
			}
		})
	}
	if _, err := band.Check("bf16", Curve{Run: "x", Tokens: []float64{5}, Loss: []float64{1}}, ref.Curves); err == nil {
		t.Error("a curve with no mark in common was accepted")
	}
	if _, err := NewBand(CurveGroup{Label: "one", Curves: ref.Curves[:1]}); err == nil {
		t.Error("a band of one run was accepted")
	}
}
