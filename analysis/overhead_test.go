package analysis_test

import (
	"math"
	"strings"
	"testing"

	"cbs/analysis"
)

// mcCandlish is a loss curve at batch b with E = E_min (1 + B/B_noise): the loss after T tokens
// is that of T / (1 + b/bNoise) noise-free tokens.
func mcCandlish(b, bNoise float64, marks []float64) []float64 {
	out := make([]float64, len(marks))
	for i, t := range marks {
		out[i] = 2 + 3*math.Pow(1+t/(1+b/bNoise)/65536, -0.5)
	}
	return out
}

func TestOverheadCBS(t *testing.T) {
	var marks []float64
	for t := 16384.0; t <= 4<<20; t += 16384 {
		marks = append(marks, t)
	}
	ladder := []float64{1024, 2048, 4096, 8192, 16384, 32768}
	curves := func(bNoise float64) (toks, losses [][]float64) {
		for _, b := range ladder {
			toks, losses = append(toks, marks), append(losses, mcCandlish(b, bNoise, marks))
		}
		return toks, losses
	}
	tests := []struct {
		name     string
		bNoise   float64
		ref      int
		tau      float64
		want     float64 // CBS, or the bound when censored
		censored analysis.Censoring
	}{
		{"bracketed", 16384, 0, 0.2, 0.2*16384 + 1.2*1024, analysis.NotCensored},
		{"wider tau", 16384, 0, 0.5, 0.5*16384 + 1.5*1024, analysis.NotCensored},
		{"reference mid-ladder", 16384, 1, 0.2, 0.2*16384 + 1.2*2048, analysis.NotCensored},
		{"beyond the ladder", 1 << 22, 0, 0.2, 32768, analysis.CensoredAbove},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			toks, losses := curves(tc.bNoise)
			o, err := analysis.OverheadCBS(ladder, toks, losses, tc.ref, tc.tau)
			if err != nil {
				t.Fatal(err)
			}
			got := o.CBS
			if tc.censored != analysis.NotCensored {
				got = o.Bound
			}
			if o.Censored != tc.censored || math.Abs(got/tc.want-1) > 0.02 {
				t.Errorf("%s (censored %s); want %.0f (%s) within 2%%", o.Statement(ladder), o.Censored, tc.want, tc.censored)
			}
		})
	}

	// A rung that never gets below the reference's first mark counts as failing, with no error.
	toks, losses := curves(16384)
	slow := make([]float64, len(marks))
	for i := range slow {
		slow[i] = losses[0][0] + 0.1
	}
	losses[5] = slow
	o, err := analysis.OverheadCBS(ladder, toks, losses, 0, 0.2)
	if err != nil || o.Censored != analysis.NotCensored || !math.IsInf(o.Overhead[5], 1) {
		t.Errorf("with a rung that never catches up: %v, overheads %v", err, o.Overhead)
	}
	// A reference that never improves on its first mark measures nothing.
	toks, losses = curves(16384)
	flat := make([]float64, len(marks))
	for i := range flat {
		flat[i] = 4
	}
	losses[0] = flat
	if _, err := analysis.OverheadCBS(ladder, toks, losses, 0, 0.2); err == nil || !strings.Contains(err.Error(), "never gets below") {
		t.Errorf("flat reference: err = %v", err)
	}
}
