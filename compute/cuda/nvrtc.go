package cuda

import (
	"fmt"
	"strings"
	"unsafe"
)

type nvrtcResult int32

// nvrtc holds the entry points of libnvrtc.
type nvrtc struct {
	*loaded
	nvrtcVersion              func(major, minor *int32) nvrtcResult
	nvrtcGetErrorString       func(r nvrtcResult) string
	nvrtcCreateProgram        func(prog *uintptr, src, name string, nHeaders int32, headers, names unsafe.Pointer) nvrtcResult
	nvrtcCompileProgram       func(prog uintptr, nOptions int32, options unsafe.Pointer) nvrtcResult
	nvrtcDestroyProgram       func(prog *uintptr) nvrtcResult
	nvrtcGetProgramLogSize    func(prog uintptr, n *uintptr) nvrtcResult
	nvrtcGetProgramLog        func(prog uintptr, log unsafe.Pointer) nvrtcResult
	nvrtcGetPTXSize           func(prog uintptr, n *uintptr) nvrtcResult
	nvrtcGetPTX               func(prog uintptr, ptx unsafe.Pointer) nvrtcResult
	nvrtcGetCUBINSize         func(prog uintptr, n *uintptr) nvrtcResult
	nvrtcGetCUBIN             func(prog uintptr, cubin unsafe.Pointer) nvrtcResult
	nvrtcGetNumSupportedArchs func(n *int32) nvrtcResult
	nvrtcGetSupportedArchs    func(archs *int32) nvrtcResult
}

func loadNVRTC(env searchEnv) (*nvrtc, error) {
	n := &nvrtc{}
	syms := []symbol{
		{name: "nvrtcVersion", fn: &n.nvrtcVersion},
		{name: "nvrtcGetErrorString", fn: &n.nvrtcGetErrorString},
		{name: "nvrtcCreateProgram", fn: &n.nvrtcCreateProgram},
		{name: "nvrtcCompileProgram", fn: &n.nvrtcCompileProgram},
		{name: "nvrtcDestroyProgram", fn: &n.nvrtcDestroyProgram},
		{name: "nvrtcGetProgramLogSize", fn: &n.nvrtcGetProgramLogSize},
		{name: "nvrtcGetProgramLog", fn: &n.nvrtcGetProgramLog},
		{name: "nvrtcGetPTXSize", fn: &n.nvrtcGetPTXSize},
		{name: "nvrtcGetPTX", fn: &n.nvrtcGetPTX},
		// CUBIN output needs NVRTC 11.1; without it the driver compiles the PTX.
		{name: "nvrtcGetCUBINSize", fn: &n.nvrtcGetCUBINSize, optional: true},
		{name: "nvrtcGetCUBIN", fn: &n.nvrtcGetCUBIN, optional: true},
		{name: "nvrtcGetNumSupportedArchs", fn: &n.nvrtcGetNumSupportedArchs, optional: true},
		{name: "nvrtcGetSupportedArchs", fn: &n.nvrtcGetSupportedArchs, optional: true},
	}
	l, err := openLibrary(libNVRTC, env, syms)
	if err != nil {
		return nil, err
	}
	n.loaded = l
	return n, nil
}

// version returns NVRTC's version, e.g. "12.8".
func (n *nvrtc) version() string {
	var ma, mi int32
	n.nvrtcVersion(&ma, &mi)
	return fmt.Sprintf("%d.%d", ma, mi)
}

// supportedArchs lists the sm_XX numbers NVRTC can generate code for (nil when it cannot say).
func (n *nvrtc) supportedArchs() []int {
	if n.nvrtcGetNumSupportedArchs == nil || n.nvrtcGetSupportedArchs == nil {
		return nil
	}
	var k int32
	if n.nvrtcGetNumSupportedArchs(&k) != 0 || k <= 0 {
		return nil
	}
	a := make([]int32, k)
	if n.nvrtcGetSupportedArchs(&a[0]) != 0 {
		return nil
	}
	out := make([]int, k)
	for i, v := range a {
		out[i] = int(v)
	}
	return out
}

// compiled is the output of one compilation.
type compiled struct {
	Image []byte // a CUBIN, or PTX ending in a NUL byte
	Kind  string // "cubin" or "ptx"
	Arch  string // the --gpu-architecture given
	Log   string
}

// targetArch chooses what to compile for a device of compute capability sm (e.g. 90): a CUBIN
// for sm_XX when NVRTC knows the architecture, else PTX for the newest virtual architecture it
// knows below the device (the driver compiles that PTX for the device).
func targetArch(sm int, supported []int, haveCUBIN bool) (arch, kind string) {
	if len(supported) == 0 {
		if haveCUBIN {
			return fmt.Sprintf("sm_%d", sm), "cubin"
		}
		return fmt.Sprintf("compute_%d", sm), "ptx"
	}
	best := 0
	for _, a := range supported {
		if a == sm && haveCUBIN {
			return fmt.Sprintf("sm_%d", sm), "cubin"
		}
		if a <= sm && a > best {
			best = a
		}
	}
	if best == 0 {
		best = supported[0]
	}
	return fmt.Sprintf("compute_%d", best), "ptx"
}

// compile runs NVRTC on src for arch ("sm_90" gives a CUBIN, "compute_90" PTX).
func (n *nvrtc) compile(src, name, arch string) (*compiled, error) {
	var prog uintptr
	if r := n.nvrtcCreateProgram(&prog, src, name, 0, nil, nil); r != 0 {
		return nil, fmt.Errorf("nvrtcCreateProgram: %s", n.nvrtcGetErrorString(r))
	}
	defer n.nvrtcDestroyProgram(&prog)
	// No -use_fast_math: expf, logf and division keep their IEEE accuracy. No contraction into
	// fused multiply-adds either, so that the float64 AdamW and the order-preserving sums round
	// as the Go reference does; the kernels are memory-bound, so it costs nothing measurable.
	opts := []string{"--gpu-architecture=" + arch, "--fmad=false"}
	// C strings for the options, kept alive in Go memory for the call.
	cstrs := make([][]byte, len(opts))
	ptrs := make([]unsafe.Pointer, len(opts))
	for i, o := range opts {
		cstrs[i] = append([]byte(o), 0)
		ptrs[i] = unsafe.Pointer(&cstrs[i][0])
	}
	r := n.nvrtcCompileProgram(prog, int32(len(opts)), unsafe.Pointer(&ptrs[0]))
	log := n.log(prog)
	if r != 0 {
		return nil, fmt.Errorf("nvrtcCompileProgram %s for %s (nvrtc %s): %s\n%s", name, arch, n.version(), n.nvrtcGetErrorString(r), log)
	}
	out := &compiled{Arch: arch, Log: log}
	var size uintptr
	if strings.HasPrefix(arch, "sm_") {
		if n.nvrtcGetCUBINSize == nil {
			return nil, fmt.Errorf("nvrtc %s has no nvrtcGetCUBIN; compile for compute_XX instead", n.version())
		}
		if r := n.nvrtcGetCUBINSize(prog, &size); r != 0 || size == 0 {
			return nil, fmt.Errorf("nvrtcGetCUBINSize: %s", n.nvrtcGetErrorString(r))
		}
		out.Image, out.Kind = make([]byte, size), "cubin"
		if r := n.nvrtcGetCUBIN(prog, unsafe.Pointer(&out.Image[0])); r != 0 {
			return nil, fmt.Errorf("nvrtcGetCUBIN: %s", n.nvrtcGetErrorString(r))
		}
		return out, nil
	}
	if r := n.nvrtcGetPTXSize(prog, &size); r != 0 || size == 0 {
		return nil, fmt.Errorf("nvrtcGetPTXSize: %s", n.nvrtcGetErrorString(r))
	}
	out.Image, out.Kind = make([]byte, size), "ptx" // size counts the NUL the driver needs
	if r := n.nvrtcGetPTX(prog, unsafe.Pointer(&out.Image[0])); r != 0 {
		return nil, fmt.Errorf("nvrtcGetPTX: %s", n.nvrtcGetErrorString(r))
	}
	return out, nil
}

func (n *nvrtc) log(prog uintptr) string {
	var size uintptr
	if n.nvrtcGetProgramLogSize(prog, &size) != 0 || size <= 1 {
		return ""
	}
	b := make([]byte, size)
	n.nvrtcGetProgramLog(prog, unsafe.Pointer(&b[0]))
	return strings.TrimRight(string(b), "\x00\n ")
}
