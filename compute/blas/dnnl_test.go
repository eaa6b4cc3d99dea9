package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cbs/compute"
)

// dnnl returns the process's oneDNN at one thread per call, or skips the test where the
// library is absent (Debian: libdnnl2).
func dnnl(t testing.TB) *DNNL {
	d, info := DefaultDNNL()
	if d == nil {
		t.Skipf("onednn not loaded: %s", info.Unavailable)
	}
	d.SetThreads(1)
	return d
}

func TestDNNLInfo(t *testing.T) {
	d := dnnl(t)
	info := d.Info()
	t.Logf("%s", info)
	if info.Library != "onednn" || info.Path == "" || !strings.HasPrefix(info.Version, "2.") && !strings.HasPrefix(info.Version, "3.") {
		t.Errorf("info = %+v", info)
	}
	if info.ISA == "" || strings.HasPrefix(info.ISA, "isa(") {
		t.Errorf("effective ISA %q not named", info.ISA)
	}
	if info.Runtime == "OpenMP" && info.Threads != 1 {
		t.Errorf("threads per call = %d after SetThreads(1)", info.Threads)
	}
	if _, err := LoadDNNL("/nonexistent/libdnnl.so.2"); err == nil {
		t.Error("loading a missing file succeeded")
	}
	if _, err := LoadDNNL("libm.so.6"); err == nil || !strings.Contains(err.Error(), "missing symbol") {
		t.Errorf("loading libm: err = %v, want a missing symbol", err)
	}
}

// dnnlImpl adapts DNNL's Sgemm to Impl for runCases (which calls Sgemm only for float32).
type dnnlImpl struct{ *DNNL }

func (dnnlImpl) Dgemm(bool, bool, int, int, int, float64, []float64, int, []float64, int, float64, []float64, int) {
	panic("no dgemm")
}

func TestDNNLSgemm(t *testing.T) {
	runCases[float32](t, dnnlImpl{dnnl(t)}, 2e-7)
}

// TestDNNLGemmBF16 checks the bf16 product against the float64 product of the same operands
// rounded to bf16: only the fp32 accumulation differs, so the fp32 bound applies.
func TestDNNLGemmBF16(t *testing.T) {
	d := dnnl(t)
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range gemmCases {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				name, a, lda, b, ldb, c, ldc := caseOperands[float32](r, tc, ta, tb)
				a16, b16 := make([]uint16, len(a)), make([]uint16, len(b))
				compute.RoundBF16(a16, a)
				compute.RoundBF16(b16, b)
				widen := func(h []uint16) []float32 {
					out := make([]float32, len(h))
					for i, v := range h {
						out[i] = compute.FromBF16(v)
					}
					return out
				}
				want := naive(ta, tb, tc.m, tc.n, tc.k, float32(tc.alpha), widen(a16), lda, widen(b16), ldb, float32(tc.beta), c, ldc)
				got := slices.Clone(c)
				d.GemmBF16(ta, tb, tc.m, tc.n, tc.k, float32(tc.alpha), a16, lda, b16, ldb, float32(tc.beta), got, ldc)
				bound := 2e-7 * float64(tc.k+1)
				for i := range got {
					if diff := math.Abs(float64(got[i]) - float64(want[i])); diff > bound*(1+math.Abs(float64(want[i]))) || math.IsNaN(float64(got[i])) {
						t.Fatalf("%s: c[%d] = %g, want %g (diff %g)", name, i, got[i], want[i], diff)
					}
				}
			}
		}
	}
}

func TestDNNLBadShapesPanic(t *testing.T) {
	d := dnnl(t)
	a, b, c := make([]uint16, 12), make([]uint16, 12), make([]float32, 9)
	for name, f := range map[string]func(){
		"short a":   func() { d.GemmBF16(false, false, 3, 3, 5, 1, a, 5, b, 3, 0, c, 3) },
		"small ldb": func() { d.GemmBF16(false, false, 3, 3, 4, 1, a, 4, b, 2, 0, c, 3) },
		"short c":   func() { d.GemmBF16(false, false, 3, 4, 3, 1, a, 3, b, 4, 0, c, 4) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "blas: ") {
					t.Errorf("%s: recovered %v, want a blas panic", name, r)
				}
			}()
			f()
		}()
	}
	// k = 0 applies beta without calling the library.
	c = []float32{1, 2, 3, 4}
	d.GemmBF16(false, false, 2, 2, 0, 1, nil, 1, nil, 2, 0.5, c, 2)
	if !slices.Equal(c, []float32{0.5, 1, 1.5, 2}) {
		t.Errorf("k=0: c = %v", c)
	}
}

// TestDNNLDeterministic runs the same bf16 and fp32 products twice, from different goroutines
// and with freshly allocated (differently aligned) copies of the operands: the results must be
// bit-identical.
func TestDNNLDeterministic(t *testing.T) {
	d := dnnl(t)
	r := rand.New(rand.NewPCG(7, 8))
	m, n, k := 300, 200, 513
	a, b := randSlice[float32](r, m*k), randSlice[float32](r, k*n)
	run := func(off int) ([]float32, []float32) {
		a16 := make([]uint16, len(a)+off)[off:]
		b16 := make([]uint16, len(b)+off)[off:]
		compute.RoundBF16(a16, a)
		compute.RoundBF16(b16, b)
		c16, c32 := make([]float32, m*n), make([]float32, m*n)
		var wg sync.WaitGroup
		wg.Go(func() { d.GemmBF16(false, true, m, n, k, 1, a16, k, b16, k, 0, c16, n) })
		wg.Go(func() {
			d.Sgemm(false, true, m, n, k, 1, append(make([]float32, off), a...)[off:], k, b, k, 0, c32, n)
		})
		wg.Wait()
		return c16, c32
	}
	x16, x32 := run(0)
	for _, off := range []int{1, 3, 8} {
		y16, y32 := run(off)
		if !slices.Equal(x16, y16) || !slices.Equal(x32, y32) {
			t.Fatalf("offset %d: results differ between runs", off)
		}
	}
}

// BenchmarkDNNL times oneDNN's fp32 and bf16 GEMMs against OpenBLAS on the training step's
// shapes: one call on 1 or 2 threads, and (for t1) two goroutines each computing half of C's
// rows at one thread per call, as the CPU backend runs them.
func BenchmarkDNNL(b *testing.B) {
	d, info := DefaultDNNL()
	if d == nil {
		b.Skip(info.Unavailable)
	}
	ob, _, obErr := LoadOpenBLAS(os.Getenv("CBS_OPENBLAS"))
	fmt.Fprintf(os.Stderr, "%s\n", d.Info())
	for _, s := range benchShapes {
		if s.m < 768 && s.k < 768 {
			continue
		}
		a, lda, bb, ldb, c := operands(s.tA, s.tB, s.m, s.n, s.k)
		a16, b16 := make([]uint16, len(a)), make([]uint16, len(bb))
		compute.RoundBF16(a16, a)
		compute.RoundBF16(b16, bb)
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		kernels := map[string]func(m0, m1 int){
			"onednn_bf16": func(m0, m1 int) {
				d.GemmBF16(s.tA, s.tB, m1-m0, s.n, s.k, 1, a16[rowOff(s.tA, m0, lda):], lda, b16, ldb, 0, c[m0*s.n:], s.n)
			},
			"onednn_f32": func(m0, m1 int) {
				d.Sgemm(s.tA, s.tB, m1-m0, s.n, s.k, 1, a[rowOff(s.tA, m0, lda):], lda, bb, ldb, 0, c[m0*s.n:], s.n)
			},
		}
		if obErr == nil {
			kernels["openblas_f32"] = func(m0, m1 int) {
				ob.Sgemm(s.tA, s.tB, m1-m0, s.n, s.k, 1, a[rowOff(s.tA, m0, lda):], lda, bb, ldb, 0, c[m0*s.n:], s.n)
			}
		}
		for _, name := range []string{"openblas_f32", "onednn_f32", "onednn_bf16"} {
			kern, ok := kernels[name]
			if !ok {
				continue
			}
			for _, mode := range []string{"t1", "t2", "t1/goroutines2"} {
				b.Run(fmt.Sprintf("%s/%s/%s", s.name, name, mode), func(b *testing.B) {
					threads := 1
					if mode == "t2" {
						threads = 2
					}
					d.SetThreads(threads)
					if obErr == nil {
						ob.SetThreads(threads)
					}
					defer d.SetThreads(1)
					best := time.Duration(math.MaxInt64)
					for b.Loop() {
						t0 := time.Now()
						if mode == "t1/goroutines2" {
							var wg sync.WaitGroup
							half := s.m / 2
							wg.Go(func() { kern(0, half) })
							wg.Go(func() { kern(half, s.m) })
							wg.Wait()
						} else {
							kern(0, s.m)
						}
						best = min(best, time.Since(t0))
					}
					report(b, flops, best)
				})
			}
		}
	}
}

// rowOff is where row r of op(A) starts in A's storage.
func rowOff(trans bool, r, ld int) int {
	if trans {
		return r
	}
	return r * ld
}

// TestDNNLCallAllocs guards the direct call on linux/amd64: a training step makes tens of
// thousands of small products, so each allocation per call shows up in the GC.
func TestDNNLCallAllocs(t *testing.T) {
	d := dnnl(t)
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("other platforms call through purego.RegisterFunc, which allocates")
	}
	r := rand.New(rand.NewPCG(9, 10))
	a, b, c := randSlice[float32](r, 64), randSlice[float32](r, 64), make([]float32, 64)
	a16, b16 := make([]uint16, 64), make([]uint16, 64)
	compute.RoundBF16(a16, a)
	compute.RoundBF16(b16, b)
	if n := testing.AllocsPerRun(100, func() { d.Sgemm(false, true, 8, 8, 8, 1, a, 8, b, 8, 0, c, 8) }); n != 0 {
		t.Errorf("Sgemm: %v allocations per call", n)
	}
	if n := testing.AllocsPerRun(100, func() { d.GemmBF16(true, false, 8, 8, 8, 0.5, a16, 8, b16, 8, 1, c, 8) }); n != 0 {
		t.Errorf("GemmBF16: %v allocations per call", n)
	}
}

// TestDNNLConcurrent runs both GEMMs from 8 goroutines at once, each on its own operands and
// shape: every result must match, bit for bit, the same product computed serially.
func TestDNNLConcurrent(t *testing.T) {
	d := dnnl(t)
	const workers = 8
	iters := 300
	if testing.Short() {
		iters = 50
	}
	type work struct {
		ta, tb          bool
		m, n, k         int
		a, b            []float32
		a16, b16        []uint16
		c, want, want16 []float32
		alpha, beta     float32
	}
	r := rand.New(rand.NewPCG(15, 16))
	ws := make([]*work, workers)
	for i := range ws {
		w := &work{ta: i&1 != 0, tb: i&2 != 0, m: 5 + 7*i, n: 3 + 11*i, k: 1 + 13*i, alpha: 1 + float32(i)/4, beta: float32(i%3) - 1}
		w.a, w.b = randSlice[float32](r, w.m*w.k), randSlice[float32](r, w.k*w.n)
		w.a16, w.b16 = make([]uint16, len(w.a)), make([]uint16, len(w.b))
		compute.RoundBF16(w.a16, w.a)
		compute.RoundBF16(w.b16, w.b)
		w.c = randSlice[float32](r, w.m*w.n)
		ws[i] = w
	}
	// lds are the stored widths: op(A) is m x k, so A is k x m when transposed.
	lds := func(w *work) (lda, ldb int) {
		lda, ldb = w.k, w.n
		if w.ta {
			lda = w.m
		}
		if w.tb {
			ldb = w.k
		}
		return lda, ldb
	}
	run := func(w *work) (f32, bf16 []float32) {
		lda, ldb := lds(w)
		f32, bf16 = slices.Clone(w.c), slices.Clone(w.c)
		d.Sgemm(w.ta, w.tb, w.m, w.n, w.k, w.alpha, w.a, lda, w.b, ldb, w.beta, f32, w.n)
		d.GemmBF16(w.ta, w.tb, w.m, w.n, w.k, w.alpha, w.a16, lda, w.b16, ldb, w.beta, bf16, w.n)
		return f32, bf16
	}
	for _, w := range ws {
		w.want, w.want16 = run(w)
	}
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for i, w := range ws {
		wg.Go(func() {
			for it := range iters {
				f32, bf16 := run(w)
				if !slices.Equal(f32, w.want) || !slices.Equal(bf16, w.want16) {
					errs <- fmt.Sprintf("worker %d (%dx%dx%d) iteration %d: result differs from the serial one", i, w.m, w.n, w.k, it)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
