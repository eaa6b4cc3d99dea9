package cuda

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"unsafe"

	"github.com/ebitengine/purego"

	"cbs/compute"
)

// Options configure Open.
type Options struct {
	Ordinal   int       // which GPU (cuda:N)
	Precision Precision // inputs of the matrix products
	// CacheDir holds compiled kernel modules; "" means $CBS_CUDA_CACHE or the user cache folder,
	// "off" disables the cache.
	CacheDir string
}

// Info says what Open loaded and compiled.
type Info struct {
	Device        DeviceInfo `json:"device"`
	DriverPath    string     `json:"driver_path"`
	DriverVersion string     `json:"driver_version"`
	NVRTCPath     string     `json:"nvrtc_path"`
	NVRTCVersion  string     `json:"nvrtc_version"`
	CUBLASPath    string     `json:"cublas_path"`
	CUBLASVersion int        `json:"cublas_version"`
	Module        string     `json:"module"` // e.g. "cubin sm_90 (cached)"
	Precision     string     `json:"gemm_precision"`
}

// Backend runs compute.Backend[float32] on one GPU, on its own stream: several Backends (one per
// branch) share a GPU through the primary context and run concurrently. A Backend is not safe
// for concurrent use. Ops are asynchronous; CrossEntropy, SumSquares, SumSquaresEach and Download
// wait for the stream. A CUDA error inside an op panics with a message naming the op.
type Backend struct {
	drv  *driver
	rtc  *nvrtc
	blas *cublas

	dev    cuDevice
	ctx    uintptr
	stream uintptr
	handle uintptr
	module uintptr
	fn     map[string]uintptr
	prec   Precision
	info   Info

	allocs  []allocation // sorted by base
	scratch map[string]allocation

	// Kernel arguments live here during a launch (Go heap memory does not move).
	slots  [24]uint64
	params [24]uintptr
	alpha  float32
	beta   float32
	one    [1]float64
	sums   []float64 // SumSquaresEach's landing buffer
	csr    csrScratch
}

type allocation struct{ base, size uintptr }

var _ compute.Backend[float32] = (*Backend)(nil)

// Open loads the driver, NVRTC and cuBLAS, takes GPU opts.Ordinal's primary context, compiles
// (or loads from the cache) the kernels and creates a stream and a cuBLAS handle.
func Open(opts Options) (*Backend, error) {
	drv, err := loadedDriver()
	if err != nil {
		return nil, err
	}
	rtc, err := loadedNVRTC()
	if err != nil {
		return nil, err
	}
	bl, err := loadedCUBLAS()
	if err != nil {
		return nil, err
	}
	var n, dv int32
	if err := drv.check(drv.cuDeviceGetCount(&n), "cuDeviceGetCount"); err != nil {
		return nil, err
	}
	if opts.Ordinal < 0 || opts.Ordinal >= int(n) {
		return nil, fmt.Errorf("cuda:%d: the driver sees %d GPU(s)", opts.Ordinal, n)
	}
	drv.cuDriverGetVersion(&dv)
	dinfo, err := drv.deviceInfo(opts.Ordinal)
	if err != nil {
		return nil, err
	}
	b := &Backend{drv: drv, rtc: rtc, blas: bl, prec: opts.Precision, fn: map[string]uintptr{}, scratch: map[string]allocation{}}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := drv.check(drv.cuDeviceGet(&b.dev, int32(opts.Ordinal)), "cuDeviceGet"); err != nil {
		return nil, err
	}
	if err := drv.check(drv.cuDevicePrimaryCtxRetain(&b.ctx, b.dev), "cuDevicePrimaryCtxRetain"); err != nil {
		return nil, err
	}
	if err := drv.check(drv.cuCtxSetCurrent(b.ctx), "cuCtxSetCurrent"); err != nil {
		// Close would try to make the context current again; only the retain needs undoing.
		drv.cuDevicePrimaryCtxRelease(b.dev)
		return nil, err
	}
	const streamNonBlocking = 1 // no implicit synchronisation with the legacy default stream
	if err := drv.check(drv.cuStreamCreate(&b.stream, streamNonBlocking), "cuStreamCreate"); err != nil {
		b.Close()
		return nil, err
	}
	module, err := b.loadModule(dinfo.SM, int(dv), opts.CacheDir)
	if err != nil {
		b.Close()
		return nil, err
	}
	b.info.Module = module
	for _, name := range kernelNames {
		var f uintptr
		if err := drv.check(drv.cuModuleGetFunction(&f, b.module, name), "cuModuleGetFunction "+name); err != nil {
			b.Close()
			return nil, err
		}
		b.fn[name] = f
	}
	if err := bl.check(bl.cublasCreate(&b.handle), "cublasCreate_v2"); err != nil {
		b.Close()
		return nil, err
	}
	if err := bl.check(bl.cublasSetStream(b.handle, b.stream), "cublasSetStream_v2"); err != nil {
		b.Close()
		return nil, err
	}
	var cv int32
	bl.cublasGetVersion(b.handle, &cv)
	b.info = Info{
		Device: dinfo, DriverPath: drv.path, DriverVersion: driverVersionString(int(dv)),
		NVRTCPath: rtc.path, NVRTCVersion: rtc.version(), CUBLASPath: bl.path, CUBLASVersion: int(cv),
		Module: module, Precision: b.prec.String(),
	}
	return b, nil
}

// loadModule compiles the kernels for the device (or reads them from the cache) and loads them.
func (b *Backend) loadModule(sm, driverVersion int, dir string) (string, error) {
	arch, kind := targetArch(sm, b.rtc.supportedArchs(), b.rtc.nvrtcGetCUBIN != nil)
	key := cacheKey(sourceHash(), arch, b.rtc.version(), driverVersion)
	if dir == "" {
		var err error
		if dir, err = cacheDir(); err != nil {
			dir = "off"
		}
	}
	if dir != "off" {
		if img := readCache(dir, key); img != nil {
			if b.drv.cuModuleLoadData(&b.module, unsafe.Pointer(&img[0])) == 0 {
				return fmt.Sprintf("%s %s (cached in %s)", kind, arch, dir), nil
			}
		}
	}
	c, err := b.rtc.compile(kernelSource, "kernels.cu", arch)
	if err != nil {
		return "", err
	}
	if err := b.drv.check(b.drv.cuModuleLoadData(&b.module, unsafe.Pointer(&c.Image[0])), "cuModuleLoadData ("+c.Kind+" "+arch+")"); err != nil {
		return "", err
	}
	if dir != "off" {
		_ = writeCache(dir, key, c.Image) // a read-only cache only costs a compilation next time
	}
	return fmt.Sprintf("%s %s (compiled by nvrtc %s)", kind, arch, b.rtc.version()), nil
}

// Info says what was loaded.
func (b *Backend) Info() Info { return b.info }

// Name says which implementation runs.
func (b *Backend) Name() string {
	i := b.info
	return fmt.Sprintf("cuda %s (sm_%d, %d SMs), driver %s, cublas %d, nvrtc %s, %s gemm",
		i.Device.Name, i.Device.SM, i.Device.Multiprocs, i.DriverVersion, i.CUBLASVersion, i.NVRTCVersion, i.Precision)
}

// Precision returns the matrix-product precision.
func (b *Backend) Precision() Precision { return b.prec }

// SetPrecision changes the matrix-product precision for the following ops.
func (b *Backend) SetPrecision(p Precision) { b.prec = p; b.info.Precision = p.String() }

// Close frees every buffer and releases the GPU.
func (b *Backend) Close() {
	if b.ctx == 0 {
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.drv.cuCtxSetCurrent(b.ctx)
	if b.stream != 0 {
		b.drv.cuStreamSynchronize(b.stream)
	}
	for _, a := range b.allocs {
		b.drv.cuMemFree(a.base)
	}
	for _, a := range b.scratch {
		b.drv.cuMemFree(a.base)
	}
	b.allocs, b.scratch = nil, map[string]allocation{}
	if b.handle != 0 {
		b.blas.cublasDestroy(b.handle)
	}
	if b.module != 0 {
		b.drv.cuModuleUnload(b.module)
	}
	if b.stream != 0 {
		b.drv.cuStreamDestroy(b.stream)
	}
	b.drv.cuDevicePrimaryCtxRelease(b.dev)
	b.ctx = 0
}

// enter makes the context current on this OS thread and pins the goroutine to it for the op:
// the driver's current context is per thread and goroutines move between threads.
func (b *Backend) enter() {
	runtime.LockOSThread()
	if r := b.drv.cuCtxSetCurrent(b.ctx); r != 0 {
		panic(fmt.Sprintf("cuda: %v", b.drv.check(r, "cuCtxSetCurrent")))
	}
}

func (b *Backend) leave() { runtime.UnlockOSThread() }

func (b *Backend) must(r cuResult, call string) {
	if r != 0 {
		panic(fmt.Sprintf("cuda: %v", b.drv.check(r, call)))
	}
}

// ---- memory ----

// devicePtr turns a device address into the data pointer of a slice. The address is never
// dereferenced by Go; the conversion goes through memory so that vet's unsafeptr check, which
// guards Go-heap pointers, does not apply to what is not one.
func devicePtr(addr uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&addr)) }

func addrOf[T any](x []T) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(x))) }

// Alloc returns n zeroed float32s of device memory as a device view.
func (b *Backend) Alloc(n int) ([]float32, error) {
	if n <= 0 {
		return nil, nil
	}
	b.enter()
	defer b.leave()
	var p uintptr
	bytes := uintptr(n) * 4
	if r := b.drv.cuMemAlloc(&p, bytes); r != 0 {
		var free, total uintptr
		b.drv.cuMemGetInfo(&free, &total)
		return nil, fmt.Errorf("cuda: allocating %d MiB: %w (free %d of %d MiB)", bytes>>20, b.drv.check(r, "cuMemAlloc_v2"), free>>20, total>>20)
	}
	b.must(b.drv.cuMemsetD32Async(p, 0, uintptr(n), b.stream), "cuMemsetD32Async")
	i := sort.Search(len(b.allocs), func(i int) bool { return b.allocs[i].base > p })
	b.allocs = slices.Insert(b.allocs, i, allocation{p, bytes})
	return unsafe.Slice((*float32)(devicePtr(p)), n), nil
}

// Free releases a buffer from Alloc (the whole slice Alloc returned).
func (b *Backend) Free(x []float32) {
	if len(x) == 0 {
		return
	}
	p := addrOf(x)
	i := sort.Search(len(b.allocs), func(i int) bool { return b.allocs[i].base >= p })
	if i == len(b.allocs) || b.allocs[i].base != p {
		panic(fmt.Sprintf("cuda: Free: %#x is not the start of a device buffer", p))
	}
	b.enter()
	defer b.leave()
	b.must(b.drv.cuStreamSynchronize(b.stream), "cuStreamSynchronize")
	b.must(b.drv.cuMemFree(p), "cuMemFree_v2")
	b.allocs = slices.Delete(b.allocs, i, i+1)
}

// ptr checks that x lies in a device buffer and returns its address.
func (b *Backend) ptr(x []float32, op string) uintptr {
	if len(x) == 0 {
		return 0
	}
	p := addrOf(x)
	end := p + uintptr(len(x))*4
	i := sort.Search(len(b.allocs), func(i int) bool { return b.allocs[i].base > p }) - 1
	if i < 0 || end > b.allocs[i].base+b.allocs[i].size {
		panic(fmt.Sprintf("cuda: %s: a slice at %#x (%d floats) is not device memory from Backend.Alloc", op, p, len(x)))
	}
	return p
}

// Upload copies host src into device dst.
func (b *Backend) Upload(dst, src []float32) {
	if len(src) == 0 {
		return
	}
	d := b.ptr(dst[:len(src)], "Upload")
	b.enter()
	defer b.leave()
	// From pageable memory the call returns once src is staged, so src may change afterwards.
	b.must(b.drv.cuMemcpyHtoDAsync(d, unsafe.Pointer(&src[0]), uintptr(len(src))*4, b.stream), "cuMemcpyHtoDAsync_v2")
}

// Download copies device src into host dst, waiting for the stream.
func (b *Backend) Download(dst, src []float32) {
	if len(dst) == 0 {
		return
	}
	s := b.ptr(src[:len(dst)], "Download")
	b.enter()
	defer b.leave()
	b.must(b.drv.cuMemcpyDtoHAsync(unsafe.Pointer(&dst[0]), s, uintptr(len(dst))*4, b.stream), "cuMemcpyDtoHAsync_v2")
	b.must(b.drv.cuStreamSynchronize(b.stream), "cuStreamSynchronize")
}

// Copy copies device src into device dst.
func (b *Backend) Copy(dst, src []float32) {
	if len(src) == 0 {
		return
	}
	d, s := b.ptr(dst[:len(src)], "Copy"), b.ptr(src, "Copy")
	b.enter()
	defer b.leave()
	b.must(b.drv.cuMemcpyDtoDAsync(d, s, uintptr(len(src))*4, b.stream), "cuMemcpyDtoDAsync_v2")
}

// Zero sets x to 0.
func (b *Backend) Zero(x []float32) {
	if len(x) == 0 {
		return
	}
	p := b.ptr(x, "Zero")
	b.enter()
	defer b.leave()
	b.must(b.drv.cuMemsetD32Async(p, 0, uintptr(len(x)), b.stream), "cuMemsetD32Async")
}

// Sync waits for every queued op and reports the first asynchronous error.
func (b *Backend) Sync() error {
	b.enter()
	defer b.leave()
	return b.drv.check(b.drv.cuStreamSynchronize(b.stream), "cuStreamSynchronize")
}

// Time runs f and returns the GPU time between its first and last queued op, in milliseconds.
func (b *Backend) Time(f func()) (float64, error) {
	b.enter()
	var e0, e1 uintptr
	b.must(b.drv.cuEventCreate(&e0, 0), "cuEventCreate")
	b.must(b.drv.cuEventCreate(&e1, 0), "cuEventCreate")
	b.must(b.drv.cuEventRecord(e0, b.stream), "cuEventRecord")
	b.leave()
	f()
	b.enter()
	defer b.leave()
	defer b.drv.cuEventDestroy(e0)
	defer b.drv.cuEventDestroy(e1)
	b.must(b.drv.cuEventRecord(e1, b.stream), "cuEventRecord")
	if err := b.drv.check(b.drv.cuEventSynchronize(e1), "cuEventSynchronize"); err != nil {
		return 0, err
	}
	ms, r := b.drv.elapsed(e0, e1)
	return float64(ms), b.drv.check(r, "cuEventElapsedTime")
}

// MemInfo returns the device's free and total memory in bytes.
func (b *Backend) MemInfo() (free, total int64) {
	b.enter()
	defer b.leave()
	var f, t uintptr
	b.drv.cuMemGetInfo(&f, &t)
	return int64(f), int64(t)
}

// scratchBuf returns a device buffer of at least bytes for internal use, kept between ops.
// Must be called inside enter/leave.
func (b *Backend) scratchBuf(name string, bytes int) uintptr {
	a, ok := b.scratch[name]
	if ok && a.size >= uintptr(bytes) {
		return a.base
	}
	if ok {
		b.must(b.drv.cuStreamSynchronize(b.stream), "cuStreamSynchronize")
		b.must(b.drv.cuMemFree(a.base), "cuMemFree_v2")
	}
	size := uintptr(max(bytes, 256))
	var p uintptr
	if r := b.drv.cuMemAlloc(&p, size); r != 0 {
		panic(fmt.Sprintf("cuda: scratch %s (%d MiB): %v", name, size>>20, b.drv.check(r, "cuMemAlloc_v2")))
	}
	b.scratch[name] = allocation{p, size}
	return p
}

// uploadInts copies host ints into a scratch buffer. Must be called inside enter/leave.
func (b *Backend) uploadInts(name string, x []int32) uintptr {
	p := b.scratchBuf(name, len(x)*4)
	if len(x) > 0 {
		b.must(b.drv.cuMemcpyHtoDAsync(p, unsafe.Pointer(&x[0]), uintptr(len(x))*4, b.stream), "cuMemcpyHtoDAsync_v2")
	}
	return p
}

// readDouble waits for the stream and returns the float64 at device address p.
func (b *Backend) readDouble(p uintptr) float64 {
	b.must(b.drv.cuMemcpyDtoHAsync(unsafe.Pointer(&b.one[0]), p, 8, b.stream), "cuMemcpyDtoHAsync_v2")
	b.must(b.drv.cuStreamSynchronize(b.stream), "cuStreamSynchronize")
	return b.one[0]
}

// ---- kernel launches ----

// Kernel argument encodings: each argument occupies one 8-byte slot and the kernel reads as
// many bytes as its parameter type has (little-endian).
func ap(p uintptr) uint64 { return uint64(p) }
func ai(v int) uint64     { return uint64(uint32(int32(v))) }
func al(v int) uint64     { return uint64(int64(v)) }
func af(v float32) uint64 { return uint64(math.Float32bits(v)) }
func ad(v float64) uint64 { return math.Float64bits(v) }
func ab(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}
func ceilDiv(a, b int) int { return (a + b - 1) / b }

// launch queues kernel name on the stream. Must be called inside enter/leave.
func (b *Backend) launch(name string, gx, gy, block int, args ...uint64) {
	f, ok := b.fn[name]
	if !ok {
		panic("cuda: no kernel " + name)
	}
	for i, a := range args {
		b.slots[i] = a
		b.params[i] = uintptr(unsafe.Pointer(&b.slots[i]))
	}
	r, _, _ := purego.SyscallN(b.drv.cuLaunchKernel, f, uintptr(gx), uintptr(gy), 1, uintptr(block), 1, 1, 0,
		b.stream, uintptr(unsafe.Pointer(&b.params[0])), 0)
	if cuResult(int32(r)) != 0 {
		panic(fmt.Sprintf("cuda: launching %s: %v", name, b.drv.check(cuResult(int32(r)), "cuLaunchKernel")))
	}
}
