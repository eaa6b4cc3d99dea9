package blas

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// DNNLInfo describes the oneDNN library DefaultDNNL found, for doctor and bench reports.
type DNNLInfo struct {
	Library string `json:"library"`           // "onednn", or "" when it is not in use
	Path    string `json:"path,omitempty"`    // file the library was loaded from
	Version string `json:"version,omitempty"` // major.minor.patch
	Hash    string `json:"hash,omitempty"`    // the sources' commit, when the build records it
	// Runtime is the CPU threading runtime the library was built with: "OpenMP", "TBB",
	// "sequential" or "threadpool".
	Runtime string `json:"cpu_runtime,omitempty"`
	// ISA is the instruction set oneDNN's kernels use on this CPU, e.g. "AVX512_CORE_BF16"
	// (ONEDNN_MAX_CPU_ISA can lower it).
	ISA string `json:"isa,omitempty"`
	// Threads is the number of threads one call may use; 0 when the runtime does not let cbs set
	// it (only OpenMP does).
	Threads int `json:"threads_per_call"`
	// Unavailable says why oneDNN is not in use; empty when it is.
	Unavailable string `json:"unavailable,omitempty"`
}

func (i DNNLInfo) String() string {
	if i.Library == "" {
		return "onednn unavailable (" + i.Unavailable + ")"
	}
	threads := fmt.Sprintf("%d threads per call", i.Threads)
	if i.Threads == 0 {
		threads = "threads not controlled"
	}
	return fmt.Sprintf("onednn %s %s (%s, %s, %s)", i.Version, i.Path, i.ISA, i.Runtime, threads)
}

// isaNames are oneDNN 2.x's dnnl_cpu_isa_t values.
var isaNames = map[uint32]string{
	0x0: "ALL", 0x1: "SSE41", 0x3: "AVX", 0x7: "AVX2", 0x407: "AVX2_VNNI",
	0xf: "AVX512_MIC", 0x1f: "AVX512_MIC_4OPS", 0x27: "AVX512_CORE", 0x67: "AVX512_CORE_VNNI",
	0xe7: "AVX512_CORE_BF16", 0x3e7: "AVX512_CORE_AMX",
}

func isaName(v uint32) string {
	if s, ok := isaNames[v]; ok {
		return s
	}
	return fmt.Sprintf("isa(0x%x)", v)
}

func runtimeName(v uint32) string {
	switch v {
	case 1:
		return "sequential"
	case 2:
		return "OpenMP"
	case 4:
		return "TBB"
	case 8:
		return "threadpool"
	}
	return fmt.Sprintf("runtime(%d)", v)
}

// dnnlStatus names a dnnl_status_t.
func dnnlStatus(s int32) string {
	names := []string{"success", "out_of_memory", "invalid_arguments", "unimplemented", "iterator_ends", "runtime_error", "not_required"}
	if s >= 0 && int(s) < len(names) {
		return names[s]
	}
	return fmt.Sprintf("status %d", s)
}

// dnnlSearchPaths lists where distributions put oneDNN 2.x (Debian and Ubuntu: libdnnl2).
var dnnlSearchPaths = []string{
	"libdnnl.so.2",
	"libdnnl.so",
	"/usr/lib/x86_64-linux-gnu/libdnnl.so.2",
	"/usr/lib/aarch64-linux-gnu/libdnnl.so.2",
	"/usr/lib64/libdnnl.so.2",
	"/usr/local/lib/libdnnl.so.2",
	"/opt/homebrew/lib/libdnnl.dylib",
	"/usr/local/lib/libdnnl.dylib",
}

var (
	dnnlOnce sync.Once
	dnnlLib  *DNNL
	dnnlInfo DNNLInfo
)

// DefaultDNNL loads oneDNN once per process, at one thread per call, and returns it with its
// description; it returns nil (and the reason in Info.Unavailable) when the library is missing.
// CBS_DNNL=off disables it; CBS_DNNL=/path/libdnnl.so.2 names the file (only that file is
// tried). The CPU backend asks for it at creation (its fp32 products run on dnnl_sgemm where it
// loads) and at SetPrecision(bf16).
func DefaultDNNL() (*DNNL, DNNLInfo) {
	dnnlOnce.Do(func() {
		v := os.Getenv("CBS_DNNL")
		if strings.EqualFold(v, "off") {
			dnnlInfo = DNNLInfo{Unavailable: "CBS_DNNL=off"}
			return
		}
		d, err := LoadDNNL(v)
		if err != nil {
			dnnlInfo = DNNLInfo{Unavailable: err.Error()}
			return
		}
		d.SetThreads(1)
		dnnlLib, dnnlInfo = d, d.Info()
	})
	return dnnlLib, dnnlInfo
}
