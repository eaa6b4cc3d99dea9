//go:build (linux || darwin || freebsd) && (amd64 || arm64)

package blas

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// CBLAS enum values from cblas.h.
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
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
	sgemm      func(order, ta, tb, m, n, k int32, alpha float32, a unsafe.Pointer, lda int32, b unsafe.Pointer, ldb int32, beta float32, c unsafe.Pointer, ldc int32)
	dgemm      func(order, ta, tb, m, n, k int32, alpha float64, a unsafe.Pointer, lda int32, b unsafe.Pointer, ldb int32, beta float64, c unsafe.Pointer, ldc int32)
	setThreads func(n int32)
	getThreads func() int32
	coreName   func() string
	config     func() string
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
		{"cblas_sgemm", &ob.sgemm},
		{"cblas_dgemm", &ob.dgemm},
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
	return ob, nil
}

func cblasTransFlag(t bool) int32 {
	if t {
		return cblasTrans
	}
	return cblasNoTrans
}

func (o *openBLAS) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if !check(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		if m > 0 && n > 0 {
			scaleC(m, n, beta, c, ldc)
		}
		return
	}
	o.sgemm(cblasRowMajor, cblasTransFlag(transA), cblasTransFlag(transB), int32(m), int32(n), int32(k),
		alpha, unsafe.Pointer(&a[0]), int32(lda), unsafe.Pointer(&b[0]), int32(ldb), beta, unsafe.Pointer(&c[0]), int32(ldc))
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(c)
}

func (o *openBLAS) Dgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if !check(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		if m > 0 && n > 0 {
			scaleC(m, n, beta, c, ldc)
		}
		return
	}
	o.dgemm(cblasRowMajor, cblasTransFlag(transA), cblasTransFlag(transB), int32(m), int32(n), int32(k),
		alpha, unsafe.Pointer(&a[0]), int32(lda), unsafe.Pointer(&b[0]), int32(ldb), beta, unsafe.Pointer(&c[0]), int32(ldc))
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
