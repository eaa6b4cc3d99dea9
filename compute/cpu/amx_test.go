package cpu

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"testing"

	"cbs/compute"
)

// pairRowsRef is the layout amxGemm reads B in: row r holds rows 2r and 2r+1 of b (k x n)
// interleaved, element by element.
func pairRowsRef(b []uint16, k, n int) []uint16 {
	out := make([]uint16, k*n)
	for r := range k / 2 {
		for j := range n {
			out[r*2*n+2*j] = b[2*r*n+j]
			out[r*2*n+2*j+1] = b[(2*r+1)*n+j]
		}
	}
	return out
}

// TestAMXGemm checks the AMX tile product against float64 sums of the same bf16 operands, with
// C overwritten and accumulated, at strides wider than the matrices.
func TestAMXGemm(t *testing.T) {
	if !amxReady() {
		t.Skip("no AMX on this CPU or OS")
	}
	for _, s := range []struct{ m, n, k int }{{32, 32, 32}, {64, 96, 64}, {96, 32, 512}, {32, 512, 128}} {
		t.Run(fmt.Sprintf("%dx%dx%d", s.m, s.n, s.k), func(t *testing.T) {
			lda, ldc := s.k+32, s.n+16
			af, bf := randVec(s.m*lda, 1, 1), randVec(s.k*s.n, 2, 1)
			a, b := make([]uint16, len(af)), make([]uint16, len(bf))
			compute.RoundBF16(a, af)
			compute.RoundBF16(b, bf)
			bp := pairRowsRef(b, s.k, s.n)
			for _, accum := range []bool{false, true} {
				c := randVec(s.m*ldc, 3, 1)
				c0 := append([]float32(nil), c...)
				amxGemm(a, lda, bp, 2*s.n, c, ldc, s.m, s.n, s.k, accum)
				for i := range s.m {
					for j := range ldc {
						got := c[i*ldc+j]
						if j >= s.n {
							if got != c0[i*ldc+j] {
								t.Fatalf("C[%d][%d] outside the product changed", i, j)
							}
							continue
						}
						want, mag := 0.0, 0.0
						if accum {
							want, mag = float64(c0[i*ldc+j]), math.Abs(float64(c0[i*ldc+j]))
						}
						for p := range s.k {
							x := float64(compute.FromBF16(a[i*lda+p])) * float64(compute.FromBF16(b[p*s.n+j]))
							want += x
							mag += math.Abs(x)
						}
						if math.Abs(float64(got)-want) > 1e-6*mag+1e-30 {
							t.Fatalf("accum=%v C[%d][%d] = %v, want %v", accum, i, j, got, want)
						}
					}
				}
			}
		})
	}
}

// BenchmarkAMXGemm times the tile product on one thread at attention's block shapes (64 query
// rows, 512 keys, head dim 64) and a square one, against oneDNN's bf16 GEMM on the same
// operands where oneDNN loads.
func BenchmarkAMXGemm(b *testing.B) {
	if !amxReady() {
		b.Skip("no AMX on this CPU or OS")
	}
	be := New(1)
	dnnl := be.SetPrecision(compute.PrecisionBF16) == nil
	for _, s := range []struct {
		name    string
		m, n, k int
	}{{"scores_64x512x64", 64, 512, 64}, {"pv_64x64x512", 64, 64, 512}, {"grad_64x512x64", 64, 512, 64}, {"square_512", 512, 512, 512},
		{"linear_256x2048x512", 256, 2048, 512}, {"linear_256x512x2048", 256, 512, 2048}, {"linear_256x512x512", 256, 512, 512}} {
		a, bb := make([]uint16, s.m*s.k), make([]uint16, s.k*s.n)
		compute.RoundBF16(a, randVec(len(a), 1, 1))
		compute.RoundBF16(bb, randVec(len(bb), 2, 1))
		c := make([]float32, s.m*s.n)
		flops := 2 * float64(s.m*s.n*s.k)
		b.Run(s.name+"/amx", func(b *testing.B) {
			for b.Loop() {
				amxGemm(a, s.k, bb, 2*s.n, c, s.n, s.m, s.n, s.k, false)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		if dnnl {
			b.Run(s.name+"/onednn", func(b *testing.B) {
				for b.Loop() {
					be.dnnl.GemmBF16(false, false, s.m, s.n, s.k, 1, a, s.k, bb, s.n, 0, c, s.n)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestAMXAttention: on shapes AMX takes, attention on AMX and on oneDNN agree to bf16's
// precision (their sums differ only in order), and the AMX path was the one taken.
func TestAMXAttention(t *testing.T) {
	if !amxReady() {
		t.Skip("no AMX on this CPU or OS")
	}
	for _, sh := range []struct{ B, L, H, KV, hd int }{{2, 96, 4, 2, 64}, {1, 256, 2, 1, 128}} {
		B, L, H, KV, hd := sh.B, sh.L, sh.H, sh.KV, sh.hd
		q, k, v := randVec(B*L*H*hd, 9, 1), randVec(B*L*KV*hd, 10, 1), randVec(B*L*KV*hd, 11, 1)
		do := randVec(B*L*H*hd, 12, 1)
		for _, causal := range []bool{false, true} {
			t.Run(fmt.Sprintf("%+v/causal=%v", sh, causal), func(t *testing.T) {
				var outs [2][][]float32
				for i, amx := range []bool{true, false} {
					be := bf16Backend(t, 2)
					if !be.amxAttention(L, hd) {
						t.Fatal("AMX path not taken")
					}
					be.amx = amx
					o, s := make([]float32, len(q)), make([]float32, B*H*L)
					dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
					be.Attention(o, s, q, k, v, B, L, H, KV, hd, causal)
					be.AttentionBackward(dq, dk, dv, do, s, q, k, v, B, L, H, KV, hd, causal)
					outs[i] = [][]float32{o, s, dq, dk, dv}
				}
				for i, name := range []string{"o", "lse", "dq", "dk", "dv"} {
					e := relErr(outs[0][i], outs[1][i])
					t.Logf("%s: AMX against oneDNN, relative difference %.2e", name, e)
					if e > 5e-3 || math.IsNaN(e) {
						t.Errorf("%s: AMX and oneDNN differ by %.3g", name, e)
					}
				}
			})
		}
	}
}

// TestLayouts checks the layout helpers of the AMX path, vector and Go loops alike, against
// their definitions, at strides wider than the rows.
func TestLayouts(t *testing.T) {
	for _, simd := range []bool{true, false} {
		old := useSIMD
		useSIMD = simd && old
		for _, s := range []struct{ rows, cols int }{{8, 8}, {16, 40}, {64, 32}, {6, 10}} {
			lds, ldd := s.cols+3, s.rows+5
			x16 := make([]uint16, s.rows*lds)
			x32 := make([]uint32, s.rows*lds)
			for i := range x16 {
				x16[i], x32[i] = uint16(i*7+1), uint32(i*13+5)
			}
			d16, d32 := make([]uint16, s.cols*ldd), make([]uint32, s.cols*ldd)
			transpose(d16, ldd, x16, lds, s.rows, s.cols)
			transpose(d32, ldd, x32, lds, s.rows, s.cols)
			for r := range s.rows {
				for c := range s.cols {
					if d16[c*ldd+r] != x16[r*lds+c] || d32[c*ldd+r] != x32[r*lds+c] {
						t.Fatalf("simd=%v %+v: transpose wrong at row %d col %d", useSIMD, s, r, c)
					}
				}
			}
			if s.cols%2 == 0 {
				// Pairs of x transposed, at an even stride (4-byte words) and an odd one.
				for _, ld := range []int{lds + lds%2, lds | 1} {
					xs := make([]uint16, s.rows*ld)
					for i := range xs {
						xs[i] = uint16(i*5 + 3)
					}
					pd := make([]uint16, s.cols/2*(2*s.rows+4))
					transposePairs(pd, 2*s.rows+4, xs, s.rows, s.cols, ld)
					for j := range s.rows {
						for c := range s.cols {
							if pd[c/2*(2*s.rows+4)+2*j+c%2] != xs[j*ld+c] {
								t.Fatalf("simd=%v %+v ld %d: transposePairs wrong at row %d col %d", useSIMD, s, ld, j, c)
							}
						}
					}
				}
			}
			if s.rows%2 == 0 {
				p := make([]uint16, s.rows*s.cols)
				pairRows(p, x16, s.rows, s.cols, lds)
				f := randVec(s.rows*s.cols, 7, 1)
				f16 := make([]uint16, len(f))
				roundPairs(f16, f, s.rows, s.cols)
				for r := range s.rows {
					for c := range s.cols {
						at := r/2*2*s.cols + 2*c + r%2
						if p[at] != x16[r*lds+c] || f16[at] != compute.BF16(f[r*s.cols+c]) {
							t.Fatalf("simd=%v %+v: pairs wrong at row %d col %d", useSIMD, s, r, c)
						}
					}
				}
			}
		}
		useSIMD = old
	}
}

// TestAMXLinear: GemmBF16 on AMX (several row and column tiles, several chunks of K, B
// transposed or not, C overwritten or accumulated) agrees with oneDNN to bf16's precision and
// gives the same bits at any thread count.
func TestAMXLinear(t *testing.T) {
	if !amxReady() {
		t.Skip("no AMX on this CPU or OS")
	}
	for _, s := range []struct {
		tb      bool
		m, n, k int
		beta    float32
	}{{true, 320, 576, 1056, 0}, {false, 320, 576, 1056, 1}, {true, 64, 32, 32, 1}, {false, 32, 1024, 96, 0}} {
		t.Run(fmt.Sprintf("%+v", s), func(t *testing.T) {
			lda, ldb := s.k+32, s.n+32
			if s.tb {
				ldb = s.k + 32
			}
			rows := s.k
			if s.tb {
				rows = s.n
			}
			a, b := make([]uint16, s.m*lda), make([]uint16, rows*ldb)
			compute.RoundBF16(a, randVec(len(a), 1, 1))
			compute.RoundBF16(b, randVec(len(b), 2, 1))
			c0 := randVec(s.m*s.n, 3, 1)
			var got [][]float32
			for _, threads := range []int{1, 3} {
				be := bf16Backend(t, threads)
				if !be.amxProduct(false, s.m, s.n, s.k, 1, s.beta) {
					t.Fatal("AMX path not taken")
				}
				for _, amx := range []bool{true, false} {
					be.amx = amx
					c := append([]float32(nil), c0...)
					be.GemmBF16(false, s.tb, s.m, s.n, s.k, 1, a, lda, b, ldb, s.beta, c, s.n)
					got = append(got, c)
				}
			}
			t.Logf("AMX against oneDNN: relative difference %.2e", relErr(got[0], got[1]))
			if e := relErr(got[0], got[1]); e > 1e-5 || math.IsNaN(e) {
				t.Errorf("AMX and oneDNN differ by %.3g", e)
			}
			if !slices.Equal(got[0], got[2]) {
				t.Error("AMX at 3 threads differs from 1 thread")
			}
		})
	}
}

// TestAMXUnderSignals runs the tile kernel on more goroutines than threads while the runtime
// collects garbage and preempts them (preemption is a signal, delivered on top of whatever
// registers are live): every result must equal the one computed alone. The kernel keeps tile
// state only within a call, and Linux saves the tiles with the rest of the state when a
// signal arrives mid-call.
func TestAMXUnderSignals(t *testing.T) {
	if !amxReady() {
		t.Skip("no AMX on this CPU or OS")
	}
	const m, n, k = 256, 256, 1024 // about 0.1 ms a call
	a, b := make([]uint16, m*k), make([]uint16, k*n)
	compute.RoundBF16(a, randVec(len(a), 1, 1))
	compute.RoundBF16(b, randVec(len(b), 2, 1))
	bp := pairRowsRef(b, k, n)
	want := make([]float32, m*n)
	amxGemm(a, k, bp, 2*n, want, n, m, n, k, false)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			c := make([]float32, m*n)
			for i := range 200 {
				amxGemm(a, k, bp, 2*n, c, n, m, n, k, false)
				if !slices.Equal(c, want) {
					errs <- fmt.Errorf("goroutine %d, call %d: result differs", g, i)
					return
				}
				_ = make([]byte, 1<<16) // garbage, so the collector keeps running
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
}
