package cpu

import (
	"fmt"
	"math"
	"testing"

	"cbs/compute"
)

// withSIMD runs f with the vector kernels on and off, and returns both results.
func withSIMD[R any](t *testing.T, f func() R) (vec, scalar R) {
	t.Helper()
	if !hasAVX2FMA() {
		t.Skip("no AVX2+FMA on this CPU")
	}
	old := useSIMD
	defer func() { useSIMD = old }()
	useSIMD = true
	vec = f()
	useSIMD = false
	scalar = f()
	return vec, scalar
}

func near(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func checkSlices(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	for i := range want {
		if !near(float64(got[i]), float64(want[i]), tol) && !(math.IsInf(float64(got[i]), 1) && math.IsInf(float64(want[i]), 1)) {
			t.Fatalf("%s[%d] = %v (vector), %v (Go)", name, i, got[i], want[i])
		}
	}
}

var simdLengths = []int{1, 7, 8, 9, 15, 16, 17, 31, 64, 100, 256, 1027}

// TestSIMDKernels checks each assembly kernel against its Go loop, including the tails.
func TestSIMDKernels(t *testing.T) {
	type out struct {
		a, b []float32
		s    float32
	}
	for _, n := range simdLengths {
		x, y, z := randVec(n, 101, 3), randVec(n, 102, 1), randVec(n, 103, 1)
		cp := func(v []float32) []float32 { return append([]float32(nil), v...) }
		cases := map[string]func() out{
			"expSubSum": func() out { d := make([]float32, n); s := expSubSum(d, x, 0.5); return out{a: d, s: s} },
			"expScaleSubSum": func() out {
				d := make([]float32, n)
				s := expScaleSubSum(d, x, 0.125, 0.5)
				return out{a: d, s: s}
			},
			"maxOf":    func() out { return out{s: maxOf(x)} },
			"scale":    func() out { d := cp(x); scale(d, -1.5); return out{a: d} },
			"dot":      func() out { return out{s: dot(x, y)} },
			"mulScale": func() out { d := make([]float32, n); mulScale(d, x, y, 0.7); return out{a: d} },
			"rmsBwd1": func() out {
				dw := cp(z)
				s := rmsBwd1(dw, x, y, z, 0.9)
				return out{a: dw, s: s}
			},
			"rmsBwd2": func() out {
				d1, d2 := cp(z), cp(z)
				rmsBwd2(d1, x, y, z, 0.9, 0.3, false)
				rmsBwd2(d2, x, y, z, 0.9, 0.3, true)
				return out{a: d1, b: d2}
			},
			"softmaxBwd": func() out { d := cp(x); softmaxBwd(d, y, 0.2, 0.125); return out{a: d} },
			"swiglu":     func() out { d := make([]float32, n); swiglu(d, x, y); return out{a: d} },
			"swigluBwd": func() out {
				dg, du := make([]float32, n), make([]float32, n)
				swigluBwd(dg, du, z, x, y)
				return out{a: dg, b: du}
			},
		}
		for name, f := range cases {
			t.Run(fmt.Sprintf("%s/%d", name, n), func(t *testing.T) {
				v, s := withSIMD(t, f)
				checkSlices(t, "a", v.a, s.a, 1e-6)
				checkSlices(t, "b", v.b, s.b, 1e-6)
				// Sums are reduced in a different order: allow for the cancellation in dot products.
				if !near(float64(v.s), float64(s.s), 1e-5*math.Sqrt(float64(n))) {
					t.Errorf("result %v (vector), %v (Go)", v.s, s.s)
				}
			})
		}
	}
}

// TestRoPERows checks the vector rotation against the Go loop bit for bit (both round each
// product), forward and inverse, at head dimensions that take it (half a multiple of 8) and one
// that does not, on rows that start mid-sequence.
func TestRoPERows(t *testing.T) {
	const L, heads = 12, 3
	for _, hd := range []int{12, 16, 64, 128} {
		cos, sin := compute.RoPETables[float32](L, hd, 10000)
		for _, inv := range []bool{false, true} {
			x := randVec(20*heads*hd, 104, 2)
			v, s := withSIMD(t, func() []float32 {
				y := append([]float32(nil), x...)
				ropeRows(y, cos, sin, 5, L, heads, hd, inv)
				return y
			})
			for i := range v {
				if math.Float32bits(v[i]) != math.Float32bits(s[i]) {
					t.Fatalf("hd %d, inverse %v: [%d] = %v (vector), %v (Go)", hd, inv, i, v[i], s[i])
				}
			}
		}
	}
}

// TestSIMDExpRange compares the vector exp with math.Exp over the whole useful range and at the
// edges: 0 below -87.33654, +Inf above 88.37.
func TestSIMDExpRange(t *testing.T) {
	if !hasAVX2FMA() {
		t.Skip("no AVX2+FMA on this CPU")
	}
	old := useSIMD
	defer func() { useSIMD = old }()
	useSIMD = true
	var xs []float32
	for x := -87.3; x <= 88.3; x += 0.0137 {
		xs = append(xs, float32(x))
	}
	xs = xs[:len(xs)&^7]
	got := make([]float32, len(xs))
	expSubSum(got, xs, 0)
	worst := 0.0
	for i, x := range xs {
		want := math.Exp(float64(x))
		worst = math.Max(worst, math.Abs(float64(got[i])-want)/want)
	}
	if worst > 3e-7 {
		t.Errorf("vector exp worst relative error %.3g, want <= 3e-7", worst)
	}
	inf := float32(math.Inf(1))
	edges := []float32{-200, -87.4, float32(math.Inf(-1)), 0, 88.4, 100, inf, 1}
	want := []float32{0, 0, 0, 1, inf, inf, inf, float32(math.E)}
	out := make([]float32, 8)
	expSubSum(out, edges, 0)
	for i := range edges {
		if !near(float64(out[i]), float64(want[i]), 1e-7) && out[i] != want[i] {
			t.Errorf("exp(%v) = %v, want %v", edges[i], out[i], want[i])
		}
	}
}

func BenchmarkSwiGLU(b *testing.B) {
	const n = 1 << 16
	g, u, o := randVec(n, 1, 3), randVec(n, 2, 1), make([]float32, n)
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("simd=%v", on), func(b *testing.B) {
			old := useSIMD
			defer func() { useSIMD = old }()
			useSIMD = on && hasAVX2FMA()
			b.SetBytes(4 * n)
			for b.Loop() {
				swiglu(o, g, u)
			}
		})
	}
}

// TestAVX512KernelsMatchAVX2: the 16-lane kernels give the 8-lane kernels' bits, outputs and
// sums alike, on lengths with and without a group of 8 left over and on values that reach
// exp's clamps (zero below, +Inf above), NaN and signed zeros included.
func TestAVX512KernelsMatchAVX2(t *testing.T) {
	if !hasAVX512F() {
		t.Skip("no AVX-512F on this CPU")
	}
	special := []float32{0, float32(math.Copysign(0, -1)), -87.4, -87.3, 88.3, 88.4, -200, 200,
		float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-40, -1e-40}
	same := func(name string, n int, a, b []float32) {
		t.Helper()
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("n=%d %s[%d]: %v (AVX-512) != %v (AVX2)", n, name, i, a[i], b[i])
			}
		}
	}
	for _, n := range []int{8, 16, 24, 40, 64, 1000, 1032} {
		x, y, z := randVec(n, 201, 40), randVec(n, 202, 3), randVec(n, 203, 1)
		copy(x, special)
		d1, d2 := make([]float32, n), make([]float32, n)
		for _, sc := range []float32{1, 0.125} {
			s1 := expScaleSubSumAVX512(&d1[0], &x[0], n, sc, 0.5)
			s2 := expScaleSubSumAVX2(&d2[0], &x[0], n, sc, 0.5)
			same("expScaleSubSum", n, d1, d2)
			same("expScaleSubSum sum", n, []float32{s1}, []float32{s2})
			// Finite terms of mixed size, so a sum in another order shows.
			w := randVec(n, 204, 3)
			s1 = expScaleSubSumAVX512(&d1[0], &w[0], n, sc, 0.5)
			s2 = expScaleSubSumAVX2(&d2[0], &w[0], n, sc, 0.5)
			same("expScaleSubSum finite sum", n, []float32{s1}, []float32{s2})
		}
		if n16 := n &^ 15; n16 > 0 {
			swigluAVX512(&d1[0], &x[0], &y[0], n16)
			swigluAVX2(&d2[0], &x[0], &y[0], n16)
			same("swiglu", n16, d1[:n16], d2[:n16])
			g1, g2, u1, u2 := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
			swigluBwdAVX512(&g1[0], &u1[0], &z[0], &x[0], &y[0], n16)
			swigluBwdAVX2(&g2[0], &u2[0], &z[0], &x[0], &y[0], n16)
			same("swigluBwd dgate", n16, g1, g2)
			same("swigluBwd dup", n16, u1, u2)
		}
	}
}
