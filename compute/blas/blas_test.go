package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// impls returns every implementation loadable here; OpenBLAS is absent on
// machines without the library, which must still pass.
func impls(t testing.TB) map[string]Impl {
	m := map[string]Impl{"gonum": Gonum()}
	if ob, _, err := LoadOpenBLAS(os.Getenv("CBS_OPENBLAS")); err == nil {
		m["openblas"] = ob
	} else {
		t.Logf("openblas not loaded: %v", err)
	}
	return m
}

// naive is the reference: a triple loop in float64 over the stored layouts.
func naive[T float32 | float64](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) []T {
	out := append([]T(nil), c...)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				var av, bv T
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			v := float64(alpha) * s
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
			}
			out[i*ldc+j] = T(v)
		}
	}
	return out
}

func randSlice[T float32 | float64](r *rand.Rand, n int) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = T(r.Float64()*2 - 1)
	}
	return s
}

type gemmCase struct {
	m, n, k        int
	padA, padB, pC int // extra columns in each leading dimension
	alpha, beta    float64
}

var gemmCases = []gemmCase{
	{1, 1, 1, 0, 0, 0, 1, 0},
	{3, 5, 7, 0, 0, 0, 1, 0},
	{17, 13, 11, 2, 3, 1, 0.5, 0},
	{33, 65, 17, 0, 5, 7, -1.25, 0.75},
	{64, 64, 64, 0, 0, 0, 1, 1},
	{127, 31, 129, 1, 1, 1, 2, -0.5},
	{256, 96, 64, 16, 0, 32, 1, 0},
	{5, 300, 2, 0, 0, 0, 0.125, 3},
	{40, 40, 40, 0, 0, 0, 0, 2}, // alpha 0: C = beta C
}

func runCases[T float32 | float64](t *testing.T, impl Impl, tol float64) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range gemmCases {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				name, a, lda, b, ldb, c, ldc := caseOperands[T](r, tc, ta, tb) // last row padded too: padding must survive
				want := naive(ta, tb, tc.m, tc.n, tc.k, T(tc.alpha), a, lda, b, ldb, T(tc.beta), c, ldc)
				got := append([]T(nil), c...)
				Gemm(impl, ta, tb, tc.m, tc.n, tc.k, T(tc.alpha), a, lda, b, ldb, T(tc.beta), got, ldc)
				// Error bound grows with k for float32 accumulation order.
				bound := tol * float64(tc.k+1)
				for i := range got {
					if d := math.Abs(float64(got[i]) - float64(want[i])); d > bound*(1+math.Abs(float64(want[i]))) || math.IsNaN(float64(got[i])) {
						t.Fatalf("%s: c[%d] = %g, want %g (diff %g)", name, i, got[i], want[i], d)
					}
				}
			}
		}
	}
}

func TestGemm(t *testing.T) {
	for name, impl := range impls(t) {
		t.Run(name+"/f32", func(t *testing.T) { runCases[float32](t, impl, 2e-7) })
		t.Run(name+"/f64", func(t *testing.T) { runCases[float64](t, impl, 1e-15) })
	}
}

func TestZeroSizes(t *testing.T) {
	for name, impl := range impls(t) {
		t.Run(name, func(t *testing.T) {
			// k == 0 leaves C = beta C, and beta == 0 clears NaNs.
			c := []float32{1, 2, float32(math.NaN()), 4, 99}
			Gemm(impl, false, false, 2, 2, 0, 1, nil, 1, nil, 2, 0.5, c, 3)
			want := []float32{0.5, 1, float32(math.NaN()), 2, 49.5} // c[2] is padding
			for i := range c {
				if c[i] != want[i] && !(math.IsNaN(float64(c[i])) && math.IsNaN(float64(want[i]))) {
					t.Fatalf("beta=0.5: c = %v, want %v", c, want)
				}
			}
			d := []float64{math.NaN(), 1}
			Gemm(impl, true, true, 1, 2, 0, 1, nil, 1, nil, 1, 0, d, 2)
			if d[0] != 0 || d[1] != 0 {
				t.Fatalf("beta=0: c = %v, want zeros", d)
			}
			// m or n zero: no access at all, even to empty slices.
			impl.Sgemm(false, false, 0, 5, 3, 1, nil, 3, make([]float32, 15), 5, 0, nil, 5)
			impl.Dgemm(false, false, 4, 0, 3, 1, make([]float64, 12), 3, nil, 1, 0, nil, 1)
		})
	}
}

func TestBadShapesPanic(t *testing.T) {
	a := make([]float32, 12)
	b := make([]float32, 12)
	c := make([]float32, 9)
	bad := []struct {
		name string
		call func(Impl)
	}{
		{"short a", func(i Impl) { i.Sgemm(false, false, 3, 3, 5, 1, a, 5, b, 3, 0, c, 3) }},
		{"short b", func(i Impl) { i.Sgemm(false, true, 3, 3, 4, 1, a, 4, b[:11], 4, 0, c, 3) }},
		{"short c", func(i Impl) { i.Sgemm(false, false, 3, 3, 4, 1, a, 4, b, 3, 0, c[:8], 3) }},
		{"small lda", func(i Impl) { i.Sgemm(false, false, 3, 3, 4, 1, a, 3, b, 3, 0, c, 3) }},
		{"small lda trans", func(i Impl) { i.Sgemm(true, false, 3, 3, 4, 1, a, 2, b, 3, 0, c, 3) }},
		{"small ldc", func(i Impl) { i.Sgemm(false, false, 3, 3, 4, 1, a, 4, b, 3, 0, c, 2) }},
		{"negative", func(i Impl) { i.Sgemm(false, false, -1, 3, 4, 1, a, 4, b, 3, 0, c, 3) }},
		{"short c f64", func(i Impl) {
			i.Dgemm(false, false, 2, 2, 2, 1, make([]float64, 4), 2, make([]float64, 4), 2, 0, make([]float64, 3), 2)
		}},
		{"trans b ld", func(i Impl) {
			i.Dgemm(false, true, 2, 3, 4, 1, make([]float64, 8), 4, make([]float64, 12), 3, 0, make([]float64, 6), 3)
		}},
	}
	for name, impl := range impls(t) {
		for _, tc := range bad {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				defer func() {
					r := recover()
					if r == nil {
						t.Fatal("no panic")
					}
					if s, _ := r.(string); !strings.HasPrefix(s, "blas: ") {
						t.Fatalf("panic %v lacks the blas: prefix", r)
					}
				}()
				tc.call(impl)
			})
		}
	}
}

func TestOpenBLASInfo(t *testing.T) {
	_, info, err := LoadOpenBLAS(os.Getenv("CBS_OPENBLAS"))
	if err != nil {
		t.Skipf("openblas not loadable: %v", err)
	}
	if info.Library != "openblas" || info.Path == "" || info.CoreName == "" || info.Threads < 1 {
		t.Fatalf("incomplete info %+v", info)
	}
	t.Logf("%s", info)
	if _, _, err := LoadOpenBLAS("/nonexistent/libopenblas.so.0"); err == nil {
		t.Fatal("loading a missing file succeeded")
	}
}

// TestDefault checks the choice Default makes in a fresh process, since it
// caches the first answer.
func TestDefault(t *testing.T) {
	if os.Getenv("CBS_BLAS_CHILD") == "1" {
		impl, info := Default()
		c := make([]float64, 4)
		Gemm(impl, false, false, 2, 2, 1, 1, []float64{1, 2}, 1, []float64{3, 4}, 2, 0, c, 2)
		if c[0] != 3 || c[1] != 4 || c[2] != 6 || c[3] != 8 {
			t.Fatalf("wrong product %v", c)
		}
		fmt.Printf("LIB=%s REASON=%s\n", info.Library, info.FallbackReason)
		if info.CoreTypeSet != "" && !strings.EqualFold(info.CoreTypeSet, info.CoreName) {
			t.Fatalf("set OPENBLAS_CORETYPE=%s but openblas runs %s kernels", info.CoreTypeSet, info.CoreName)
		}
		t.Logf("%s", info)
		return
	}
	run := func(env ...string) string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDefault$", "-test.v")
		cmd.Env = append(os.Environ(), append(env, "CBS_BLAS_CHILD=1")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child failed: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := run("CBS_BLAS=gonum"); !strings.Contains(out, "LIB=gonum REASON=CBS_BLAS=gonum") {
		t.Fatalf("CBS_BLAS=gonum did not force gonum:\n%s", out)
	}
	if out := run("CBS_BLAS=", "CBS_OPENBLAS=/nonexistent/libopenblas.so.0"); !strings.Contains(out, "LIB=gonum REASON=dlopen /nonexistent") {
		t.Fatalf("missing library did not fall back with a reason:\n%s", out)
	}
	if _, _, err := LoadOpenBLAS(""); err == nil {
		if out := run("CBS_BLAS=", "CBS_OPENBLAS="); !strings.Contains(out, "LIB=openblas") {
			t.Fatalf("default did not pick openblas:\n%s", out)
		}
	}
}

func TestCoreTypeFor(t *testing.T) {
	set := func(fl ...string) map[string]bool {
		m := map[string]bool{}
		for _, f := range fl {
			m[f] = true
		}
		return m
	}
	avx512 := []string{"avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq"}
	for _, tc := range []struct {
		flags map[string]bool
		want  string
	}{
		{set(), ""},
		{set("sse3", "avx"), ""},
		{set("avx2"), ""},
		{set("avx2", "fma"), "Haswell"},
		{set("avx2", "fma", "avx512f"), "Haswell"},
		{set(avx512...), "SkylakeX"},
		{set(append(avx512, "avx512_bf16")...), "Cooperlake"},
	} {
		if got := coreTypeFor(tc.flags); got != tc.want {
			t.Errorf("coreTypeFor(%v) = %q, want %q", tc.flags, got, tc.want)
		}
	}
}

func TestCPUInfo(t *testing.T) {
	if s := CPUInfo(); s == "" {
		t.Fatal("empty cpu info")
	} else {
		t.Log(s)
	}
}

// caseOperands draws A, B and C for tc with op(A) and op(B) transposed as ta and tb, each row
// padded as tc says (C's last row too: the padding must survive the product), and names the case.
func caseOperands[T float32 | float64](r *rand.Rand, tc gemmCase, ta, tb bool) (name string, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	name = fmt.Sprintf("%dx%dx%d/tA=%v/tB=%v/ld+%d,%d,%d/a=%g/b=%g", tc.m, tc.n, tc.k, ta, tb, tc.padA, tc.padB, tc.pC, tc.alpha, tc.beta)
	ar, ac := tc.m, tc.k
	if ta {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tb {
		br, bc = tc.n, tc.k
	}
	lda, ldb, ldc = ac+tc.padA, bc+tc.padB, tc.n+tc.pC
	return name, randSlice[T](r, (ar-1)*lda+ac), lda, randSlice[T](r, (br-1)*ldb+bc), ldb, randSlice[T](r, tc.m*ldc), ldc
}
