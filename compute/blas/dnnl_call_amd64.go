//go:build linux && amd64

package blas

import (
	"runtime"
	"unsafe"
)

// dnnlGemmArgs is the block dnnlGemmTrampoline reads its arguments from and writes the status
// to; the assembly finds the fields through go_asm.h, so their order is free. A, B and C are
// unsafe.Pointers so that a garbage collection during the call sees the operands as reachable
// from the block.
type dnnlGemmArgs struct {
	fn             uintptr
	ompSet         uintptr // omp_set_num_threads, called with threads first; 0 to skip
	threads        int64
	transA, transB uintptr
	m, n, k        int64
	a              unsafe.Pointer
	lda            int64
	b              unsafe.Pointer
	ldb            int64
	c              unsafe.Pointer
	ldc            int64
	alpha, beta    float32
	status         int32
}

// dnnlGemmTrampolineABI0 is the address of the assembly trampoline, set by a DATA directive:
// cgocall wants a raw code pointer, which a Go func value is not.
var dnnlGemmTrampolineABI0 uintptr

// runtime_cgocall runs fn on the system stack with arg in DI, accounted as a system call so
// that the scheduler hands this P to other goroutines while C runs. The block may live on the
// caller's stack: a goroutine's stack is never moved while it is in a system call, and the
// GEMMs never call back into Go, which is what could grow it.
//
//go:linkname runtime_cgocall runtime.cgocall
//go:noescape
func runtime_cgocall(fn uintptr, arg unsafe.Pointer) int32

// dnnlGemms calls oneDNN's GEMMs through dnnlGemmTrampoline rather than purego.RegisterFunc,
// whose reflection costs ~16 allocations and microseconds per call: a training step makes tens
// of thousands of small attention products.
//
// The OpenMP thread count is set inside the same C call as the product, so both run on one
// OS thread without pinning the goroutine to it.
type dnnlGemms struct {
	sgemmFn, bf16Fn, ompSet uintptr
}

func (g *dnnlGemms) bind(sgemm, bf16, ompSet uintptr) {
	g.sgemmFn, g.bf16Fn, g.ompSet = sgemm, bf16, ompSet
}

func (g *dnnlGemms) sgemm(threads int32, ta, tb byte, m, n, k int64, alpha float32, a []float32, lda int64, b []float32, ldb int64, beta float32, c []float32, ldc int64) int32 {
	s := g.call(g.sgemmFn, threads, ta, tb, m, n, k, alpha, unsafe.Pointer(unsafe.SliceData(a)), lda, unsafe.Pointer(unsafe.SliceData(b)), ldb, beta, c, ldc)
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	return s
}

func (g *dnnlGemms) gemmBF16(threads int32, ta, tb byte, m, n, k int64, alpha float32, a []uint16, lda int64, b []uint16, ldb int64, beta float32, c []float32, ldc int64) int32 {
	s := g.call(g.bf16Fn, threads, ta, tb, m, n, k, alpha, unsafe.Pointer(unsafe.SliceData(a)), lda, unsafe.Pointer(unsafe.SliceData(b)), ldb, beta, c, ldc)
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	return s
}

// call runs the GEMM at fn; the caller keeps a and b alive until it returns.
func (g *dnnlGemms) call(fn uintptr, threads int32, ta, tb byte, m, n, k int64, alpha float32, a unsafe.Pointer, lda int64, b unsafe.Pointer, ldb int64, beta float32, c []float32, ldc int64) int32 {
	args := dnnlGemmArgs{
		fn: fn, ompSet: g.ompSet, threads: int64(threads),
		transA: uintptr(ta), transB: uintptr(tb),
		m: m, n: n, k: k,
		a: a, lda: lda, b: b, ldb: ldb,
		c: unsafe.Pointer(unsafe.SliceData(c)), ldc: ldc,
		alpha: alpha, beta: beta,
	}
	runtime_cgocall(dnnlGemmTrampolineABI0, unsafe.Pointer(&args))
	runtime.KeepAlive(c)
	return args.status
}
