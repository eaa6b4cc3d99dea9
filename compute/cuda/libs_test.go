package cuda

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeEnv is a machine with the given files (and their folders) and environment.
func fakeEnv(vars map[string]string, files ...string) searchEnv {
	for _, f := range files {
		for d := filepath.Dir(f); d != "/" && !slices.Contains(files, d); d = filepath.Dir(d) {
			files = append(files, d)
		}
	}
	return searchEnv{
		getenv: func(k string) string { return vars[k] },
		glob: func(pat string) ([]string, error) {
			var out []string
			for _, f := range files {
				if ok, _ := filepath.Match(pat, f); ok {
					out = append(out, f)
				}
			}
			return out, nil
		},
	}
}

func TestCandidatesOrder(t *testing.T) {
	env := fakeEnv(map[string]string{
		"CUDA_HOME":       "/opt/cuda",
		"LD_LIBRARY_PATH": "/ld/a:/ld/b",
		"HOME":            "/home/u",
	},
		"/opt/cuda/lib64/libcublas.so.12",
		"/ld/b/libcublas.so.12",
		"/usr/local/lib/python3.12/dist-packages/nvidia/cublas/lib/libcublas.so.12",
		"/usr/local/lib/python3.12/dist-packages/nvidia/cu13/lib/libcublas.so.13",
		"/usr/local/cuda/lib64/libcublas.so.12",
		"/usr/local/cuda/lib64/libcublas.so.12.8.4.1",
		"/usr/local/cuda-12.9",
		"/usr/local/cuda-12.10",
		"/usr/local/cuda-12.10/lib64/libcublas.so.12",
		"/usr/local/cuda-12.9/lib64/libcublas.so.12",
		"/usr/lib/x86_64-linux-gnu/libcublas.so.11",
	)
	got := candidates(libCUBLAS, env)
	want := []string{
		"/opt/cuda/lib64/libcublas.so.12",
		"/ld/b/libcublas.so.12",
		"/usr/local/lib/python3.12/dist-packages/nvidia/cublas/lib/libcublas.so.12",
		"/usr/local/lib/python3.12/dist-packages/nvidia/cu13/lib/libcublas.so.13",
		"/usr/local/cuda/lib64/libcublas.so.12.8.4.1",
		"/usr/local/cuda/lib64/libcublas.so.12",
		"/usr/local/cuda-12.10/lib64/libcublas.so.12",
		"/usr/local/cuda-12.9/lib64/libcublas.so.12",
	}
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Fatalf("candidates:\n got %q\nwant %q first", got, want)
	}
	// The bare sonames come last, for the dynamic loader's own search.
	if got[len(got)-1] != "libcublas.so" || !slices.Contains(got, "libcublas.so.13") {
		t.Errorf("candidates end with %q, want the bare sonames", got[len(got)-4:])
	}
}

func TestCandidatesOverride(t *testing.T) {
	env := fakeEnv(map[string]string{"CBS_LIBNVRTC": "/x/libnvrtc.so.12", "CUDA_HOME": "/opt/cuda"}, "/opt/cuda/lib64/libnvrtc.so.12")
	if got := candidates(libNVRTC, env); !slices.Equal(got, []string{"/x/libnvrtc.so.12"}) {
		t.Fatalf("candidates with CBS_LIBNVRTC = %q", got)
	}
}

func TestCandidatesNVRTCSkipsBuiltins(t *testing.T) {
	env := fakeEnv(nil,
		"/usr/local/lib/python3.11/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12",
		"/usr/local/lib/python3.11/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc-builtins.so.12.8",
		"/usr/local/lib/python3.11/site-packages/torch/lib/libnvrtc-b51b459d.so.12",
	)
	got := candidates(libNVRTC, env)
	for _, p := range got {
		if filepath.Base(p) == "libnvrtc-builtins.so.12.8" {
			t.Fatalf("builtins library offered as NVRTC: %q", got)
		}
	}
	if got[0] != "/usr/local/lib/python3.11/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ||
		got[1] != "/usr/local/lib/python3.11/site-packages/torch/lib/libnvrtc-b51b459d.so.12" {
		t.Fatalf("candidates = %q", got)
	}
	comp := companions(libNVRTC, got[0], env)
	if len(comp) != 1 || filepath.Base(comp[0]) != "libnvrtc-builtins.so.12.8" {
		t.Fatalf("companions = %q, want the builtins library", comp)
	}
}

func TestCompanionsCUBLASLt(t *testing.T) {
	env := fakeEnv(nil, "/c/lib64/libcublas.so.13", "/c/lib64/libcublasLt.so.12", "/c/lib64/libcublasLt.so.13")
	if got := companions(libCUBLAS, "/c/lib64/libcublas.so.13", env); !slices.Equal(got, []string{"/c/lib64/libcublasLt.so.13"}) {
		t.Fatalf("companions = %q", got)
	}
	if got := companions(libCUBLAS, "libcublas.so.13", env); got != nil {
		t.Fatalf("companions of a bare soname = %q, want none", got)
	}
}

func TestVersionOrder(t *testing.T) {
	p := []string{"libcublas.so", "libcublas.so.12", "libcublas.so.13", "libcublas.so.12.9.1", "cuda-12.9", "cuda-12.10", "cuda-11.8"}
	sortVersionsDesc(p)
	want := []string{"libcublas.so.13", "cuda-12.10", "libcublas.so.12.9.1", "cuda-12.9", "libcublas.so.12", "cuda-11.8", "libcublas.so"}
	if !slices.Equal(p, want) {
		t.Fatalf("sorted = %q, want %q", p, want)
	}
}

func TestParseDevice(t *testing.T) {
	for _, tc := range []struct {
		in      string
		kind    string
		ordinal int
		bad     bool
	}{
		{"auto", "auto", 0, false}, {"", "auto", 0, false}, {"cpu", "cpu", 0, false},
		{"cuda", "cuda", 0, false}, {"cuda:3", "cuda", 3, false},
		{"cuda:-1", "", 0, true}, {"cuda:x", "", 0, true}, {"gpu", "", 0, true},
	} {
		kind, n, err := ParseDevice(tc.in)
		if (err != nil) != tc.bad || kind != tc.kind || n != tc.ordinal {
			t.Errorf("ParseDevice(%q) = %q, %d, %v", tc.in, kind, n, err)
		}
	}
}

func TestMissingLibraryNamesIt(t *testing.T) {
	env := fakeEnv(map[string]string{"CBS_LIBCUBLAS": "/nonexistent/libcublas.so.13"})
	_, err := loadCUBLAS(env)
	if err == nil {
		t.Fatal("loading a missing cuBLAS succeeded")
	}
	for _, s := range []string{"libcublas", "/nonexistent/libcublas.so.13", "CBS_LIBCUBLAS"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}
