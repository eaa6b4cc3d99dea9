package cpu

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestFMA32 checks fma32 against the exact sum rounded once, on random operands and on sums
// that fall next to a halfway point between two float32 values (where rounding twice errs).
func TestFMA32(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	exact := func(x, y, z float32) float32 {
		p := new(big.Float).SetPrec(2000).SetFloat64(float64(x))
		p.Mul(p, new(big.Float).SetPrec(2000).SetFloat64(float64(y)))
		p.Add(p, new(big.Float).SetPrec(2000).SetFloat64(float64(z)))
		f, _ := p.Float32()
		return f
	}
	check := func(x, y, z float32) {
		t.Helper()
		if got, want := fma32(x, y, z), exact(x, y, z); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fma32(%g, %g, %g) = %g, want %g", x, y, z, got, want)
		}
	}
	for range 200000 {
		x := float32(r.NormFloat64()) * float32(math.Exp2(float64(r.IntN(40)-20)))
		y := float32(r.NormFloat64()) * float32(math.Exp2(float64(r.IntN(40)-20)))
		z := float32(r.NormFloat64()) * float32(math.Exp2(float64(r.IntN(60)-30)))
		check(x, y, z)
		check(x, y, -z)
	}
	// z = 1 + 2^-24 (halfway between 1 and its float32 successor, before the product moves it)
	// plus products far below it: rounding the sum to float64 first lands on the halfway
	// point and then rounds to even, the exact sum does not.
	for _, e := range []int{-60, -70, -80, -100} {
		x := float32(math.Exp2(float64(e) / 2))
		check(x, x, 1+float32(math.Exp2(-23)))
		check(x, -x, 1+float32(math.Exp2(-23)))
		check(x, x, float32(1)+float32(math.Exp2(-23))*3)
	}
	check(1+float32(math.Exp2(-12)), 1+float32(math.Exp2(-12)), 0)
	check(1+float32(math.Exp2(-12)), 1-float32(math.Exp2(-13)), -1)
	check(float32(math.MaxFloat32), 2, 0)
	check(0, 0, 0)
}

// TestSGEMMKernel checks the assembly kernels bit for bit against the Go one, one tile and
// several down a panel, A packed and A read in place.
func TestSGEMMKernel(t *testing.T) {
	if !useFMAKernel {
		t.Skip("no assembly kernel on this CPU")
	}
	for _, kc := range []int{1, 3, 4, 5, 64, 255, 256} {
		for flags := range 4 {
			for _, cols := range []int{sgemmNR, sgemmNR / 2} {
				for _, tiles := range []int{1, 3} {
					rows := tiles * sgemmMR
					a, b := randVec(kc*rows, uint64(kc), 1), randVec(kc*sgemmNR, uint64(kc)+1, 1)
					const ldc = sgemmNR + 7
					c0 := randVec(rows*ldc, uint64(kc)+2, 1)
					want, got := slices.Clone(c0), slices.Clone(c0)
					sgemmKernelsGo(kc, a, 1, sgemmMR, sgemmMR*kc, b, want, ldc, 0.3, flags, cols, tiles)
					sgemmKernel(kc, a, sgemmMR, b, got, ldc, 0.3, flags, cols, 0, tiles)
					// The same A as rows of kc (stride kc+5), read in place.
					inPlace := make([]float32, rows*(kc+5))
					for r := range rows {
						for kk := range kc {
							inPlace[r*(kc+5)+kk] = a[r/sgemmMR*sgemmMR*kc+kk*sgemmMR+r%sgemmMR]
						}
					}
					gotRows := slices.Clone(c0)
					sgemmKernelRows(kc, inPlace, kc+5, b, gotRows, ldc, 0.3, flags, cols, 0, tiles)
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) || math.Float32bits(gotRows[i]) != math.Float32bits(want[i]) {
							t.Fatalf("kc=%d flags=%d cols=%d tiles=%d: element %d = %g (rows in place: %g), want %g", kc, flags, cols, tiles, i, got[i], gotRows[i], want[i])
						}
					}
				}
			}
		}
	}
}

// TestScatterRows checks the layout copy used to pack operands against its definition, on
// row counts around its 32-row chunks and the widths and strides the packings use.
func TestScatterRows(t *testing.T) {
	for _, s := range []struct{ rows, blocks, width, lds int }{
		{1, 1, 8, 8}, {7, 3, 8, 40}, {31, 16, 8, 128}, {32, 2, 32, 64}, {33, 5, 32, 200},
		{100, 4, 16, 64}, {513, 16, 8, 512}, {64, 1, 32, 32},
	} {
		bsd := s.rows*s.width + 3 // blocks apart by more than they hold: the gaps stay untouched
		src := randVec(s.rows*s.lds, 9, 1)
		want := make([]float32, s.blocks*bsd)
		for r := range s.rows {
			for b := range s.blocks {
				copy(want[b*bsd+r*s.width:b*bsd+(r+1)*s.width], src[r*s.lds+b*s.width:])
			}
		}
		got := make([]float32, len(want))
		scatterRows(got, src, s.rows, s.blocks, s.width, s.lds, bsd)
		if !slices.Equal(got, want) {
			t.Errorf("%+v: laid out differently from the definition", s)
		}
	}
}

// sgemmChains is the definition sgemmFMA keeps, one element at a time: each element one
// chain of fma32 over k in order, from zero, or from beta C when alpha is 1; then times alpha,
// and plus beta C when alpha is not 1.
func sgemmChains(ta, tb bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := range m {
		for j := range n {
			var acc float32
			if alpha == 1 && beta != 0 {
				acc = beta * c[i*ldc+j]
			}
			for p := range k {
				ai, bi := i*lda+p, p*ldb+j
				if ta {
					ai = p*lda + i
				}
				if tb {
					bi = j*ldb + p
				}
				x, y := a[ai], b[bi]
				acc = fma32(x, y, acc)
			}
			switch {
			case alpha == 1:
			case beta == 0:
				acc *= alpha
			default:
				acc = alpha*acc + float32(beta*c[i*ldc+j])
			}
			c[i*ldc+j] = acc
		}
	}
}

// TestSGEMMFMA checks the tiled product bit for bit against the chains, for any cut of C
// into tasks and any thread count, at edges of the tiles, inner dimensions across chunks,
// both transposes and the alpha, beta cases.
func TestSGEMMFMA(t *testing.T) {
	for _, tc := range []struct {
		ta, tb      bool
		m, n, k     int
		alpha, beta float32
	}{
		{false, true, 64, 64, 64, 1, 0}, {false, false, 64, 96, 300, 1, 1}, {true, false, 40, 32, 520, 1, 1},
		{true, true, 13, 37, 257, 0.125, 0}, {false, true, 300, 70, 9, 1, 0.5}, {false, false, 9, 600, 33, 0.5, 1},
		{true, false, 1, 1, 1, 1, 0}, {false, false, 5, 7, 0, 1, 0.5}, {false, true, 17, 33, 3, 2, 0},
		{false, true, 530, 40, 64, 1, 0}, {true, false, 8, 1030, 100, 1, 1},
		{false, false, 64, 16, 64, 1, 0}, {true, false, 64, 16, 64, 1, 1}, {false, true, 24, 48, 16, 0.25, 0},
	} {
		t.Run(fmt.Sprintf("%+v", tc), func(t *testing.T) {
			lda, ldb := denseStrides(tc.ta, tc.tb, tc.m, tc.n, tc.k)
			ldc := tc.n + 3
			a, b := randVec(max(1, tc.m*tc.k), 1, 1), randVec(max(1, tc.k*tc.n), 2, 1)
			c0 := randVec(tc.m*ldc, 3, 1)
			if tc.beta == 0 {
				for i := range c0 {
					c0[i] = float32(math.NaN())
				}
			}
			want := slices.Clone(c0)
			sgemmChains(tc.ta, tc.tb, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, want, ldc)
			for _, threads := range []int{1, 2, 3} {
				p := newPool(threads)
				defer p.stop()
				for _, tasks := range []int{1, 4, 64} {
					got := slices.Clone(c0)
					sgemmFMA(tc.ta, tc.tb, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, got, ldc, p.run, tasks)
					if threads == 1 && tasks == 1 {
						one := slices.Clone(c0)
						sgemmSerial(tc.ta, tc.tb, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, one, ldc)
						if !slices.EqualFunc(got, one, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }) {
							t.Fatal("sgemmSerial differs from sgemmFMA")
						}
					}
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("threads=%d tasks=%d: element %d (row %d col %d) = %g, want %g", threads, tasks, i, i/ldc, i%ldc, got[i], want[i])
						}
					}
				}
			}
		})
	}
}

// BenchmarkSGEMM compares the fp32 products of the d512 model (4,096 tokens) on oneDNN's sgemm
// in 256-row calls and on cbs's own kernel, at 1 and 2 threads.
func BenchmarkSGEMM(b *testing.B) {
	for _, s := range []struct {
		name    string
		ta, tb  bool
		m, n, k int
	}{
		{"xWt_4096x512x512", false, true, 4096, 512, 512},
		{"xWt_4096x2048x512", false, true, 4096, 2048, 512},
		{"xWt_4096x512x2048", false, true, 4096, 512, 2048},
		{"dyW_4096x512x2048", false, false, 4096, 512, 2048},
		{"dyW_4096x2048x512", false, false, 4096, 2048, 512},
		{"dYtX_2048x512x4096", true, false, 2048, 512, 4096},
		{"dYtX_512x512x4096", true, false, 512, 512, 4096},
		{"dYtX_512x2048x4096", true, false, 512, 2048, 4096},
	} {
		lda, ldb := denseStrides(s.ta, s.tb, s.m, s.n, s.k)
		a, bm := randVec(s.m*s.k, 1, 1), randVec(s.k*s.n, 2, 1)
		c := make([]float32, s.m*s.n)
		for _, impl := range []string{"onednn", "cbs"} {
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/threads=%d", s.name, impl, threads), func(b *testing.B) {
					b.Setenv("CBS_FP32_GEMM", impl)
					cpu := New(threads)
					if cpu.FP32Library() != impl {
						b.Skipf("fp32 products on %s", cpu.FP32Library())
					}
					for b.Loop() {
						cpu.Gemm(s.ta, s.tb, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
					}
					b.ReportMetric(2*float64(s.m)*float64(s.n)*float64(s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// BenchmarkScatterRows times laying out A^T in groups of 8 rows (a 128-row block, 512 deep)
// and B in panels of 32 columns (4,096 deep), as the d512 weight gradients do.
func BenchmarkScatterRows(b *testing.B) {
	for _, s := range []struct {
		name                     string
		rows, blocks, width, lds int
	}{
		{"At_128x512_lda512", 512, 16, 8, 512},
		{"At_128x512_lda2048", 512, 16, 8, 2048},
		{"B_4096x512", 4096, 16, 32, 512},
		{"B_4096x2048", 4096, 64, 32, 2048},
	} {
		bsd := s.rows * s.width
		src, dst := make([]float32, s.rows*s.lds), make([]float32, s.blocks*bsd)
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				scatterRows(dst, src, s.rows, s.blocks, s.width, s.lds, bsd)
			}
			b.ReportMetric(float64(s.rows*s.blocks*s.width*8)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
