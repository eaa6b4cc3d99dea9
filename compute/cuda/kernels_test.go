package cuda

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestKernelListMatchesSource(t *testing.T) {
	got := sourceKernels(kernelSource)
	want := slices.Clone(kernelNames)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("kernels.cu defines %v, kernelNames lists %v", got, want)
	}
}

func TestCacheKey(t *testing.T) {
	h := sourceHash()
	if len(h) != 64 || h != sourceHash() {
		t.Fatalf("sourceHash = %q, want a stable sha256 hex digest", h)
	}
	base := cacheKey(h, "sm_90", "12.8", 13000)
	if want := "kernels-" + h[:16] + "-sm_90-nvrtc12.8-driver13000"; base != want {
		t.Fatalf("cacheKey = %q, want %q", base, want)
	}
	for _, other := range []string{
		cacheKey(h, "sm_80", "12.8", 13000),
		cacheKey(h, "sm_90", "13.0", 13000),
		cacheKey(h, "sm_90", "12.8", 12080),
		cacheKey(strings.Repeat("0", 64), "sm_90", "12.8", 13000),
	} {
		if other == base {
			t.Errorf("cacheKey does not distinguish %q", other)
		}
	}
	dir := t.TempDir()
	if readCache(dir, base) != nil {
		t.Fatal("empty cache returned an image")
	}
	if err := writeCache(dir, base, []byte("image")); err != nil {
		t.Fatal(err)
	}
	if got := string(readCache(dir, base)); got != "image" {
		t.Fatalf("cache read %q", got)
	}
}

func TestTargetArch(t *testing.T) {
	for _, tc := range []struct {
		sm        int
		supported []int
		cubin     bool
		arch      string
	}{
		{90, []int{75, 80, 86, 89, 90}, true, "sm_90"},
		{90, []int{75, 80, 86, 89, 90}, false, "compute_90"},
		{100, []int{75, 80, 86, 89, 90}, true, "compute_90"}, // NVRTC older than the GPU: PTX, JIT by the driver
		{90, nil, true, "sm_90"},
		{86, nil, false, "compute_86"},
		{50, []int{75, 80}, true, "compute_75"},
	} {
		if arch, _ := targetArch(tc.sm, tc.supported, tc.cubin); arch != tc.arch {
			t.Errorf("targetArch(%d, %v, %v) = %s, want %s", tc.sm, tc.supported, tc.cubin, arch, tc.arch)
		}
	}
}

// TestKernelsCompile compiles every kernel with NVRTC for Ampere and Hopper. It needs only
// libnvrtc, no GPU (on Debian: the non-free package libnvrtc11.2; see docs/gpu.md), and skips
// without it.
func TestKernelsCompile(t *testing.T) {
	rtc, err := loadNVRTC(osSearchEnv())
	if err != nil {
		t.Skipf("no NVRTC, kernels not compiled: %v", err)
	}
	t.Logf("nvrtc %s from %s, architectures %v", rtc.version(), rtc.path, rtc.supportedArchs())
	for _, sm := range []int{80, 90} {
		for _, arch := range []string{"compute_" + strconv.Itoa(sm), "sm_" + strconv.Itoa(sm)} {
			if strings.HasPrefix(arch, "sm_") && rtc.nvrtcGetCUBIN == nil {
				continue
			}
			c, err := rtc.compile(kernelSource, "kernels.cu", arch)
			if err != nil {
				t.Fatalf("%s: %v", arch, err)
			}
			if c.Log != "" {
				t.Logf("%s log:\n%s", arch, c.Log)
			}
			if c.Kind == "ptx" {
				for _, k := range kernelNames {
					if !strings.Contains(string(c.Image), ".entry "+k+"(") {
						t.Errorf("%s: PTX has no entry %s", arch, k)
					}
				}
			}
			t.Logf("%s: %s of %d bytes", arch, c.Kind, len(c.Image))
		}
	}
}
