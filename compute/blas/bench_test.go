package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Shapes of one training step of the d=256, seq=256, batch=16 model (4096
// tokens, 4 heads of 64, ff 1024, vocab 256), in the row-major form the
// model calls them.
var benchShapes = []struct {
	name    string
	tA, tB  bool
	m, n, k int
}{
	{"qkv_fwd_4096x256.768x256T", false, true, 4096, 768, 256},
	{"up_fwd_4096x256.1024x256T", false, true, 4096, 1024, 256},
	{"down_fwd_4096x1024.256x1024T", false, true, 4096, 256, 1024},
	{"out_fwd_4096x256.256x256T", false, true, 4096, 256, 256},
	{"qkv_dx_4096x768.768x256", false, false, 4096, 256, 768},
	{"down_dx_4096x256.256x1024", false, false, 4096, 1024, 256},
	{"qkv_dw_4096x768T.4096x256", true, false, 768, 256, 4096},
	{"up_dw_4096x1024T.4096x256", true, false, 1024, 256, 4096},
	{"down_dw_4096x256T.4096x1024", true, false, 256, 1024, 4096},
	{"attn_qk_256x64.256x64T", false, true, 256, 256, 64},
	{"attn_pv_256x256.256x64", false, false, 256, 64, 256},
	{"attn_dv_256x256T.256x64", true, false, 256, 64, 256},
}

var logCore sync.Once

type benchImpl struct {
	name    string
	impl    Impl
	threads int
}

// benchImpls lists OpenBLAS at 1 and 2 threads and gonum at GOMAXPROCS 1
// and 2. The OpenBLAS kernel is whatever OPENBLAS_CORETYPE selected when the
// library loaded, so compare core types by running the benchmark under
// different environments.
func benchImpls(b *testing.B) []benchImpl {
	var out []benchImpl
	if ob, info, err := LoadOpenBLAS(os.Getenv("CBS_OPENBLAS")); err == nil {
		logCore.Do(func() { fmt.Fprintf(os.Stderr, "openblas core %s\n", info.CoreName) })
		out = append(out, benchImpl{"openblas", ob, 1}, benchImpl{"openblas", ob, 2})
	}
	return append(out, benchImpl{"gonum", Gonum(), 1}, benchImpl{"gonum", Gonum(), 2})
}

// setThreads applies the thread count and returns a function restoring it.
func setThreads(bi benchImpl) func() {
	bi.impl.SetThreads(bi.threads)
	if bi.name == "gonum" {
		old := runtime.GOMAXPROCS(bi.threads)
		return func() { runtime.GOMAXPROCS(old) }
	}
	return func() {}
}

// report gives the mean rate and the best single iteration's: the machine
// is shared, and the best iteration is the one least disturbed by others.
func report(b *testing.B, flops float64, best time.Duration) {
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	b.ReportMetric(flops/best.Seconds()/1e9, "best_GFLOP/s")
}

func operands(tA, tB bool, m, n, k int) (a []float32, lda int, b []float32, ldb int, c []float32) {
	r := rand.New(rand.NewPCG(3, 4))
	a, b, c = randSlice[float32](r, m*k), randSlice[float32](r, k*n), make([]float32, m*n)
	lda, ldb = k, n
	if tA {
		lda = m
	}
	if tB {
		ldb = k
	}
	return
}

func BenchmarkGemm(b *testing.B) {
	for _, s := range benchShapes {
		a, lda, bb, ldb, c := operands(s.tA, s.tB, s.m, s.n, s.k)
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		for _, bi := range benchImpls(b) {
			b.Run(fmt.Sprintf("%s/%s/t%d", s.name, bi.name, bi.threads), func(b *testing.B) {
				defer setThreads(bi)()
				best := time.Duration(math.MaxInt64)
				for b.Loop() {
					t0 := time.Now()
					bi.impl.Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
					best = min(best, time.Since(t0))
				}
				report(b, flops, best)
			})
		}
	}
}

// BenchmarkAttentionHeads times the per-head GEMMs of attention for the
// whole batch (16 sequences x 4 heads) three ways: one goroutine with the
// library's threads, and two goroutines splitting the heads with one
// library thread each. This decides how the model parallelizes attention.
func BenchmarkAttentionHeads(b *testing.B) {
	const heads = 64
	for _, s := range benchShapes {
		if s.m != 256 || (s.n != 256 && s.n != 64) {
			continue
		}
		type op struct {
			a, b, c  []float32
			lda, ldb int
		}
		ops := make([]op, heads)
		for h := range ops {
			a, lda, bb, ldb, c := operands(s.tA, s.tB, s.m, s.n, s.k)
			ops[h] = op{a, bb, c, lda, ldb}
		}
		flops := heads * 2 * float64(s.m) * float64(s.n) * float64(s.k)
		for _, bi := range benchImpls(b) {
			for _, workers := range []int{1, 2} {
				if bi.threads*workers > 2 || (bi.name == "gonum" && bi.threads != workers) {
					continue
				}
				b.Run(fmt.Sprintf("%s/%s/t%d/goroutines%d", s.name, bi.name, bi.threads, workers), func(b *testing.B) {
					defer setThreads(bi)()
					best := time.Duration(math.MaxInt64)
					for b.Loop() {
						t0 := time.Now()
						var wg sync.WaitGroup
						for w := range workers {
							wg.Go(func() {
								for h := w; h < heads; h += workers {
									o := ops[h]
									bi.impl.Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, o.a, o.lda, o.b, o.ldb, 0, o.c, s.n)
								}
							})
						}
						wg.Wait()
						best = min(best, time.Since(t0))
					}
					report(b, flops, best)
				})
			}
		}
	}
}

// elementwise is a stand-in for the model's Go kernels between GEMMs (a
// GELU-like pass), split over two goroutines as the CPU backend does.
func elementwise(x []float32) {
	var wg sync.WaitGroup
	half := len(x) / 2
	for _, part := range [][]float32{x[:half], x[half:]} {
		wg.Go(func() {
			for i, v := range part {
				part[i] = v * float32(1/(1+math.Exp(-1.702*float64(v))))
			}
		})
	}
	wg.Wait()
}

// BenchmarkSpinHazard measures the Go kernel that follows a GEMM. OpenBLAS
// worker threads spin for a while after a threaded call returns; if they
// still hold a core, the two-goroutine pass after it runs slower than after
// a single-threaded GEMM. ew_ms is the elementwise time alone.
func BenchmarkSpinHazard(b *testing.B) {
	ob, _, err := LoadOpenBLAS(os.Getenv("CBS_OPENBLAS"))
	if err != nil {
		b.Skip(err)
	}
	m, n, k := 4096, 1024, 256
	a, lda, bb, ldb, c := operands(false, true, m, n, k)
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("gemm_t%d_then_go2", threads), func(b *testing.B) {
			ob.SetThreads(threads)
			var ew time.Duration
			best := time.Duration(math.MaxInt64)
			for b.Loop() {
				ob.Sgemm(false, true, m, n, k, 1, a, lda, bb, ldb, 0, c, n)
				t0 := time.Now()
				elementwise(c)
				d := time.Since(t0)
				ew, best = ew+d, min(best, d)
			}
			b.ReportMetric(float64(ew.Microseconds())/1e3/float64(b.N), "ew_ms")
			b.ReportMetric(float64(best.Microseconds())/1e3, "best_ew_ms")
		})
	}
	b.Run("go2_alone", func(b *testing.B) {
		var ew time.Duration
		best := time.Duration(math.MaxInt64)
		for b.Loop() {
			t0 := time.Now()
			elementwise(c)
			d := time.Since(t0)
			ew, best = ew+d, min(best, d)
		}
		b.ReportMetric(float64(ew.Microseconds())/1e3/float64(b.N), "ew_ms")
		b.ReportMetric(float64(best.Microseconds())/1e3, "best_ew_ms")
	})
}

// BenchmarkGemmSplit runs the large GEMMs as two single-threaded OpenBLAS
// calls on two goroutines, each computing half of C's rows, against one call
// with two OpenBLAS threads: the alternative to resizing OpenBLAS's pool
// between the projection GEMMs and attention.
func BenchmarkGemmSplit(b *testing.B) {
	ob, _, err := LoadOpenBLAS(os.Getenv("CBS_OPENBLAS"))
	if err != nil {
		b.Skip(err)
	}
	for _, s := range benchShapes {
		if s.m < 768 {
			continue
		}
		a, lda, bb, ldb, c := operands(s.tA, s.tB, s.m, s.n, s.k)
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		b.Run(s.name+"/openblas/t1/goroutines2", func(b *testing.B) {
			ob.SetThreads(1)
			best := time.Duration(math.MaxInt64)
			for b.Loop() {
				t0 := time.Now()
				var wg sync.WaitGroup
				half := s.m / 2
				for _, r := range [][2]int{{0, half}, {half, s.m}} {
					wg.Go(func() {
						// Rows of op(A) start at row r0 of A, or column r0 of A^T.
						off := r[0] * lda
						if s.tA {
							off = r[0]
						}
						ob.Sgemm(s.tA, s.tB, r[1]-r[0], s.n, s.k, 1, a[off:], lda, bb, ldb, 0, c[r[0]*s.n:], s.n)
					})
				}
				wg.Wait()
				best = min(best, time.Since(t0))
			}
			report(b, flops, best)
		})
	}
}
