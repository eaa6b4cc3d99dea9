//go:build (linux || darwin || freebsd) && (amd64 || arm64)

package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/ebitengine/purego"

	"cbs/compute"
)

// dnnlRegistered is the GEMMs bound with purego.RegisterFunc, the reference the direct call
// must agree with bit for bit.
type dnnlRegistered struct {
	d     *DNNL
	sgemm func(ta, tb byte, m, n, k int64, alpha float32, a []float32, lda int64, b []float32, ldb int64, beta float32, c []float32, ldc int64) int32
	bf16  func(ta, tb byte, m, n, k int64, alpha float32, a []uint16, lda int64, b []uint16, ldb int64, beta float32, c []float32, ldc int64) int32
}

func registered(d *DNNL) *dnnlRegistered {
	r := &dnnlRegistered{d: d}
	purego.RegisterFunc(&r.sgemm, d.gemm.sgemmFn)
	purego.RegisterFunc(&r.bf16, d.gemm.bf16Fn)
	return r
}

// pin sets the OpenMP thread count on the goroutine's OS thread and keeps the goroutine there
// for the RegisterFunc call that follows, which runs as a separate C call.
func (r *dnnlRegistered) pin() func() {
	if r.d.ompSet == 0 {
		return func() {}
	}
	runtime.LockOSThread()
	purego.SyscallN(r.d.ompSet, uintptr(r.d.threads.Load()))
	return runtime.UnlockOSThread
}

// Sgemm and GemmBF16 skip the shape checks, which every caller here has passed already.
func (r *dnnlRegistered) Sgemm(ta, tb bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	defer r.pin()()
	r.d.end(r.sgemm(dnnlTrans(ta), dnnlTrans(tb), int64(m), int64(n), int64(k), alpha, a, int64(lda), b, int64(ldb), beta, c, int64(ldc)))
}

func (r *dnnlRegistered) GemmBF16(ta, tb bool, m, n, k int, alpha float32, a []uint16, lda int, b []uint16, ldb int, beta float32, c []float32, ldc int) {
	defer r.pin()()
	r.d.end(r.bf16(dnnlTrans(ta), dnnlTrans(tb), int64(m), int64(n), int64(k), alpha, a, int64(lda), b, int64(ldb), beta, c, int64(ldc)))
}

func sameBits(x, y []float32) int {
	for i := range x {
		if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
			return i
		}
	}
	return -1
}

// TestDNNLCallMatchesRegisterFunc checks that the direct call passes every argument where the
// library expects it: each scalar lands in a different register or stack slot, so a swap or
// a wrong width shows up as a different result, an error status or a crash.
func TestDNNLCallMatchesRegisterFunc(t *testing.T) {
	d := dnnl(t)
	ref := registered(d)
	r := rand.New(rand.NewPCG(11, 12))
	cases := append(slices.Clone(gemmCases),
		gemmCase{1, 37, 1, 0, 3, 2, 1.5, 0},
		gemmCase{29, 1, 1, 4, 0, 0, -2, 0.25},
		gemmCase{1, 1, 300, 0, 0, 5, 0.5, -1},
		gemmCase{7, 9, 1, 1, 2, 3, 1, 1},
		// Operands of several megabytes: the addresses are far apart, and lda/ldb are large.
		gemmCase{16, 24, 65536, 3, 5, 7, 0.75, -0.5},
	)
	for _, tc := range cases {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				name, a, lda, b, ldb, c, ldc := caseOperands[float32](r, tc, ta, tb)
				a16, b16 := make([]uint16, len(a)), make([]uint16, len(b))
				compute.RoundBF16(a16, a)
				compute.RoundBF16(b16, b)
				alpha, beta := float32(tc.alpha), float32(tc.beta)

				want := slices.Clone(c)
				ref.Sgemm(ta, tb, tc.m, tc.n, tc.k, alpha, a, lda, b, ldb, beta, want, ldc)
				got := slices.Clone(c)
				d.Sgemm(ta, tb, tc.m, tc.n, tc.k, alpha, a, lda, b, ldb, beta, got, ldc)
				if i := sameBits(got, want); i >= 0 {
					t.Fatalf("%s: sgemm c[%d] = %g, RegisterFunc gives %g", name, i, got[i], want[i])
				}
				exact := naive(ta, tb, tc.m, tc.n, tc.k, alpha, a, lda, b, ldb, beta, c, ldc)
				bound := 2e-7 * float64(tc.k+1)
				for i := range got {
					if diff := math.Abs(float64(got[i]) - float64(exact[i])); !(diff <= bound*(1+math.Abs(float64(exact[i])))) {
						t.Fatalf("%s: sgemm c[%d] = %g, want %g (diff %g)", name, i, got[i], exact[i], diff)
					}
				}

				want = slices.Clone(c)
				ref.GemmBF16(ta, tb, tc.m, tc.n, tc.k, alpha, a16, lda, b16, ldb, beta, want, ldc)
				got = slices.Clone(c)
				d.GemmBF16(ta, tb, tc.m, tc.n, tc.k, alpha, a16, lda, b16, ldb, beta, got, ldc)
				if i := sameBits(got, want); i >= 0 {
					t.Fatalf("%s: bf16 c[%d] = %g, RegisterFunc gives %g", name, i, got[i], want[i])
				}
			}
		}
	}
}

// BenchmarkDNNLCallOverhead times products small enough that the call itself shows: the
// RegisterFunc binding against the direct call.
func BenchmarkDNNLCallOverhead(b *testing.B) {
	d, info := DefaultDNNL()
	if d == nil {
		b.Skip(info.Unavailable)
	}
	d.SetThreads(1)
	ref := registered(d)
	r := rand.New(rand.NewPCG(13, 14))
	for _, n := range []int{8, 64} {
		a, bb, c := randSlice[float32](r, n*n), randSlice[float32](r, n*n), make([]float32, n*n)
		a16, b16 := make([]uint16, n*n), make([]uint16, n*n)
		compute.RoundBF16(a16, a)
		compute.RoundBF16(b16, bb)
		kernels := []struct {
			name string
			f    func()
		}{
			{"f32/registerfunc", func() { ref.Sgemm(false, true, n, n, n, 1, a, n, bb, n, 0, c, n) }},
			{"f32/direct", func() { d.Sgemm(false, true, n, n, n, 1, a, n, bb, n, 0, c, n) }},
			{"bf16/registerfunc", func() { ref.GemmBF16(false, true, n, n, n, 1, a16, n, b16, n, 0, c, n) }},
			{"bf16/direct", func() { d.GemmBF16(false, true, n, n, n, 1, a16, n, b16, n, 0, c, n) }},
		}
		// oneDNN generates its kernels on first use; without a warm-up the first entry would
		// carry that cost.
		for _, k := range kernels {
			k.f()
		}
		for _, k := range kernels {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", n, n, n, k.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					k.f()
				}
			})
		}
	}
}

// TestDNNLCallSetsThreads checks that a call leaves its OS thread at SetThreads' OpenMP count:
// the count is set in the same C call as the product, which must therefore read it.
func TestDNNLCallSetsThreads(t *testing.T) {
	d := dnnl(t)
	if d.ompSet == 0 {
		t.Skip("not the OpenMP runtime")
	}
	defer d.SetThreads(1)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	a, b, c := make([]float32, 4), make([]float32, 4), make([]float32, 4)
	a16, b16 := make([]uint16, 4), make([]uint16, 4)
	for _, n := range []int{3, 1, 2} {
		d.SetThreads(n)
		d.Sgemm(false, false, 2, 2, 2, 1, a, 2, b, 2, 0, c, 2)
		if got, _, _ := purego.SyscallN(d.ompMax); int32(got) != int32(n) {
			t.Errorf("after Sgemm at %d threads: omp_get_max_threads = %d", n, int32(got))
		}
		purego.SyscallN(d.ompSet, 7)
		d.GemmBF16(false, false, 2, 2, 2, 1, a16, 2, b16, 2, 0, c, 2)
		if got, _, _ := purego.SyscallN(d.ompMax); int32(got) != int32(n) {
			t.Errorf("after GemmBF16 at %d threads: omp_get_max_threads = %d", n, int32(got))
		}
	}
}
