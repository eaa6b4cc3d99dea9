package cpu

import (
	"fmt"
	"math"
	"testing"

	"cbs/compute"
	"cbs/internal/rng"
)

// Finite-difference checks of every reference backward pass in float64. Each op's output is
// reduced to a scalar f = sum(out * R) with a fixed random R, so the backward pass called with
// dout = R must return df/dinput; that is compared with 5-point central differences along a
// random direction of each input.

func rand64(n int, seed uint64, scale float64) []float64 {
	s := rng.New(seed, "grad-test", uint64(n))
	v := make([]float64, n)
	for i := range v {
		v[i] = scale * s.NormFloat64()
	}
	return v
}

func dot64(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// checkGrad compares the analytic gradient g of f at x with finite differences along a random
// direction; x is restored.
func checkGrad(t *testing.T, name string, f func() float64, x, g []float64) {
	t.Helper()
	d := rand64(len(x), 99, 1)
	x0 := append([]float64(nil), x...)
	const h = 1e-4
	at := func(k float64) float64 {
		for i := range x {
			x[i] = x0[i] + k*h*d[i]
		}
		return f()
	}
	num := (8*(at(1)-at(-1)) - (at(2) - at(-2))) / (12 * h)
	copy(x, x0)
	ana := dot64(g, d)
	if err := math.Abs(num-ana) / math.Max(math.Abs(ana), 1e-10); err > 1e-6 {
		t.Errorf("%s: analytic %.12g, numeric %.12g, relative error %.2g", name, ana, num, err)
	}
}

func TestGradRMSNorm(t *testing.T) {
	const rows, d = 5, 12
	x, w, R := rand64(rows*d, 1, 1.5), rand64(d, 2, 1), rand64(rows*d, 3, 1)
	for i := range w {
		w[i] += 1
	}
	out, rstd := make([]float64, rows*d), make([]float64, rows)
	f := func() float64 { RefRMSNorm(out, rstd, x, w, d, 1e-6); return dot64(out, R) }
	f()
	dx, dw := make([]float64, rows*d), make([]float64, d)
	RefRMSNormBackward(dx, dw, R, x, w, rstd, d, false)
	checkGrad(t, "rmsnorm dx", f, x, dx)
	checkGrad(t, "rmsnorm dw", f, w, dw)
}

func TestGradRoPE(t *testing.T) {
	const L, heads, hd = 6, 2, 8
	cos, sin := compute.RoPETables[float64](L, hd, 10000)
	x, R := rand64(2*L*heads*hd, 4, 1), rand64(2*L*heads*hd, 5, 1)
	y := make([]float64, len(x))
	f := func() float64 { copy(y, x); RefRoPE(y, cos, sin, L, heads, hd, false); return dot64(y, R) }
	g := append([]float64(nil), R...)
	RefRoPE(g, cos, sin, L, heads, hd, true) // the backward pass is the inverse rotation
	checkGrad(t, "rope", f, x, g)
}

func TestGradAttention(t *testing.T) {
	const B, L, hd = 2, 5, 4
	for _, tc := range []struct {
		H, KV  int
		causal bool
	}{{4, 2, true}, {4, 2, false}, {2, 2, true}, {4, 1, false}} {
		t.Run(fmt.Sprintf("H%d-KV%d-causal=%v", tc.H, tc.KV, tc.causal), func(t *testing.T) {
			H, KV := tc.H, tc.KV
			q, k, v := rand64(B*L*H*hd, 6, 1), rand64(B*L*KV*hd, 7, 1), rand64(B*L*KV*hd, 8, 1)
			R := rand64(B*L*H*hd, 9, 1)
			o, probs := make([]float64, len(q)), make([]float64, B*H*L*L)
			f := func() float64 { RefAttention(o, probs, q, k, v, B, L, H, KV, hd, tc.causal); return dot64(o, R) }
			f()
			dq, dk, dv := make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
			RefAttentionBackward(dq, dk, dv, R, probs, q, k, v, B, L, H, KV, hd, tc.causal)
			checkGrad(t, "dq", f, q, dq)
			checkGrad(t, "dk", f, k, dk)
			checkGrad(t, "dv", f, v, dv)
		})
	}
}

func TestGradSwiGLU(t *testing.T) {
	n := 40
	g, u, R := rand64(n, 10, 2), rand64(n, 11, 1), rand64(n, 12, 1)
	out := make([]float64, n)
	f := func() float64 { RefSwiGLU(out, g, u); return dot64(out, R) }
	dg, du := make([]float64, n), make([]float64, n)
	RefSwiGLUBackward(dg, du, R, g, u)
	checkGrad(t, "dgate", f, g, dg)
	checkGrad(t, "dup", f, u, du)
}

func TestGradCrossEntropy(t *testing.T) {
	const rows, V = 6, 9
	x := rand64(rows*V, 13, 2)
	targets := []int32{0, 3, 8, 1, 1, 5}
	weights := []float64{0.5, 0, 1, 2, 0.25, 1}
	f := func() float64 {
		y := append([]float64(nil), x...)
		return RefCrossEntropy(y, targets, weights, V, false)
	}
	g := append([]float64(nil), x...)
	RefCrossEntropy(g, targets, weights, V, true)
	checkGrad(t, "dlogits", f, x, g)
}

func TestGradEmbeddingAndGemm(t *testing.T) {
	const V, d = 7, 5
	ids := []int32{3, 0, 3, 6}
	table, R := rand64(V*d, 14, 1), rand64(len(ids)*d, 15, 1)
	out := make([]float64, len(ids)*d)
	f := func() float64 { RefEmbedding(out, table, ids, d); return dot64(out, R) }
	dt := make([]float64, V*d)
	RefEmbeddingBackward(dt, R, ids, d)
	checkGrad(t, "embedding", f, table, dt)

	// Y = X W^T: dX = dY W, dW = dY^T X, the products the model's backward pass uses.
	const n, in, outF = 4, 6, 3
	X, W, RY := rand64(n*in, 16, 1), rand64(outF*in, 17, 1), rand64(n*outF, 18, 1)
	Y := make([]float64, n*outF)
	fy := func() float64 { RefGemm(false, true, n, outF, in, 1, X, in, W, in, 0, Y, outF); return dot64(Y, RY) }
	dX, dW := make([]float64, n*in), make([]float64, outF*in)
	RefGemm(false, false, n, in, outF, 1, RY, outF, W, in, 0, dX, in)
	RefGemm(true, false, outF, in, n, 1, RY, outF, X, in, 0, dW, in)
	checkGrad(t, "linear dX", fy, X, dX)
	checkGrad(t, "linear dW", fy, W, dW)
}
