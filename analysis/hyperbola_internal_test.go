package analysis

import (
	"math"
	"testing"
)

// TestFitCensoredHyperbola: a branch that never reached the target is a bound, S > its steps.
// When the fit of the crossings alone says that branch would have got there sooner, it joins the
// fit at its bound, which moves S_min (and B_crit) toward what the bound allows; a bound the fit
// already respects changes nothing.
func TestFitCensoredHyperbola(t *testing.T) {
	const a, b = 100.0, 100.0 * 16384 // S_min 100, B_crit 16Ki
	var pts []Crossing
	for _, batch := range []float64{1024, 2048, 4096, 8192} {
		pts = append(pts, Crossing{Batch: batch, Steps: a + b/batch})
	}
	plain, err := fitCensoredHyperbola(pts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(plain.Bcrit()/16384-1) > 1e-6 {
		t.Fatalf("B_crit of exact points %v, want 16384", plain.Bcrit())
	}
	tests := []struct {
		name    string
		bound   Crossing // a 32Ki branch that stopped at Steps without reaching the target
		changed bool
	}{
		// The fit predicts 150 steps at 32Ki: a branch that ran 400 and missed says more; one
		// that ran 120 says nothing the fit does not already hold.
		{"contradicted", Crossing{Batch: 32768, Steps: 400}, true},
		{"respected", Crossing{Batch: 32768, Steps: 120}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := fitCensoredHyperbola(pts, []Crossing{tc.bound})
			if err != nil {
				t.Fatal(err)
			}
			moved := math.Abs(h.Bcrit()-plain.Bcrit()) > 1e-6*plain.Bcrit()
			if moved != tc.changed {
				t.Fatalf("B_crit %v (without the bound %v): moved = %v, want %v", h.Bcrit(), plain.Bcrit(), moved, tc.changed)
			}
			if tc.changed && !(h.Steps(tc.bound.Batch) > plain.Steps(tc.bound.Batch)) {
				t.Errorf("the refit puts the censored branch at %.0f steps, no nearer its bound %.0f than the plain fit's %.0f", h.Steps(tc.bound.Batch), tc.bound.Steps, plain.Steps(tc.bound.Batch))
			}
		})
	}
}
