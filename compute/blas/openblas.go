//go:build (linux || darwin || freebsd) && (amd64 || arm64)

package blas

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// searchPaths lists where distributions put OpenBLAS. The bare sonames come
// first so LD_LIBRARY_PATH and ld.so.cache win; the Debian alternatives
// paths follow for systems where only libblas.so.3 points at OpenBLAS.
var searchPaths = []string{
	"libopenblas.so.0",
	"libopenblas.so",
	"/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
	"/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
	"/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3",
	"/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
	"/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
	"/usr/lib64/libopenblas.so.0",
	"/usr/lib64/libopenblasp.so.0",
	"/usr/lib/libopenblas.so.0",
	"/usr/local/lib/libopenblas.so.0",
	"/usr/local/lib/libopenblas.so",
	"/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
	"/usr/local/opt/openblas/lib/libopenblas.dylib",
}

type openBLAS struct {
	// The Fortran entry points take every argument by reference, so they can be called through
	// purego.SyscallN without the reflection (and its ~11 allocations per call) of a registered
	// function; the scalars live in pooled argument blocks on the heap.
	sgemmF, dgemmF uintptr
	setThreads     func(n int32)
	getThreads     func() int32
	coreName       func() string
	config         func() string
}

// LoadOpenBLAS loads OpenBLAS from path, or from the first of the usual
// locations that loads when path is empty. A library that loads but lacks
// the OpenBLAS entry points (a reference libblas.so.3, say) is rejected, so
// the report never claims OpenBLAS for something else. Loading the same file
// twice returns the same process-wide library state.
func LoadOpenBLAS(path string) (Impl, Info, error) {
	paths := searchPaths
	if path != "" {
		paths = []string{path}
	}
	var errs []string
	for _, p := range paths {
		ob, err := loadFrom(p)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return ob, Info{
			Library:  "openblas",
			Path:     p,
			CoreName: ob.coreName(),
			Config:   strings.TrimSpace(ob.config()),
			Threads:  int(ob.getThreads()),
		}, nil
	}
	if path == "" {
		return nil, Info{}, fmt.Errorf("openblas not found in %d usual locations (set CBS_OPENBLAS); first error: %s", len(paths), errs[0])
	}
	return nil, Info{}, errors.New(errs[0])
}

func loadFrom(path string) (*openBLAS, error) {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("dlopen %s: %v", path, err)
	}
	ob := &openBLAS{}
	syms := []struct {
		name string
		fn   any
	}{
		{"openblas_set_num_threads", &ob.setThreads},
		{"openblas_get_num_threads", &ob.getThreads},
		{"openblas_get_corename", &ob.coreName},
		{"openblas_get_config", &ob.config},
	}
	for _, s := range syms {
		addr, err := purego.Dlsym(h, s.name)
		if err != nil || addr == 0 {
			purego.Dlclose(h)
			return nil, fmt.Errorf("%s: missing symbol %s", path, s.name)
		}
		purego.RegisterFunc(s.fn, addr)
	}
	for _, f := range []struct {
		name string
		addr *uintptr
	}{{"sgemm_", &ob.sgemmF}, {"dgemm_", &ob.dgemmF}} {
		addr, err := purego.Dlsym(h, f.name)
		if err != nil || addr == 0 {
			purego.Dlclose(h)
			return nil, fmt.Errorf("%s: missing symbol %s", path, f.name)
		}
		*f.addr = addr
	}
	return ob, nil
}

// gemmArgs are the by-reference scalars of one Fortran GEMM call.
type gemmArgs struct {
	ta, tb        byte
	m, n, k       int32
	lda, ldb, ldc int32
	alphaS, betaS float32
	alphaD, betaD float64
	// args is the argument list itself: passing an existing slice to the variadic SyscallN
	// allocates nothing. Every pointer in it is to heap memory (this block, the caller's
	// matrices), which does not move.
	args [13]uintptr
}

var gemmArgPool = sync.Pool{New: func() any { return new(gemmArgs) }}

func fortranTrans(t bool) byte {
	if t {
		return 'T'
	}
	return 'N'
}

// fill sets the arguments of a column-major call computing the row-major product: row-major
// C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a row-major matrix read
// column-major is its transpose, so the operands swap and each keeps its own flag.
func (g *gemmArgs) fill(transA, transB bool, m, n, k, lda, ldb, ldc int) {
	g.ta, g.tb = fortranTrans(transB), fortranTrans(transA)
	g.m, g.n, g.k = int32(n), int32(m), int32(k)
	g.lda, g.ldb, g.ldc = int32(ldb), int32(lda), int32(ldc)
}

func (o *openBLAS) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	fortranGemm(o.sgemmF, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func (o *openBLAS) Dgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	fortranGemm(o.dgemmF, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// fortranGemm calls sgemm_ or dgemm_ (fn) for the row-major product, with its scalars in a
// pooled argument block.
func fortranGemm[T float32 | float64](fn uintptr, transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if !check(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		if m > 0 && n > 0 {
			scaleC(m, n, beta, c, ldc)
		}
		return
	}
	g := gemmArgPool.Get().(*gemmArgs)
	g.fill(transA, transB, m, n, k, lda, ldb, ldc)
	var pAlpha, pBeta unsafe.Pointer
	switch al := any(alpha).(type) {
	case float32:
		g.alphaS, g.betaS = al, any(beta).(float32)
		pAlpha, pBeta = unsafe.Pointer(&g.alphaS), unsafe.Pointer(&g.betaS)
	case float64:
		g.alphaD, g.betaD = al, any(beta).(float64)
		pAlpha, pBeta = unsafe.Pointer(&g.alphaD), unsafe.Pointer(&g.betaD)
	}
	g.args = [13]uintptr{
		uintptr(unsafe.Pointer(&g.ta)), uintptr(unsafe.Pointer(&g.tb)),
		uintptr(unsafe.Pointer(&g.m)), uintptr(unsafe.Pointer(&g.n)), uintptr(unsafe.Pointer(&g.k)),
		uintptr(pAlpha), uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&g.lda)),
		uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&g.ldb)),
		uintptr(pBeta), uintptr(unsafe.Pointer(&c[0])), uintptr(unsafe.Pointer(&g.ldc)),
	}
	purego.SyscallN(fn, g.args[:]...)
	gemmArgPool.Put(g)
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(c)
}

// SetThreads changes the size of OpenBLAS's pool for the whole process.
func (o *openBLAS) SetThreads(n int) {
	o.setThreads(int32(max(1, n)))
}

// Threads reports OpenBLAS's current thread count.
func (o *openBLAS) Threads() int { return int(o.getThreads()) }
