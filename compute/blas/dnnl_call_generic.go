//go:build (linux || darwin || freebsd) && (amd64 || arm64) && !(linux && amd64)

package blas

import (
	"runtime"

	"github.com/ebitengine/purego"
)

// dnnlGemms calls oneDNN's GEMMs through purego.RegisterFunc, which allocates on every call;
// linux/amd64 has an allocation-free trampoline instead.
type dnnlGemms struct {
	sgemmFn, bf16Fn, ompSet uintptr
	sgemmF                  func(ta, tb byte, m, n, k int64, alpha float32, a []float32, lda int64, b []float32, ldb int64, beta float32, c []float32, ldc int64) int32
	bf16F                   func(ta, tb byte, m, n, k int64, alpha float32, a []uint16, lda int64, b []uint16, ldb int64, beta float32, c []float32, ldc int64) int32
}

func (g *dnnlGemms) bind(sgemm, bf16, ompSet uintptr) {
	g.sgemmFn, g.bf16Fn, g.ompSet = sgemm, bf16, ompSet
	purego.RegisterFunc(&g.sgemmF, sgemm)
	purego.RegisterFunc(&g.bf16F, bf16)
}

// pin sets the OpenMP thread count on the calling OS thread, pinning the goroutine to that
// thread until unpin so that the call which follows runs there.
func (g *dnnlGemms) pin(threads int32) {
	if g.ompSet != 0 {
		runtime.LockOSThread()
		purego.SyscallN(g.ompSet, uintptr(threads))
	}
}

func (g *dnnlGemms) unpin() {
	if g.ompSet != 0 {
		runtime.UnlockOSThread()
	}
}

func (g *dnnlGemms) sgemm(threads int32, ta, tb byte, m, n, k int64, alpha float32, a []float32, lda int64, b []float32, ldb int64, beta float32, c []float32, ldc int64) int32 {
	g.pin(threads)
	defer g.unpin()
	return g.sgemmF(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func (g *dnnlGemms) gemmBF16(threads int32, ta, tb byte, m, n, k int64, alpha float32, a []uint16, lda int64, b []uint16, ldb int64, beta float32, c []float32, ldc int64) int32 {
	g.pin(threads)
	defer g.unpin()
	return g.bf16F(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
