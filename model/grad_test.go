package model

import (
	"fmt"
	"math"
	"testing"

	"cbs/compute/cpu"
	"cbs/internal/rng"
)

func tinyConfig(heads, kvHeads int, tied bool) Config {
	return Config{
		ModelType: "qwen3", HiddenSize: 16, IntermediateSize: 24, NumLayers: 2,
		NumHeads: heads, NumKVHeads: kvHeads, HeadDim: 8, RMSNormEps: 1e-6, RopeTheta: 10000,
		VocabSize: 23, TieWordEmbeddings: tied, MaxPositionEmbeddings: 64, MaskTokenID: 22,
		Attention: Causal,
	}
}

// randomBatch draws tokens below the mask id, and for mdm a mask and p per sequence.
func randomBatch(c Config, objective string, B, L int, seed uint64) *Batch {
	s := rng.New(seed, "test-batch", 0)
	tokens := make([]int32, B*L)
	for i := range tokens {
		tokens[i] = int32(s.Intn(c.VocabSize - 1))
	}
	b := NewBatch(B, L)
	if objective == AR {
		b.SetAR(tokens, B)
		return b
	}
	masks, p := make([]bool, B*L), make([]float64, B)
	for i := range p {
		p[i] = 0.2 + 0.6*s.Float64()
		for j := 0; j < L; j++ {
			masks[i*L+j] = s.Float64() < p[i]
		}
		masks[i*L] = true // at least one prediction per sequence
	}
	if err := b.SetMDM(tokens, masks, p, c.MaskTokenID, B); err != nil {
		panic(err)
	}
	return b
}

// perturbedParams gives norm weights values away from 1 so that their gradients are exercised.
func perturbedParams(c Config, seed uint64) *Params[float64] {
	p := NewParams[float64](c)
	p.Init(seed, 0.3)
	s := rng.New(seed, "test-norms", 0)
	for i, t := range p.Tensors {
		if !t.Is2D() {
			for j := range p.View(i) {
				p.View(i)[j] = 1 + 0.3*s.NormFloat64()
			}
		}
	}
	return p
}

// TestModelGradient compares the hand-written backward pass of whole models with 5-point finite
// differences in float64, along a random direction and along the largest-gradient entry of
// every tensor.
func TestModelGradient(t *testing.T) {
	cases := []struct {
		heads, kv int
		tied      bool
		objective string
	}{
		{4, 2, false, AR}, {4, 2, false, MDM}, {4, 2, true, AR}, {4, 2, true, MDM},
		{2, 2, false, AR}, {4, 1, true, MDM},
	}
	const tol = 1e-6
	for _, tc := range cases {
		name := fmt.Sprintf("%s/heads%d-kv%d/tied=%v", tc.objective, tc.heads, tc.kv, tc.tied)
		t.Run(name, func(t *testing.T) {
			c := tinyConfig(tc.heads, tc.kv, tc.tied)
			p := perturbedParams(c, 7)
			m := New(p, cpu.Reference[float64]{})
			b := randomBatch(c, tc.objective, 2, 6, 3)
			causal := IsCausal(tc.objective)
			m.ZeroGrad()
			m.LossAndGrad(b, causal)
			dir := rng.New(11, "test-dir", 0)
			for i, tn := range p.Tensors {
				w, g := p.View(i), m.view(m.Grad, i)
				u := make([]float64, len(w))
				var un float64
				for j := range u {
					u[j] = dir.NormFloat64()
					un += u[j] * u[j]
				}
				big := 0
				for j := range g {
					if math.Abs(g[j]) > math.Abs(g[big]) {
						big = j
					}
				}
				e := make([]float64, len(w))
				e[big] = 1
				for k := range u {
					u[k] /= math.Sqrt(un)
				}
				for _, d := range [][]float64{u, e} {
					var analytic float64
					for j := range d {
						analytic += g[j] * d[j]
					}
					numeric := directional(func() float64 { return m.Loss(b, causal) }, w, d, 1e-3)
					err := math.Abs(numeric-analytic) / math.Max(math.Abs(analytic), 1e-8)
					if err > tol {
						t.Errorf("%s: analytic %.12g, numeric %.12g, relative error %.2g > %g", tn.Name, analytic, numeric, err, tol)
					}
				}
			}
		})
	}
}

// directional is the 5-point central difference of f along d at w (w is restored).
func directional(f func() float64, w, d []float64, h float64) float64 {
	w0 := append([]float64(nil), w...)
	at := func(k float64) float64 {
		for j := range w {
			w[j] = w0[j] + k*h*d[j]
		}
		return f()
	}
	f2, f1, fm1, fm2 := at(2), at(1), at(-1), at(-2)
	copy(w, w0)
	return (8*(f1-fm1) - (f2 - fm2)) / (12 * h)
}

// TestAccumulationEqualsBigBatch: the gradient summed over micro-batches equals the gradient of
// the whole batch in one pass.
func TestAccumulationEqualsBigBatch(t *testing.T) {
	for _, objective := range []string{AR, MDM} {
		c := tinyConfig(4, 2, false)
		p := perturbedParams(c, 5)
		big := randomBatch(c, objective, 4, 6, 9)
		m := New(p, cpu.Reference[float64]{})
		m.ZeroGrad()
		whole := m.LossAndGrad(big, IsCausal(objective))
		want := append([]float64(nil), m.Grad...)
		m.ZeroGrad()
		var parts float64
		for mb := 0; mb < 2; mb++ {
			half := &Batch{B: 2, L: 6,
				Inputs: big.Inputs[mb*12 : (mb+1)*12], Targets: big.Targets[mb*12 : (mb+1)*12],
				Weights: big.Weights[mb*12 : (mb+1)*12]}
			parts += m.LossAndGrad(half, IsCausal(objective))
		}
		if math.Abs(parts-whole) > 1e-12*math.Abs(whole) {
			t.Errorf("%s: loss over micro-batches %v, whole batch %v", objective, parts, whole)
		}
		for j := range want {
			if math.Abs(m.Grad[j]-want[j]) > 1e-12*(1+math.Abs(want[j])) {
				t.Fatalf("%s: gradient element %d: accumulated %v, whole batch %v", objective, j, m.Grad[j], want[j])
			}
		}
	}
}
