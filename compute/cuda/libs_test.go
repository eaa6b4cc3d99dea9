package cuda

import (
	"errors"
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
		getenv:   func(k string) string { return vars[k] },
		realpath: func(p string) (string, error) { return p, nil },
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

// TestDriverCandidatesOrder: the driver installed with the kernel module (the loader's own
// search, then LD_LIBRARY_PATH and the system folders) comes before any toolkit's compat driver,
// which may be older than the kernel driver and then fails cuInit.
func TestDriverCandidatesOrder(t *testing.T) {
	sys := systemLibDirs()[0]
	env := fakeEnv(map[string]string{"CUDA_HOME": "/opt/cuda", "LD_LIBRARY_PATH": "/ld"},
		"/opt/cuda/compat/libcuda.so.1",
		"/opt/cuda/lib64/stubs/libcuda.so",
		"/usr/local/cuda/compat/libcuda.so.1",
		sys+"/libcuda.so.1",
		"/ld/libcuda.so.1",
	)
	want := []string{"libcuda.so.1", "/ld/libcuda.so.1", sys + "/libcuda.so.1", "/opt/cuda/compat/libcuda.so.1", "/usr/local/cuda/compat/libcuda.so.1"}
	if got := candidates(libCUDA, env); !slices.Equal(got, want) {
		t.Fatalf("driver candidates:\n got %q\nwant %q", got, want)
	}
	env = fakeEnv(map[string]string{"CBS_LIBCUDA": "/x/libcuda.so.1"}, "/usr/local/cuda/compat/libcuda.so.1")
	if got := candidates(libCUDA, env); !slices.Equal(got, []string{"/x/libcuda.so.1"}) {
		t.Fatalf("driver candidates with CBS_LIBCUDA = %q", got)
	}
}

// fakeDrivers loads every path but those in missing; cuInit fails for those in failing.
type fakeDrivers struct {
	missing, failing []string
	opened, closed   []string
}

func (f *fakeDrivers) loader() driverLoader {
	return driverLoader{
		open: func(p string) (*driver, error) {
			if slices.Contains(f.missing, p) {
				return nil, errors.New("dlopen " + p + ": cannot open shared object file")
			}
			f.opened = append(f.opened, p)
			return &driver{loaded: &loaded{lib: libCUDA, path: p}}, nil
		},
		init: func(d *driver) error {
			if slices.Contains(f.failing, d.path) {
				return errors.New("cuInit: CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE (804)")
			}
			return nil
		},
		close: func(d *driver) { f.closed = append(f.closed, d.path) },
	}
}

func TestLoadDriverFallsBack(t *testing.T) {
	const plain, compat = "libcuda.so.1", "/usr/local/cuda/compat/libcuda.so.1"
	cands := []string{plain, "/usr/lib/x86_64-linux-gnu/libcuda.so.1", compat}

	// A driver that initialises is used, and nothing after it is opened.
	f := &fakeDrivers{failing: []string{compat}}
	d, err := loadDriver(cands, f.loader())
	if err != nil || d.path != plain || !slices.Equal(f.opened, []string{plain}) || len(f.closed) != 0 {
		t.Fatalf("plain driver works: got %v, %v; opened %q, closed %q", d, err, f.opened, f.closed)
	}

	// One whose cuInit fails is closed and the next is tried.
	f = &fakeDrivers{missing: []string{cands[1]}, failing: []string{plain}}
	d, err = loadDriver(cands, f.loader())
	if err != nil || d.path != compat || !slices.Equal(f.closed, []string{plain}) {
		t.Fatalf("plain driver fails cuInit: got %v, %v; closed %q", d, err, f.closed)
	}

	// When none works, the error names every candidate, why it failed, and the override.
	f = &fakeDrivers{missing: []string{cands[1]}, failing: []string{plain, compat}}
	_, err = loadDriver(cands, f.loader())
	if err == nil {
		t.Fatal("no working driver, no error")
	}
	if !slices.Equal(f.closed, f.opened) || len(f.opened) != 2 {
		t.Errorf("opened %q, closed %q: every driver that failed cuInit must be closed", f.opened, f.closed)
	}
	for _, s := range append(cands, "804", "cannot open", "CBS_LIBCUDA") {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

// TestSitePackagesOfPythonOnPath: a virtual environment on PATH but not activated (no
// VIRTUAL_ENV) still has its CUDA 13 wheels searched, before the interpreter it links to.
func TestSitePackagesOfPythonOnPath(t *testing.T) {
	const venv = "/srv/venv/lib/python3.12/site-packages"
	lib := venv + "/nvidia/cu13/lib/"
	env := fakeEnv(map[string]string{"PATH": "/home/u/bin:/srv/venv/bin:/usr/bin"},
		"/srv/venv/bin/python3",
		"/usr/bin/python3",
		lib+"libnvrtc.so.13",
		lib+"libnvrtc-builtins.so.13.0",
		lib+"libcublas.so.13",
		lib+"libcublasLt.so.13",
		"/opt/py/lib/python3.12/site-packages/nvidia/cu13/lib/libcublas.so.13",
		"/usr/lib/python3/dist-packages",
	)
	env.realpath = func(p string) (string, error) {
		if p == "/srv/venv/bin/python3" {
			return "/opt/py/bin/python3.12", nil
		}
		return p, nil
	}
	sp := sitePackages(env)
	if i, j := slices.Index(sp, venv), slices.Index(sp, "/opt/py/lib/python3.12/site-packages"); i < 0 || j < i {
		t.Fatalf("site-packages = %q, want %s, then the linked interpreter's", sp, venv)
	}
	if got := candidates(libNVRTC, env); got[0] != lib+"libnvrtc.so.13" {
		t.Fatalf("NVRTC candidates = %q", got)
	}
	if got := companions(libNVRTC, lib+"libnvrtc.so.13", env); !slices.Equal(got, []string{lib + "libnvrtc-builtins.so.13.0"}) {
		t.Fatalf("NVRTC companions = %q", got)
	}
	got := candidates(libCUBLAS, env)
	if got[0] != lib+"libcublas.so.13" || got[1] != "/opt/py/lib/python3.12/site-packages/nvidia/cu13/lib/libcublas.so.13" {
		t.Fatalf("cuBLAS candidates = %q", got)
	}
	if got := companions(libCUBLAS, lib+"libcublas.so.13", env); !slices.Equal(got, []string{lib + "libcublasLt.so.13"}) {
		t.Fatalf("cuBLAS companions = %q", got)
	}

	// CBS_SITE_PACKAGES, what scripts/gpu-check.sh sets from python3 itself, comes first.
	env = fakeEnv(map[string]string{"CBS_SITE_PACKAGES": "/a/site-packages:/b/site-packages", "VIRTUAL_ENV": "/srv/venv"},
		"/a/site-packages/nvidia/cublas/lib/libcublas.so.12", lib+"libcublas.so.13")
	if got := candidates(libCUBLAS, env); got[0] != "/a/site-packages/nvidia/cublas/lib/libcublas.so.12" || got[1] != lib+"libcublas.so.13" {
		t.Fatalf("cuBLAS candidates with CBS_SITE_PACKAGES = %q", got)
	}
}
