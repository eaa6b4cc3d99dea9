// Package blas gives the CPU backend one small, row-major GEMM interface with
// two implementations: OpenBLAS, loaded at run time with purego so the binary
// builds with CGO_ENABLED=0 and runs on machines without the library, and
// gonum's pure-Go BLAS as the fallback.
//
// Every call is checked against m, n, k and the leading dimensions in Go
// before any pointer reaches C: a wrong shape must panic, never scribble
// over the Go heap.
//
// Threading: OpenBLAS keeps its own pthread pool whose size SetThreads
// changes process-wide. Its idle workers spin (sched_yield loop) for a while
// after each threaded call, and Go goroutines doing elementwise work in that
// window share the cores with them; see bench_test.go and the package README
// for measurements.
package blas

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Impl is a row-major GEMM: C = alpha op(A) op(B) + beta C, where op(X) is X
// or X^T and each leading dimension is the row stride of the stored matrix.
// op(A) is m x k, op(B) is k x n and C is m x n.
type Impl interface {
	Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	Dgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int)
	// SetThreads sets how many threads one call may use. For OpenBLAS the
	// setting is global to the process; gonum ignores it (its GEMM uses
	// GOMAXPROCS goroutines).
	SetThreads(n int)
}

// Info describes the implementation Default picked, for doctor and bench
// reports.
type Info struct {
	Library        string // "openblas" or "gonum"
	Path           string // file the library was loaded from; empty for gonum
	CoreName       string // OpenBLAS kernel family, e.g. "Haswell", "Cooperlake"
	Config         string // openblas_get_config()
	Threads        int    // OpenBLAS threads at load time
	FallbackReason string // why OpenBLAS is not in use; empty when it is
	// CoreTypeSet is the OPENBLAS_CORETYPE that Default chose from the CPU
	// flags because the environment did not set one; empty otherwise.
	CoreTypeSet string
}

func (i Info) String() string {
	if i.Library == "openblas" {
		set := ""
		if i.CoreTypeSet != "" {
			set = ", OPENBLAS_CORETYPE set from cpu flags"
		}
		return fmt.Sprintf("openblas %s (core %s%s, %d threads, %s)", i.Path, i.CoreName, set, i.Threads, i.Config)
	}
	return fmt.Sprintf("gonum (%s)", i.FallbackReason)
}

var (
	defaultOnce sync.Once
	defaultImpl Impl
	defaultInfo Info
)

// Default returns OpenBLAS when it loads and gonum otherwise. It loads once
// per process. CBS_BLAS=gonum forces the fallback; CBS_OPENBLAS names the
// library file to use instead of searching the usual locations. When
// OPENBLAS_CORETYPE is unset it is set from the CPU flags first (see
// coreTypeFor).
func Default() (Impl, Info) {
	defaultOnce.Do(func() {
		if v := os.Getenv("CBS_BLAS"); strings.EqualFold(v, "gonum") {
			defaultImpl, defaultInfo = Gonum(), Info{Library: "gonum", FallbackReason: "CBS_BLAS=gonum"}
			return
		}
		coreType := ""
		if _, set := os.LookupEnv("OPENBLAS_CORETYPE"); !set {
			if coreType = coreTypeFor(cpuFlags()); coreType != "" {
				// OpenBLAS reads this in its load-time constructor. purego
				// routes os.Setenv to libc's setenv, so the library sees it.
				os.Setenv("OPENBLAS_CORETYPE", coreType)
			}
		}
		ob, info, err := LoadOpenBLAS(os.Getenv("CBS_OPENBLAS"))
		if err != nil {
			defaultImpl, defaultInfo = Gonum(), Info{Library: "gonum", FallbackReason: err.Error()}
			return
		}
		info.CoreTypeSet = coreType
		defaultImpl, defaultInfo = ob, info
	})
	return defaultImpl, defaultInfo
}

// Gemm calls impl.Sgemm or impl.Dgemm according to T, so generic model code
// needs no type switch of its own.
func Gemm[T float32 | float64](impl Impl, transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	switch a := any(a).(type) {
	case []float32:
		impl.Sgemm(transA, transB, m, n, k, float32(alpha), a, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	case []float64:
		impl.Dgemm(transA, transB, m, n, k, float64(alpha), a, lda, any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	}
}

// check panics unless a, b and c hold the matrices described. It returns
// false when there is nothing for the library to do (m or n is zero, or k is
// zero and the caller has to apply beta itself).
func check(transA, transB bool, m, n, k, lenA, lda, lenB, ldb, lenC, ldc int) bool {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("blas: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	// Rows and columns of A and B as stored, before op().
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMat("a", ar, ac, lenA, lda)
	checkMat("b", br, bc, lenB, ldb)
	checkMat("c", m, n, lenC, ldc)
	// OpenBLAS0 (LP64) takes 32-bit ints; offsets inside it are 64-bit.
	for _, v := range [...]int{m, n, k, lda, ldb, ldc} {
		if v > math.MaxInt32 {
			panic(fmt.Sprintf("blas: dimension %d exceeds int32", v))
		}
	}
	return m > 0 && n > 0 && k > 0
}

func checkMat(name string, rows, cols, n, ld int) {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("blas: ld%s=%d < max(1, %d columns)", name, ld, cols))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; n < need {
		panic(fmt.Sprintf("blas: len(%s)=%d < %d for %dx%d with ld %d", name, n, need, rows, cols, ld))
	}
}

// scaleC applies C = beta C, the whole of GEMM when k is zero. BLAS treats
// beta == 0 as an assignment so that NaNs already in C do not survive.
func scaleC[T float32 | float64](m, n int, beta T, c []T, ldc int) {
	if beta == 1 {
		return
	}
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

type gonumImpl struct{ g gonum.Implementation }

// Gonum returns the pure-Go implementation.
func Gonum() Impl { return gonumImpl{} }

func trans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

func (g gonumImpl) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if !check(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		if m > 0 && n > 0 {
			scaleC(m, n, beta, c, ldc)
		}
		return
	}
	g.g.Sgemm(trans(transA), trans(transB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func (g gonumImpl) Dgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if !check(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		if m > 0 && n > 0 {
			scaleC(m, n, beta, c, ldc)
		}
		return
	}
	g.g.Dgemm(trans(transA), trans(transB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func (gonumImpl) SetThreads(int) {}

// coreTypeFor names the OpenBLAS kernel family for an x86-64 CPU with the
// given /proc/cpuinfo flags, or "" to leave the choice to OpenBLAS.
// OpenBLAS's own detection goes by family and model number, and a release
// older than the CPU falls back to generic SSE3 kernels ("Prescott"): 0.3.21
// does so on Emerald Rapids (family 6, model 207), where that is 4x slower
// than its AVX-512 kernels. The flags say what the kernels need directly.
// Cooperlake is SkylakeX plus bf16, and both use the same sgemm/dgemm
// kernels, so either choice is right for an AVX-512 CPU.
func coreTypeFor(flags map[string]bool) string {
	switch {
	case flags["avx512f"] && flags["avx512vl"] && flags["avx512bw"] && flags["avx512dq"] && flags["avx512_bf16"]:
		return "Cooperlake"
	case flags["avx512f"] && flags["avx512vl"] && flags["avx512bw"] && flags["avx512dq"]:
		return "SkylakeX"
	case flags["avx2"] && flags["fma"]:
		return "Haswell"
	}
	return ""
}

// cpuFlags returns the first processor's flags from /proc/cpuinfo; empty
// where there is no such file, which leaves OpenBLAS to its own detection.
func cpuFlags() map[string]bool {
	flags := map[string]bool{}
	if runtime.GOARCH != "amd64" {
		return flags
	}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return flags
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		key, val, ok := strings.Cut(s.Text(), ":")
		if ok && strings.TrimSpace(key) == "flags" {
			for _, fl := range strings.Fields(val) {
				flags[fl] = true
			}
			break
		}
	}
	return flags
}

// CPUInfo returns the processor model name from /proc/cpuinfo, or "unknown".
func CPUInfo() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		key, val, ok := strings.Cut(s.Text(), ":")
		if ok && strings.TrimSpace(key) == "model name" {
			return strings.TrimSpace(val)
		}
	}
	return "unknown"
}
