package cuda

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"cbs/compute"
	"cbs/compute/cpu"
	"cbs/internal/rng"
)

// The tests in this file need a GPU with its driver, NVRTC and cuBLAS; they skip without one.
// Tolerances are relative to the largest magnitude of the reference output:
//   fp32 kernels (norms, RoPE, softmax, SwiGLU, cross-entropy)    1e-5
//   matrix products, fp32 inputs                                   1e-5
//   matrix products, tf32 inputs (10-bit mantissa)                 5e-3
//   matrix products and attention, bf16 inputs (8-bit mantissa)    2e-2
//   embedding forward and backward, Add, Scale                     exact

var shared struct {
	once sync.Once
	b    *Backend
	err  error
}

// gpu returns the process's Backend set to precision p, or skips the test.
func gpu(t testing.TB, p Precision) *Backend {
	t.Helper()
	shared.once.Do(func() { shared.b, shared.err = Open(Options{Ordinal: 0, Precision: p}) })
	if shared.err != nil {
		t.Skipf("no usable GPU (%v)", shared.err)
	}
	shared.b.SetPrecision(p)
	return shared.b
}

func randVec(n int, seed uint64, scale float64) []float32 {
	s := rng.New(seed, "cuda-test", uint64(n))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(scale * s.NormFloat64())
	}
	return v
}

// up copies host values to a new device buffer, freed when the test ends.
func up(t testing.TB, b *Backend, x []float32) []float32 {
	t.Helper()
	d, err := b.Alloc(len(x))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Free(d) })
	b.Upload(d, x)
	return d
}

func down(b *Backend, d []float32) []float32 {
	h := make([]float32, len(d))
	b.Download(h, d)
	return h
}

func closeTo(t testing.TB, name string, got, want []float32, tol float64) {
	t.Helper()
	var scale float64
	for _, w := range want {
		scale = math.Max(scale, math.Abs(float64(w)))
	}
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if d > tol*math.Max(scale, 1e-30) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %v, reference %v (tolerance %g relative to %g)", name, i, got[i], want[i], tol, scale)
		}
	}
}

func TestOpen(t *testing.T) {
	b := gpu(t, BF16)
	i := b.Info()
	t.Logf("%s\ndriver %s\nnvrtc %s\ncublas %s\nmodule %s", b.Name(), i.DriverPath, i.NVRTCPath, i.CUBLASPath, i.Module)
	if i.Device.SM == 0 || i.DriverVersion == "" {
		t.Fatalf("incomplete info %+v", i)
	}
}

func TestHostSliceRejected(t *testing.T) {
	b := gpu(t, FP32)
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), "not device memory") {
			t.Fatalf("Scale on a host slice: recovered %v, want a panic naming device memory", r)
		}
	}()
	b.Scale(make([]float32, 8), 2)
}

func TestGemmParity(t *testing.T) {
	ref := cpu.Reference[float32]{}
	for _, pc := range []struct {
		p   Precision
		tol float64
	}{{FP32, 1e-5}, {TF32, 5e-3}, {BF16, 2e-2}} {
		b := gpu(t, pc.p)
		for _, tc := range []struct {
			ta, tb  bool
			m, n, k int
		}{{false, false, 300, 7, 5}, {false, true, 9, 600, 33}, {true, false, 513, 64, 70}, {true, true, 20, 21, 22}, {false, true, 256, 768, 768}} {
			lda, ldb := tc.k, tc.n
			if tc.ta {
				lda = tc.m
			}
			if tc.tb {
				ldb = tc.k
			}
			a, bm := randVec(tc.m*tc.k, 1, 1), randVec(tc.k*tc.n, 2, 1)
			c := randVec(tc.m*tc.n, 3, 1)
			want := append([]float32(nil), c...)
			ref.Gemm(tc.ta, tc.tb, tc.m, tc.n, tc.k, 0.5, a, lda, bm, ldb, 1, want, tc.n)
			dc := up(t, b, c)
			b.Gemm(tc.ta, tc.tb, tc.m, tc.n, tc.k, 0.5, up(t, b, a), lda, up(t, b, bm), ldb, 1, dc, tc.n)
			closeTo(t, fmt.Sprintf("%s gemm%+v", pc.p, tc), down(b, dc), want, pc.tol)
		}
		// A sub-block: C's columns 3..3+n of a wider matrix, beta 0.
		m, n, k, ldc := 17, 5, 9, 12
		a, bm := randVec(m*k, 4, 1), randVec(n*k, 5, 1)
		c := randVec(m*ldc, 6, 1)
		want := append([]float32(nil), c...)
		ref.Gemm(false, true, m, n, k, 1, a, k, bm, k, 0, want[3:], ldc)
		dc := up(t, b, c)
		b.Gemm(false, true, m, n, k, 1, up(t, b, a), k, up(t, b, bm), k, 0, dc[3:], ldc)
		closeTo(t, pc.p.String()+" gemm sub-block", down(b, dc), want, pc.tol)
	}
}

func TestOpsParity(t *testing.T) {
	b := gpu(t, FP32)
	ref := cpu.Reference[float32]{}
	const tol = 1e-5
	t.Run("rmsnorm", func(t *testing.T) {
		for _, sz := range []struct{ rows, d int }{{150, 24}, {4099, 64}, {33, 768}} {
			rows, d := sz.rows, sz.d
			x, w, dy := randVec(rows*d, 4, 2), randVec(d, 5, 1), randVec(rows*d, 6, 1)
			o, r := make([]float32, rows*d), make([]float32, rows)
			ref.RMSNorm(o, r, x, w, d, 1e-6)
			do, dr := up(t, b, make([]float32, rows*d)), up(t, b, make([]float32, rows))
			dx, dw := up(t, b, x), up(t, b, w)
			b.RMSNorm(do, dr, dx, dw, d, 1e-6)
			closeTo(t, "out", down(b, do), o, tol)
			closeTo(t, "rstd", down(b, dr), r, tol)
			for _, acc := range []bool{false, true} {
				gx, gw := randVec(rows*d, 7, 1), randVec(d, 8, 1)
				wantX, wantW := append([]float32(nil), gx...), append([]float32(nil), gw...)
				ref.RMSNormBackward(wantX, wantW, dy, x, w, r, d, acc)
				dgx, dgw := up(t, b, gx), up(t, b, gw)
				b.RMSNormBackward(dgx, dgw, up(t, b, dy), dx, dw, up(t, b, r), d, acc)
				closeTo(t, fmt.Sprintf("dx d=%d acc=%v", d, acc), down(b, dgx), wantX, tol)
				closeTo(t, fmt.Sprintf("dw d=%d acc=%v", d, acc), down(b, dgw), wantW, tol)
			}
		}
	})
	t.Run("rope", func(t *testing.T) {
		const L, heads, hd = 10, 3, 8
		cos, sin := compute.RoPETables[float32](L, hd, 10000)
		for _, inv := range []bool{false, true} {
			x := randVec(2*L*heads*hd, 8, 1)
			want := append([]float32(nil), x...)
			ref.RoPE(want, cos, sin, L, heads, hd, inv)
			dx := up(t, b, x)
			b.RoPE(dx, up(t, b, cos), up(t, b, sin), L, heads, hd, inv)
			closeTo(t, "rope", down(b, dx), want, tol)
		}
	})
	t.Run("swiglu", func(t *testing.T) {
		n := 40000
		g, u, d := randVec(n, 13, 3), randVec(n, 14, 1), randVec(n, 15, 1)
		o := make([]float32, n)
		ref.SwiGLU(o, g, u)
		dg, du := up(t, b, g), up(t, b, u)
		do := up(t, b, make([]float32, n))
		b.SwiGLU(do, dg, du)
		closeTo(t, "out", down(b, do), o, tol)
		wg, wu := make([]float32, n), make([]float32, n)
		ref.SwiGLUBackward(wg, wu, d, g, u)
		gg, gu := up(t, b, make([]float32, n)), up(t, b, make([]float32, n))
		b.SwiGLUBackward(gg, gu, up(t, b, d), dg, du)
		closeTo(t, "dgate", down(b, gg), wg, tol)
		closeTo(t, "dup", down(b, gu), wu, tol)
	})
	t.Run("crossentropy", func(t *testing.T) {
		for _, V := range []int{50, 5000} {
			rows := 130
			x := randVec(rows*V, 16, 3)
			targets, weights := make([]int32, rows), make([]float32, rows)
			s := rng.New(1, "ce", 0)
			for i := range targets {
				targets[i] = int32(s.Intn(V))
				if i%5 != 0 {
					weights[i] = float32(s.Float64())
				}
			}
			for _, grad := range []bool{false, true} {
				want := append([]float32(nil), x...)
				lw := ref.CrossEntropy(want, targets, weights, V, grad)
				dx := up(t, b, x)
				lg := b.CrossEntropy(dx, targets, up(t, b, weights), V, grad)
				if math.Abs(lg-lw) > 1e-6*math.Abs(lw) {
					t.Errorf("V=%d grad=%v: loss %v, reference %v", V, grad, lg, lw)
				}
				closeTo(t, fmt.Sprintf("V=%d grad=%v logits", V, grad), down(b, dx), want, tol)
			}
		}
	})
	t.Run("embedding", func(t *testing.T) {
		const V, d, n = 11, 70, 40
		table, dout := randVec(V*d, 17, 1), randVec(n*d, 18, 1)
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = int32((i * 7) % V)
		}
		o := make([]float32, n*d)
		ref.Embedding(o, table, ids, d)
		do := up(t, b, make([]float32, n*d))
		b.Embedding(do, up(t, b, table), ids, d)
		closeTo(t, "out", down(b, do), o, 0)
		dt := randVec(V*d, 19, 1)
		want := append([]float32(nil), dt...)
		ref.EmbeddingBackward(want, dout, ids, d)
		ddt := up(t, b, dt)
		b.EmbeddingBackward(ddt, up(t, b, dout), ids, d)
		closeTo(t, "dtable", down(b, ddt), want, 0)
	})
	t.Run("add-scale-sumsquares", func(t *testing.T) {
		n := 100003
		x, y := randVec(n, 20, 1), randVec(n, 21, 1)
		want := make([]float32, n)
		ref.Add(want, x, y)
		dx, dy := up(t, b, x), up(t, b, y)
		b.Add(dx, dx, dy) // aliasing dst and a
		closeTo(t, "add", down(b, dx), want, 0)
		ref.Scale(want, 0.25)
		b.Scale(dx, 0.25)
		closeTo(t, "scale", down(b, dx), want, 0)
		ss, rs := b.SumSquares(dy), ref.SumSquares(y)
		if math.Abs(ss-rs) > 1e-12*rs {
			t.Errorf("SumSquares %v, reference %v", ss, rs)
		}
		if again := b.SumSquares(dy); again != ss {
			t.Errorf("SumSquares not reproducible: %v then %v", ss, again)
		}
		// SumSquaresEach (GradNorm's one wait per step) must match SumSquares bit for bit,
		// whatever the sizes around it (each has its own grid).
		xs := [][]float32{dx, dy[:0], dy, dx[:7], dy[5:70000]}
		each := make([]float64, len(xs))
		b.SumSquaresEach(each, xs)
		for i, x := range xs {
			if want := b.SumSquares(x); each[i] != want {
				t.Errorf("SumSquaresEach[%d] (%d floats) = %v, SumSquares %v", i, len(x), each[i], want)
			}
		}
	})
	t.Run("adamw", func(t *testing.T) {
		n := 50000
		w, g, m, v := randVec(n, 20, 1), randVec(n, 21, 1), randVec(n, 22, 0.1), randVec(n, 23, 0.1)
		for i := range v {
			v[i] *= v[i]
		}
		dw, dg, dm, dv := up(t, b, w), up(t, b, g), up(t, b, m), up(t, b, v)
		for step := 1; step <= 3; step++ {
			p := compute.AdamParams{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: step}
			ref.AdamW(w, g, m, v, p)
			b.AdamW(dw, dg, dm, dv, p)
		}
		closeTo(t, "w", down(b, dw), w, 1e-6)
		closeTo(t, "m", down(b, dm), m, 1e-6)
		closeTo(t, "v", down(b, dv), v, 1e-6)
	})
}

func TestAttentionParity(t *testing.T) {
	ref := cpu.Reference[float32]{}
	for _, pc := range []struct {
		p   Precision
		tol float64
	}{{FP32, 1e-5}, {BF16, 2e-2}} {
		b := gpu(t, pc.p)
		for _, sz := range []struct{ B, L, H, KV, hd int }{{2, 7, 4, 2, 8}, {1, 150, 4, 1, 16}, {2, 64, 6, 6, 32}} {
			for _, causal := range []bool{true, false} {
				name := fmt.Sprintf("%s %+v causal=%v", pc.p, sz, causal)
				checkAttention(t, b, ref, sz.B, sz.L, sz.H, sz.KV, sz.hd, causal, pc.tol, name)
			}
		}
	}
}

func checkAttention(t *testing.T, b *Backend, ref compute.Backend[float32], B, L, H, KV, hd int, causal bool, tol float64, name string) {
	t.Helper()
	N, qd, kd := B*L, H*hd, KV*hd
	q, k, v, do := randVec(N*qd, 9, 1), randVec(N*kd, 10, 1), randVec(N*kd, 11, 1), randVec(N*qd, 12, 1)
	o, probs := make([]float32, N*qd), make([]float32, B*H*L*L)
	ref.Attention(o, probs, q, k, v, B, L, H, KV, hd, causal)
	dq, dk, dv := make([]float32, N*qd), make([]float32, N*kd), make([]float32, N*kd)
	ref.AttentionBackward(dq, dk, dv, do, probs, q, k, v, B, L, H, KV, hd, causal)

	gq, gk, gv, gdo := up(t, b, q), up(t, b, k), up(t, b, v), up(t, b, do)
	// Garbage in the outputs must not leak through (causal rows are written in full).
	go_, gp := up(t, b, randVec(N*qd, 30, 1)), up(t, b, randVec(B*H*L*L, 31, 1))
	b.Attention(go_, gp, gq, gk, gv, B, L, H, KV, hd, causal)
	closeTo(t, name+" o", down(b, go_), o, tol)
	closeTo(t, name+" probs", down(b, gp), probs, tol)
	gdq, gdk, gdv := up(t, b, randVec(N*qd, 32, 1)), up(t, b, randVec(N*kd, 33, 1)), up(t, b, randVec(N*kd, 34, 1))
	b.AttentionBackward(gdq, gdk, gdv, gdo, gp, gq, gk, gv, B, L, H, KV, hd, causal)
	first := [][]float32{down(b, gdq), down(b, gdk), down(b, gdv)}
	closeTo(t, name+" dq", first[0], dq, tol)
	closeTo(t, name+" dk", first[1], dk, tol)
	closeTo(t, name+" dv", first[2], dv, tol)
	// Reproducible to the bit.
	b.AttentionBackward(gdq, gdk, gdv, gdo, gp, gq, gk, gv, B, L, H, KV, hd, causal)
	for i, x := range [][]float32{gdq, gdk, gdv} {
		again := down(b, x)
		for j := range again {
			if again[j] != first[i][j] {
				t.Fatalf("%s: backward output %d element %d differs between runs: %v vs %v", name, i, j, first[i][j], again[j])
			}
		}
	}
}
