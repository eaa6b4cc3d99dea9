package cpu

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"cbs/compute"
	"cbs/internal/rng"
)

// denseStrides are the row strides of op(A) (m x k) and op(B) (k x n) stored without padding.
func denseStrides(ta, tb bool, m, n, k int) (lda, ldb int) {
	lda, ldb = k, n
	if ta {
		lda = m
	}
	if tb {
		ldb = k
	}
	return lda, ldb
}

func randVec(n int, seed uint64, scale float64) []float32 {
	s := rng.New(seed, "cpu-test", uint64(n))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(scale * s.NormFloat64())
	}
	return v
}

// closeTo compares with a tolerance relative to the largest magnitude in want.
func closeTo(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	var scale float64
	for _, w := range want {
		scale = math.Max(scale, math.Abs(float64(w)))
	}
	for i := range want {
		if d := math.Abs(float64(got[i]) - float64(want[i])); d > tol*math.Max(scale, 1e-30) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %v, reference %v (tolerance %g relative to %g)", name, i, got[i], want[i], tol, scale)
		}
	}
}

// sameBits fails unless got and want hold the same float32 bit patterns.
func sameBits(t *testing.T, name string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v (%#x), reference %v (%#x)", name, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// TestFastMatchesReference runs every operation of the fast backend against the reference, at
// 1 and 3 threads (the fast results must also be identical across thread counts).
func TestFastMatchesReference(t *testing.T) {
	ref := Reference[float32]{}
	for _, threads := range []int{1, 3} {
		fast := New(threads)
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) { checkOps(t, fast, ref) })
	}
}

func checkOps(t *testing.T, fast compute.Backend[float32], ref compute.Backend[float32]) {
	const tol = 2e-6
	t.Run("gemm", func(t *testing.T) {
		for _, tc := range []struct {
			ta, tb  bool
			m, n, k int
		}{
			{false, false, 300, 7, 5}, {false, true, 9, 600, 33}, {true, false, 513, 64, 70}, {true, true, 20, 21, 22},
			{true, false, 64, 48, 2500}, {false, true, 100, 256, 2049}, // inner dimension split (kParts)
		} {
			lda, ldb := denseStrides(tc.ta, tc.tb, tc.m, tc.n, tc.k)
			a, b := randVec(tc.m*tc.k, 1, 1), randVec(tc.k*tc.n, 2, 1)
			c1, c2 := randVec(tc.m*tc.n, 3, 1), randVec(tc.m*tc.n, 3, 1)
			fast.Gemm(tc.ta, tc.tb, tc.m, tc.n, tc.k, 0.5, a, lda, b, ldb, 1, c1, tc.n)
			ref.Gemm(tc.ta, tc.tb, tc.m, tc.n, tc.k, 0.5, a, lda, b, ldb, 1, c2, tc.n)
			closeTo(t, fmt.Sprintf("gemm%+v", tc), c1, c2, 1e-5)
		}
	})
	t.Run("rmsnorm", func(t *testing.T) {
		const rows, d = 150, 24
		x, w, dy := randVec(rows*d, 4, 2), randVec(d, 5, 1), randVec(rows*d, 6, 1)
		o1, o2, r1, r2 := make([]float32, rows*d), make([]float32, rows*d), make([]float32, rows), make([]float32, rows)
		fast.RMSNorm(o1, r1, x, w, d, 1e-6)
		ref.RMSNorm(o2, r2, x, w, d, 1e-6)
		closeTo(t, "out", o1, o2, tol)
		dx1, dx2 := randVec(rows*d, 7, 1), randVec(rows*d, 7, 1)
		dw1, dw2 := make([]float32, d), make([]float32, d)
		fast.RMSNormBackward(dx1, dw1, dy, x, w, r2, d, true)
		ref.RMSNormBackward(dx2, dw2, dy, x, w, r2, d, true)
		closeTo(t, "dx", dx1, dx2, tol)
		closeTo(t, "dw", dw1, dw2, 1e-5)
	})
	t.Run("rope", func(t *testing.T) {
		const L, heads, hd = 10, 3, 8
		cos, sin := compute.RoPETables[float32](L, hd, 10000)
		for _, inv := range []bool{false, true} {
			x1 := randVec(2*L*heads*hd, 8, 1)
			x2 := append([]float32(nil), x1...)
			fast.RoPE(x1, cos, sin, L, heads, hd, inv)
			ref.RoPE(x2, cos, sin, L, heads, hd, inv)
			closeTo(t, "rope", x1, x2, tol)
		}
	})
	t.Run("attention", func(t *testing.T) {
		// L = 150 and 129 span several row blocks, the last one partial; 64 is one whole block.
		for _, sz := range []struct{ B, L, H, KV, hd int }{{2, 7, 4, 2, 8}, {1, 150, 4, 2, 16}, {1, 64, 2, 2, 8}, {2, 129, 2, 1, 8}} {
			checkAttention(t, fast, ref, sz.B, sz.L, sz.H, sz.KV, sz.hd)
		}
	})
	t.Run("swiglu", func(t *testing.T) {
		n := 40000
		g, u, d := randVec(n, 13, 3), randVec(n, 14, 1), randVec(n, 15, 1)
		o1, o2 := make([]float32, n), make([]float32, n)
		fast.SwiGLU(o1, g, u)
		ref.SwiGLU(o2, g, u)
		closeTo(t, "out", o1, o2, tol)
		dg1, du1, dg2, du2 := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
		fast.SwiGLUBackward(dg1, du1, d, g, u)
		ref.SwiGLUBackward(dg2, du2, d, g, u)
		closeTo(t, "dgate", dg1, dg2, tol)
		closeTo(t, "dup", du1, du2, tol)
	})
	t.Run("crossentropy", func(t *testing.T) {
		const rows, V = 130, 50
		x := randVec(rows*V, 16, 3)
		targets, weights := make([]int32, rows), make([]float32, rows)
		s := rng.New(1, "ce", 0)
		for i := range targets {
			targets[i] = int32(s.Intn(V))
			if i%5 != 0 {
				weights[i] = float32(s.Float64())
			}
		}
		x1, x2 := append([]float32(nil), x...), append([]float32(nil), x...)
		l1 := fast.CrossEntropy(x1, targets, weights, V, true)
		l2 := ref.CrossEntropy(x2, targets, weights, V, true)
		if math.Abs(l1-l2) > 1e-6*math.Abs(l2) {
			t.Errorf("loss %v, reference %v", l1, l2)
		}
		closeTo(t, "dlogits", x1, x2, tol)
	})
	t.Run("embedding", func(t *testing.T) {
		const V, d, n = 11, 70, 40
		table, dout := randVec(V*d, 17, 1), randVec(n*d, 18, 1)
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = int32((i * 7) % V)
		}
		o1, o2 := make([]float32, n*d), make([]float32, n*d)
		fast.Embedding(o1, table, ids, d)
		ref.Embedding(o2, table, ids, d)
		closeTo(t, "out", o1, o2, 0)
		d1, d2 := randVec(V*d, 19, 1), randVec(V*d, 19, 1)
		fast.EmbeddingBackward(d1, dout, ids, d)
		ref.EmbeddingBackward(d2, dout, ids, d)
		closeTo(t, "dtable", d1, d2, 0)
	})
	t.Run("adamw", func(t *testing.T) {
		// Not a multiple of the vector width, so the tail runs too; the vector kernel must
		// match the reference bit for bit, subnormals and extremes included.
		n := 50003
		w1, g, m1, v1 := randVec(n, 20, 1), randVec(n, 21, 1), randVec(n, 22, 0.1), randVec(n, 23, 0.1)
		for i := range v1 {
			v1[i] *= v1[i]
		}
		for i, x := range []float32{0, float32(math.Copysign(0, -1)), 1e-40, -3e-39, 1e30, -1e-30, math.MaxFloat32 / 4, 1e-45} {
			g[100+i], w1[200+i], m1[300+i] = x, x, x
			v1[400+i] = float32(math.Abs(float64(x)))
		}
		w2, m2, v2 := append([]float32(nil), w1...), append([]float32(nil), m1...), append([]float32(nil), v1...)
		p := compute.AdamParams{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: 3}
		for range 3 {
			fast.AdamW(w1, g, m1, v1, p)
			ref.AdamW(w2, g, m2, v2, p)
			p.Step++
		}
		sameBits(t, "w", w1, w2)
		sameBits(t, "m", m1, m2)
		sameBits(t, "v", v1, v2)
		if s1, s2 := fast.SumSquares(g), ref.SumSquares(g); math.Abs(s1-s2) > 1e-12*s2 {
			t.Errorf("SumSquares %v, reference %v", s1, s2)
		}
	})
}

// checkAttention compares fast's attention with the reference's, forward and backward, each
// backward pass from the state its own forward pass saved (fast keeps a log-sum-exp per row,
// the reference the weights).
func checkAttention(t *testing.T, fast, ref compute.Backend[float32], B, L, H, KV, hd int) {
	const tol = 2e-6
	q, k, v := randVec(B*L*H*hd, 9, 1), randVec(B*L*KV*hd, 10, 1), randVec(B*L*KV*hd, 11, 1)
	do := randVec(B*L*H*hd, 12, 1)
	if n := compute.AttentionStateLen(fast, B, H, L); n != B*H*L {
		t.Fatalf("attention state %d elements, want %d (one per query row)", n, B*H*L)
	}
	for _, causal := range []bool{false, true} {
		o1, o2 := make([]float32, len(q)), make([]float32, len(q))
		s1, p2 := make([]float32, compute.AttentionStateLen(fast, B, H, L)), make([]float32, B*H*L*L)
		// Outputs start as NaN: every element must be written, as buffers are reused across steps.
		nan := float32(math.NaN())
		fill := func(xs ...[]float32) {
			for _, x := range xs {
				for i := range x {
					x[i] = nan
				}
			}
		}
		fill(o1, s1)
		fast.Attention(o1, s1, q, k, v, B, L, H, KV, hd, causal)
		ref.Attention(o2, p2, q, k, v, B, L, H, KV, hd, causal)
		closeTo(t, "o", o1, o2, tol)
		checkLSE(t, s1, p2, q, k, B, L, H, KV, hd, causal)
		dq1, dk1, dv1 := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
		dq2, dk2, dv2 := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
		fill(dq1, dk1, dv1)
		fast.AttentionBackward(dq1, dk1, dv1, do, s1, q, k, v, B, L, H, KV, hd, causal)
		ref.AttentionBackward(dq2, dk2, dv2, do, p2, q, k, v, B, L, H, KV, hd, causal)
		closeTo(t, "dq", dq1, dq2, 1e-5)
		closeTo(t, "dk", dk1, dk2, 1e-5)
		closeTo(t, "dv", dv1, dv2, 1e-5)
	}
}

// checkLSE checks each saved log-sum-exp against the reference weights: the weight of key 0,
// which every query sees, is exp(score_0 - lse).
func checkLSE(t *testing.T, lse, probs, q, k []float32, B, L, H, KV, hd int, causal bool) {
	t.Helper()
	g, scale := H/KV, 1/math.Sqrt(float64(hd))
	for b := range B {
		for h := range H {
			for i := range L {
				var s float64
				for e := range hd {
					s += float64(q[(b*L+i)*H*hd+h*hd+e]) * float64(k[(b*L)*KV*hd+(h/g)*hd+e])
				}
				got := math.Exp(s*scale - float64(lse[(b*H+h)*L+i]))
				want := float64(probs[((b*H+h)*L+i)*L])
				if math.Abs(got-want) > 1e-5*math.Max(1, want) {
					t.Fatalf("causal=%v b%d h%d row %d: exp(score - lse) = %g, reference weight %g", causal, b, h, i, got, want)
				}
			}
		}
	}
}

// TestGemmSplitK: a product cut along its inner dimension (kParts) gives the same bits at any
// thread count, matches the reference, and with beta 0 never reads C.
func TestGemmSplitK(t *testing.T) {
	ref := Reference[float32]{}
	for _, tc := range []struct {
		ta, tb  bool
		m, n, k int
		beta    float32
	}{
		{true, false, 256, 256, 4096, 1}, {false, false, 70, 3, 2048, 0}, {false, true, 5, 200, 3001, 0.5},
		{true, true, 129, 64, 2050, 0}, {true, false, 257, 64, 4096, 1}, // 257 rows: blocks, not ranges
	} {
		t.Run(fmt.Sprintf("%+v", tc), func(t *testing.T) {
			wantParts := 4
			if max(tc.m, tc.n) > gemmBlock {
				wantParts = 1
			}
			if got := kParts(tc.m, tc.n, tc.k); got != wantParts {
				t.Fatalf("kParts = %d, want %d", got, wantParts)
			}
			lda, ldb := denseStrides(tc.ta, tc.tb, tc.m, tc.n, tc.k)
			a, b := randVec(tc.m*tc.k, 1, 1), randVec(tc.k*tc.n, 2, 1)
			c0 := randVec(tc.m*tc.n, 3, 1)
			if tc.beta == 0 {
				for i := range c0 {
					c0[i] = float32(math.NaN())
				}
			}
			want := append([]float32(nil), c0...)
			ref.Gemm(tc.ta, tc.tb, tc.m, tc.n, tc.k, 0.5, a, lda, b, ldb, tc.beta, want, tc.n)
			var first []float32
			for _, threads := range []int{1, 2, 3} {
				got := append([]float32(nil), c0...)
				New(threads).Gemm(tc.ta, tc.tb, tc.m, tc.n, tc.k, 0.5, a, lda, b, ldb, tc.beta, got, tc.n)
				closeTo(t, fmt.Sprintf("threads=%d", threads), got, want, 1e-5)
				if first == nil {
					first = got
				} else if !slices.Equal(got, first) {
					t.Fatalf("threads=%d: bits differ from threads=1", threads)
				}
			}
		})
	}
}
