package cuda

import (
	"fmt"
	"unsafe"
)

// Driver API types: handles are pointers, device memory is a 64-bit address.
type (
	cuResult int32
	cuDevice int32
)

// Device attributes (cuda.h CUdevice_attribute).
const (
	attrMultiprocessorCount = 16
	attrClockRate           = 13 // kHz
	attrComputeMajor        = 75
	attrComputeMinor        = 76
)

// driver holds the entry points of libcuda.so.1.
type driver struct {
	*loaded
	cuInit                       func(flags uint32) cuResult
	cuDriverGetVersion           func(v *int32) cuResult
	cuDeviceGetCount             func(n *int32) cuResult
	cuDeviceGet                  func(d *cuDevice, ordinal int32) cuResult
	cuDeviceGetName              func(name *byte, n int32, d cuDevice) cuResult
	cuDeviceGetAttribute         func(v *int32, attr int32, d cuDevice) cuResult
	cuDeviceTotalMem             func(bytes *uintptr, d cuDevice) cuResult
	cuDevicePrimaryCtxRetain     func(ctx *uintptr, d cuDevice) cuResult
	cuDevicePrimaryCtxRelease    func(d cuDevice) cuResult
	cuCtxSetCurrent              func(ctx uintptr) cuResult
	cuCtxSynchronize             func() cuResult
	cuMemAlloc                   func(p *uintptr, bytes uintptr) cuResult
	cuMemFree                    func(p uintptr) cuResult
	cuMemGetInfo                 func(free, total *uintptr) cuResult
	cuMemcpyHtoD                 func(dst uintptr, src unsafe.Pointer, bytes uintptr) cuResult
	cuMemcpyDtoH                 func(dst unsafe.Pointer, src uintptr, bytes uintptr) cuResult
	cuMemcpyDtoD                 func(dst, src uintptr, bytes uintptr) cuResult
	cuMemcpyHtoDAsync            func(dst uintptr, src unsafe.Pointer, bytes uintptr, s uintptr) cuResult
	cuMemcpyDtoHAsync            func(dst unsafe.Pointer, src uintptr, bytes uintptr, s uintptr) cuResult
	cuMemcpyDtoDAsync            func(dst, src uintptr, bytes uintptr, s uintptr) cuResult
	cuMemsetD32Async             func(dst uintptr, v uint32, n uintptr, s uintptr) cuResult
	cuStreamCreate               func(s *uintptr, flags uint32) cuResult
	cuStreamSynchronize          func(s uintptr) cuResult
	cuStreamDestroy              func(s uintptr) cuResult
	cuEventCreate                func(e *uintptr, flags uint32) cuResult
	cuEventRecord                func(e, s uintptr) cuResult
	cuEventSynchronize           func(e uintptr) cuResult
	cuEventElapsedTime           func(ms *float32, start, end uintptr) cuResult
	cuEventElapsedTimeV2         func(ms *float32, start, end uintptr) cuResult
	cuEventDestroy               func(e uintptr) cuResult
	cuModuleLoadData             func(m *uintptr, image unsafe.Pointer) cuResult
	cuModuleGetFunction          func(f *uintptr, m uintptr, name string) cuResult
	cuModuleUnload               func(m uintptr) cuResult
	cuLaunchKernel               uintptr // called through SyscallN: 11 arguments, once per op
	cuGetErrorString             func(r cuResult, s **byte) cuResult
	cuGetErrorName               func(r cuResult, s **byte) cuResult
	cuDevicePrimaryCtxSetFlagsV2 func(d cuDevice, flags uint32) cuResult
}

// driverLoader is what loadDriver does with each candidate, replaceable in tests.
type driverLoader struct {
	open  func(path string) (*driver, error) // dlopen and bind
	init  func(*driver) error                // cuInit
	close func(*driver)
}

func osDriverLoader(env searchEnv) driverLoader {
	return driverLoader{
		open:  func(p string) (*driver, error) { return openDriver(p, env) },
		init:  func(d *driver) error { return d.check(d.cuInit(0), "cuInit") },
		close: func(d *driver) { dlclose(d.handle) },
	}
}

// loadDriver returns the first candidate libcuda that loads and whose cuInit succeeds. Loading
// is not enough: a toolkit's compat driver loads on any machine but fails cuInit (803, 804) when
// the kernel driver does not match it, and a stub library fails it everywhere (34). A candidate
// that fails cuInit is closed before the next is tried.
func loadDriver(cands []string, ld driverLoader) (*driver, error) {
	var errs []string
	for _, p := range cands {
		d, err := ld.open(p)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if err := ld.init(d); err != nil {
			errs = append(errs, fmt.Sprintf("%s loaded but %v", p, err))
			ld.close(d)
			continue
		}
		return d, nil
	}
	return nil, notFound(libCUDA, len(cands), errs)
}

// openDriver loads libcuda from path and binds its entry points.
func openDriver(path string, env searchEnv) (*driver, error) {
	d := &driver{}
	syms := []symbol{
		{name: "cuInit", fn: &d.cuInit},
		{name: "cuDriverGetVersion", fn: &d.cuDriverGetVersion},
		{name: "cuDeviceGetCount", fn: &d.cuDeviceGetCount},
		{name: "cuDeviceGet", fn: &d.cuDeviceGet},
		{name: "cuDeviceGetName", fn: &d.cuDeviceGetName},
		{name: "cuDeviceGetAttribute", fn: &d.cuDeviceGetAttribute},
		{name: "cuDeviceTotalMem_v2", fn: &d.cuDeviceTotalMem},
		{name: "cuDevicePrimaryCtxRetain", fn: &d.cuDevicePrimaryCtxRetain},
		{name: "cuDevicePrimaryCtxRelease_v2", fn: &d.cuDevicePrimaryCtxRelease},
		{name: "cuDevicePrimaryCtxSetFlags_v2", fn: &d.cuDevicePrimaryCtxSetFlagsV2, optional: true},
		{name: "cuCtxSetCurrent", fn: &d.cuCtxSetCurrent},
		{name: "cuCtxSynchronize", fn: &d.cuCtxSynchronize},
		{name: "cuMemAlloc_v2", fn: &d.cuMemAlloc},
		{name: "cuMemFree_v2", fn: &d.cuMemFree},
		{name: "cuMemGetInfo_v2", fn: &d.cuMemGetInfo},
		{name: "cuMemcpyHtoD_v2", fn: &d.cuMemcpyHtoD},
		{name: "cuMemcpyDtoH_v2", fn: &d.cuMemcpyDtoH},
		{name: "cuMemcpyDtoD_v2", fn: &d.cuMemcpyDtoD},
		{name: "cuMemcpyHtoDAsync_v2", fn: &d.cuMemcpyHtoDAsync},
		{name: "cuMemcpyDtoHAsync_v2", fn: &d.cuMemcpyDtoHAsync},
		{name: "cuMemcpyDtoDAsync_v2", fn: &d.cuMemcpyDtoDAsync},
		{name: "cuMemsetD32Async", fn: &d.cuMemsetD32Async},
		{name: "cuStreamCreate", fn: &d.cuStreamCreate},
		{name: "cuStreamSynchronize", fn: &d.cuStreamSynchronize},
		{name: "cuStreamDestroy_v2", fn: &d.cuStreamDestroy},
		{name: "cuEventCreate", fn: &d.cuEventCreate},
		{name: "cuEventRecord", fn: &d.cuEventRecord},
		{name: "cuEventSynchronize", fn: &d.cuEventSynchronize},
		// CUDA 12.8 added a _v2; CUDA 13 may drop the original.
		{name: "cuEventElapsedTime_v2", fn: &d.cuEventElapsedTimeV2, optional: true},
		{name: "cuEventElapsedTime", fn: &d.cuEventElapsedTime, optional: true},
		{name: "cuEventDestroy_v2", fn: &d.cuEventDestroy},
		{name: "cuModuleLoadData", fn: &d.cuModuleLoadData},
		{name: "cuModuleGetFunction", fn: &d.cuModuleGetFunction},
		{name: "cuModuleUnload", fn: &d.cuModuleUnload},
		{name: "cuGetErrorString", fn: &d.cuGetErrorString},
		{name: "cuGetErrorName", fn: &d.cuGetErrorName},
	}
	l, err := openPath(libCUDA, path, env, syms)
	if err != nil {
		return nil, err
	}
	d.loaded = l
	if d.cuLaunchKernel, err = dlsym(l.handle, "cuLaunchKernel"); err != nil {
		dlclose(l.handle)
		return nil, fmt.Errorf("%s: %v", l.path, err)
	}
	if d.cuEventElapsedTimeV2 == nil && d.cuEventElapsedTime == nil {
		dlclose(l.handle)
		return nil, fmt.Errorf("%s: missing symbol cuEventElapsedTime (and cuEventElapsedTime_v2)", l.path)
	}
	return d, nil
}

// check turns a CUresult into an error naming the call and the driver's own message.
func (d *driver) check(r cuResult, call string) error {
	if r == 0 {
		return nil
	}
	var name, msg *byte
	d.cuGetErrorName(r, &name)
	d.cuGetErrorString(r, &msg)
	return fmt.Errorf("%s: %s (%d): %s", call, cString(name), int(r), cString(msg))
}

func (d *driver) elapsed(start, end uintptr) (float32, cuResult) {
	var ms float32
	if d.cuEventElapsedTimeV2 != nil {
		return ms, d.cuEventElapsedTimeV2(&ms, start, end)
	}
	return ms, d.cuEventElapsedTime(&ms, start, end)
}

// cString copies a NUL-terminated C string.
func cString(p *byte) string {
	if p == nil {
		return "?"
	}
	var b []byte
	for ptr := unsafe.Pointer(p); *(*byte)(ptr) != 0; ptr = unsafe.Add(ptr, 1) {
		b = append(b, *(*byte)(ptr))
	}
	return string(b)
}
