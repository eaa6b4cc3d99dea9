//go:build (linux || darwin || freebsd) && (amd64 || arm64)

package blas

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/ebitengine/purego"
)

// DNNL is oneDNN's BLAS-style GEMMs, loaded at run time with purego: fp32 (dnnl_sgemm) and
// bf16 x bf16 with fp32 accumulation and output (dnnl_gemm_bf16bf16f32). Both are row-major,
// as in Impl. Shapes and slice lengths are checked in Go before any pointer reaches C.
//
// Threading: with the OpenMP runtime (Debian's build), each call runs on SetThreads threads:
// the count is set on the calling OS thread right before the call, since OpenMP keeps it per
// thread and Go moves goroutines between threads. With another runtime the library decides.
type DNNL struct {
	gemm dnnlGemms
	// ompSet and ompMax are omp_set_num_threads and omp_get_max_threads of the OpenMP runtime
	// oneDNN links; 0 when it uses another one.
	ompSet, ompMax uintptr
	threads        atomic.Int32
	info           DNNLInfo
}

// dnnlVersion is dnnl_version_t (its last field, the GPU runtime, is not read).
type dnnlVersion struct {
	major, minor, patch int32
	_                   int32
	hash                *byte
	cpuRuntime          uint32
	_                   uint32
}

// LoadDNNL loads oneDNN from path, or from the first of the usual locations that loads when
// path is empty. Loading the same file twice returns the same process-wide library state.
func LoadDNNL(path string) (*DNNL, error) {
	paths := dnnlSearchPaths
	if path != "" {
		paths = []string{path}
	}
	var errs []string
	for _, p := range paths {
		d, err := loadDNNLFrom(p)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return d, nil
	}
	if path == "" {
		return nil, fmt.Errorf("onednn not found in %d usual locations (set CBS_DNNL; Debian: apt-get install libdnnl2); first error: %s", len(paths), errs[0])
	}
	return nil, errors.New(errs[0])
}

func loadDNNLFrom(path string) (*DNNL, error) {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("dlopen %s: %v", path, err)
	}
	d := &DNNL{}
	var (
		version func() *dnnlVersion
		isa     func() int32
	)
	var sgemm, bf16 uintptr
	for _, s := range []struct {
		name string
		fn   any // a func to register, or the *uintptr that takes the address
	}{
		{"dnnl_sgemm", &sgemm},
		{"dnnl_gemm_bf16bf16f32", &bf16},
		{"dnnl_version", &version},
		{"dnnl_get_effective_cpu_isa", &isa},
	} {
		addr, err := purego.Dlsym(h, s.name)
		if err != nil || addr == 0 {
			purego.Dlclose(h)
			return nil, fmt.Errorf("%s: missing symbol %s (want oneDNN 2.x)", path, s.name)
		}
		if p, ok := s.fn.(*uintptr); ok {
			*p = addr
			continue
		}
		purego.RegisterFunc(s.fn, addr)
	}
	v := version()
	if v == nil || v.major < 2 {
		purego.Dlclose(h)
		return nil, fmt.Errorf("%s: oneDNN version %v, want 2.x or later", path, v)
	}
	d.info = DNNLInfo{
		Library: "onednn", Path: path,
		Version: fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch),
		Hash:    cString(v.hash), Runtime: runtimeName(v.cpuRuntime),
		ISA: isaName(uint32(isa())),
	}
	if v.cpuRuntime == 2 {
		// dlsym on the library's handle also searches what it links, here the OpenMP runtime.
		set, err1 := purego.Dlsym(h, "omp_set_num_threads")
		get, err2 := purego.Dlsym(h, "omp_get_max_threads")
		if err1 == nil && err2 == nil && set != 0 && get != 0 {
			d.ompSet, d.ompMax = set, get
			// Until SetThreads, a call runs on what OpenMP gives a new thread (OMP_NUM_THREADS,
			// else every core).
			r, _, _ := purego.SyscallN(get)
			d.threads.Store(int32(r))
		}
	}
	d.gemm.bind(sgemm, bf16, d.ompSet)
	return d, nil
}

// cString copies a NUL-terminated C string; "" for nil.
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	var b []byte
	for q := unsafe.Pointer(p); *(*byte)(q) != 0 && len(b) < 256; q = unsafe.Add(q, 1) {
		b = append(b, *(*byte)(q))
	}
	return string(b)
}

// Info describes the library; Threads is the current per-call count.
func (d *DNNL) Info() DNNLInfo {
	i := d.info
	if d.ompSet != 0 {
		i.Threads = int(d.threads.Load())
	}
	return i
}

// SetThreads sets how many threads each following call uses (OpenMP runtime only; otherwise
// it does nothing).
func (d *DNNL) SetThreads(n int) { d.threads.Store(int32(max(1, n))) }

// Threads is the per-call thread count, 0 when the runtime is not OpenMP.
func (d *DNNL) Threads() int {
	if d.ompSet == 0 {
		return 0
	}
	return int(d.threads.Load())
}

// end panics on a failed call.
func (d *DNNL) end(status int32) {
	if status != 0 {
		panic("blas: onednn gemm: " + dnnlStatus(status))
	}
}

func dnnlTrans(t bool) byte {
	if t {
		return 'T'
	}
	return 'N'
}

// Sgemm is dnnl_sgemm: row-major C = alpha op(A) op(B) + beta C in fp32.
func (d *DNNL) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if !check(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		if m > 0 && n > 0 {
			scaleC(m, n, beta, c, ldc)
		}
		return
	}
	d.end(d.gemm.sgemm(d.threads.Load(), dnnlTrans(transA), dnnlTrans(transB), int64(m), int64(n), int64(k), alpha, a, int64(lda), b, int64(ldb), beta, c, int64(ldc)))
}

// GemmBF16 is dnnl_gemm_bf16bf16f32: row-major C = alpha op(A) op(B) + beta C with A and B in
// bfloat16 (the high halves of float32s, as compute.ToBF16 makes them), products accumulated
// and C stored in fp32.
func (d *DNNL) GemmBF16(transA, transB bool, m, n, k int, alpha float32, a []uint16, lda int, b []uint16, ldb int, beta float32, c []float32, ldc int) {
	if !check(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		if m > 0 && n > 0 {
			scaleC(m, n, beta, c, ldc)
		}
		return
	}
	d.end(d.gemm.gemmBF16(d.threads.Load(), dnnlTrans(transA), dnnlTrans(transB), int64(m), int64(n), int64(k), alpha, a, int64(lda), b, int64(ldb), beta, c, int64(ldc)))
}
