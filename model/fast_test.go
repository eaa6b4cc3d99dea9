package model

import (
	"math"
	"testing"

	"cbs/compute/cpu"
)

func toFloat32(p64 *Params[float64]) *Params[float32] {
	p := NewParams[float32](p64.Config)
	for i, v := range p64.Data {
		p.Data[i] = float32(v)
	}
	return p
}

// TestFastBackendMatchesReference: the float32 fast backend gives the float64 reference's loss
// and gradient within float32 accuracy, and bit-identical results for 1 and 2 threads.
func TestFastBackendMatchesReference(t *testing.T) {
	for _, objective := range []string{AR, MDM} {
		c := tinyConfig(4, 2, false)
		c.HiddenSize, c.IntermediateSize = 32, 64
		p64 := perturbedParams(c, 21)
		b := randomBatch(c, objective, 3, 20, 4)
		ref := New(p64, cpu.Reference[float64]{})
		ref.ZeroGrad()
		want := ref.LossAndGrad(b, IsCausal(objective))
		var grads [][]float32
		for _, threads := range []int{1, 2} {
			m := New(toFloat32(p64), cpu.New(threads))
			m.ZeroGrad()
			got := m.LossAndGrad(b, IsCausal(objective))
			if math.Abs(got-want) > 1e-5*math.Abs(want) {
				t.Errorf("%s: loss %v, reference %v", objective, got, want)
			}
			var scale float64
			for _, g := range ref.Grad {
				scale = math.Max(scale, math.Abs(g))
			}
			for j, g := range m.Grad {
				if math.Abs(float64(g)-ref.Grad[j]) > 1e-4*scale {
					t.Fatalf("%s: gradient %d (%s): %v, reference %v", objective, j, tensorOf(p64, j), g, ref.Grad[j])
				}
			}
			grads = append(grads, append([]float32(nil), m.Grad...))
		}
		for j := range grads[0] {
			if grads[0][j] != grads[1][j] {
				t.Fatalf("%s: gradient %d differs between 1 and 2 threads: %v vs %v", objective, j, grads[0][j], grads[1][j])
			}
		}
	}
}

func tensorOf[T float32 | float64](p *Params[T], j int) string {
	for _, t := range p.Tensors {
		if j >= t.Offset && j < t.Offset+t.Size {
			return t.Name
		}
	}
	return "?"
}
