package cuda

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// library names one of the shared libraries the backend loads.
type library struct {
	name string // as reported: "libcuda", "libnvrtc", "libcublas"
	// env overrides the search with one path.
	env string
	// patterns are file name globs tried in each folder; sonames are tried bare (ld.so's own
	// search: LD_LIBRARY_PATH, the ld.so cache) after the folders.
	patterns []string
	sonames  []string
	// pip is the folder under site-packages/nvidia that pip's nvidia-* wheels use (several: the
	// CUDA 13 wheels put every library in nvidia/cu13/lib).
	pip []string
}

var (
	libCUDA = library{
		name: "libcuda", env: "CBS_LIBCUDA",
		// The driver lives with the kernel module, not with the toolkit: see driverCandidates.
		sonames:  []string{"libcuda.so.1"},
		patterns: []string{"libcuda.so.1"},
	}
	libNVRTC = library{
		name: "libnvrtc", env: "CBS_LIBNVRTC",
		patterns: []string{"libnvrtc.so.*", "libnvrtc-*.so.*", "libnvrtc.so"},
		sonames:  []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"},
		pip:      []string{"cuda_nvrtc", "cu13", "cu12"},
	}
	libCUBLAS = library{
		name: "libcublas", env: "CBS_LIBCUBLAS",
		patterns: []string{"libcublas.so.*", "libcublas.so"},
		sonames:  []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"},
		pip:      []string{"cublas", "cu13", "cu12"},
	}
)

// searchEnv is what the search reads from the machine, replaceable in tests.
type searchEnv struct {
	getenv   func(string) string
	glob     func(string) ([]string, error)
	realpath func(string) (string, error) // filepath.EvalSymlinks
}

func osSearchEnv() searchEnv {
	return searchEnv{getenv: os.Getenv, glob: filepath.Glob, realpath: filepath.EvalSymlinks}
}

// compatDirs are where a toolkit keeps its forward-compatibility driver.
func compatDirs(env searchEnv) []string {
	var dirs []string
	for _, v := range []string{"CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"} {
		if h := env.getenv(v); h != "" {
			dirs = append(dirs, filepath.Join(h, "compat"))
		}
	}
	return append(dirs, "/usr/local/cuda/compat")
}

// driverCandidates lists the libcuda.so.1 files to try, best first: the override alone when set;
// else the bare soname (the loader's own search finds the driver installed with the kernel
// module), LD_LIBRARY_PATH, the system folders, and last the toolkits' compat folders. A compat
// driver only helps a newer toolkit over an older kernel driver; when it is older than the
// kernel driver (a CUDA 13.0 image on a newer host) its cuInit fails, so it must not come first.
func driverCandidates(env searchEnv) []string {
	lib := libCUDA
	if p := env.getenv(lib.env); p != "" {
		return []string{p}
	}
	out := slices.Clone(lib.sonames)
	var dirs []string
	for _, d := range filepath.SplitList(env.getenv("LD_LIBRARY_PATH")) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	dirs = append(dirs, systemLibDirs()...)
	dirs = append(dirs, compatDirs(env)...)
	for _, d := range dirs {
		for _, pat := range lib.patterns {
			found, _ := env.glob(filepath.Join(d, pat))
			sortVersionsDesc(found)
			for _, p := range found {
				if !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// candidates lists the paths to try for lib, best first: the override variable alone when set;
// else CUDA_HOME (and CUDA_PATH), LD_LIBRARY_PATH, the pip nvidia-* folders of every
// site-packages found, /usr/local/cuda and /usr/local/cuda-* (newest first), the system library
// folders, and last the bare sonames for the dynamic loader. Within a folder, higher versions
// come first. A path appears once. The driver has its own order (driverCandidates).
func candidates(lib library, env searchEnv) []string {
	if lib.name == libCUDA.name {
		return driverCandidates(env)
	}
	if p := env.getenv(lib.env); p != "" {
		return []string{p}
	}
	var dirs []string
	for _, v := range []string{"CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"} {
		if h := env.getenv(v); h != "" {
			dirs = append(dirs, filepath.Join(h, "lib64"), filepath.Join(h, "lib"))
		}
	}
	for _, d := range filepath.SplitList(env.getenv("LD_LIBRARY_PATH")) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	for _, sp := range sitePackages(env) {
		for _, p := range lib.pip {
			dirs = append(dirs, filepath.Join(sp, "nvidia", p, "lib"))
		}
		if lib.name == "libnvrtc" {
			// Some torch wheels carry their own NVRTC with a hashed name.
			dirs = append(dirs, filepath.Join(sp, "torch", "lib"))
		}
	}
	dirs = append(dirs, "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib")
	versioned, _ := env.glob("/usr/local/cuda-*")
	sortVersionsDesc(versioned)
	for _, v := range versioned {
		dirs = append(dirs, filepath.Join(v, "lib64"))
	}
	dirs = append(dirs, systemLibDirs()...)
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, d := range dirs {
		for _, pat := range lib.patterns {
			found, _ := env.glob(filepath.Join(d, pat))
			found = slices.DeleteFunc(found, func(p string) bool { return strings.Contains(filepath.Base(p), "builtins") })
			sortVersionsDesc(found)
			for _, p := range found {
				add(p)
			}
		}
	}
	for _, s := range lib.sonames {
		add(s)
	}
	return out
}

// sitePackages lists the Python package folders that may hold pip's nvidia-* wheels:
// CBS_SITE_PACKAGES and PYTHONPATH as given, then lib/python3*/{site,dist}-packages under the
// prefixes of VIRTUAL_ENV, CONDA_PREFIX, the python3 on PATH, ~/.local and the usual system ones.
// The python3 on PATH matters where PyTorch runs from a virtual environment that is on PATH but
// not activated (VIRTUAL_ENV unset): its CUDA wheels hold NVRTC and cuBLAS.
func sitePackages(env searchEnv) []string {
	var out []string
	for _, v := range []string{"CBS_SITE_PACKAGES", "PYTHONPATH"} {
		for _, p := range filepath.SplitList(env.getenv(v)) {
			if p != "" {
				out = append(out, p)
			}
		}
	}
	var roots []string
	for _, v := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if r := env.getenv(v); r != "" {
			roots = append(roots, r)
		}
	}
	roots = append(roots, pythonPrefixes(env)...)
	if h := env.getenv("HOME"); h != "" {
		roots = append(roots, filepath.Join(h, ".local"))
	}
	roots = append(roots, "/usr/local", "/usr", "/opt/conda")
	for _, r := range roots {
		for _, sub := range []string{"site-packages", "dist-packages"} {
			found, _ := env.glob(filepath.Join(r, "lib", "python3*", sub))
			sortVersionsDesc(found)
			for _, f := range found {
				if !slices.Contains(out, f) {
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// pythonPrefixes returns the prefix of the first python3 on PATH (bin/python3 -> the folder
// above bin): as found, which is a virtual environment's own prefix even when its python3 links
// to a system interpreter, then the prefix of the file the link resolves to. Nothing is run:
// starting an interpreter at every library load would cost far more than a few globs.
func pythonPrefixes(env searchEnv) []string {
	for _, d := range filepath.SplitList(env.getenv("PATH")) {
		if d == "" {
			continue
		}
		exe := filepath.Join(d, "python3")
		if found, _ := env.glob(exe); len(found) == 0 {
			continue
		}
		out := []string{filepath.Dir(filepath.Clean(d))}
		if env.realpath != nil {
			if real, err := env.realpath(exe); err == nil {
				if p := filepath.Dir(filepath.Dir(real)); !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
		}
		return out
	}
	return nil
}

func systemLibDirs() []string {
	switch runtime.GOARCH {
	case "arm64":
		return []string{"/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"}
	default:
		return []string{"/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"}
	}
}

// sortVersionsDesc orders paths by the numbers in their base names, highest first
// (libcublas.so.13 before libcublas.so.12, cuda-12.10 before cuda-12.9), names without numbers last.
func sortVersionsDesc(paths []string) {
	slices.SortStableFunc(paths, func(a, b string) int {
		return -compareVersions(versionOf(filepath.Base(a)), versionOf(filepath.Base(b)))
	})
}

// versionOf extracts the dot-separated numbers after the first ".so." or "-" in name.
func versionOf(name string) []int {
	s := name
	if i := strings.Index(s, ".so."); i >= 0 {
		s = s[i+4:]
	} else if i := strings.LastIndex(s, "-"); i >= 0 {
		s = s[i+1:]
	} else {
		return nil
	}
	var v []int
	for _, f := range strings.Split(s, ".") {
		n, err := strconv.Atoi(f)
		if err != nil {
			break
		}
		v = append(v, n)
	}
	return v
}

func compareVersions(a, b []int) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] - b[i]
		}
	}
	return len(a) - len(b)
}

// companions lists libraries to load globally before path, from the same folder: cuBLAS needs
// cuBLASLt, and NVRTC opens its builtins library by soname.
func companions(lib library, path string, env searchEnv) []string {
	dir := filepath.Dir(path)
	if !strings.Contains(path, "/") {
		return nil
	}
	var pat string
	switch lib.name {
	case "libcublas":
		pat = "libcublasLt.so*"
	case "libnvrtc":
		pat = "libnvrtc-builtins*.so*"
	default:
		return nil
	}
	found, _ := env.glob(filepath.Join(dir, pat))
	sortVersionsDesc(found)
	// Prefer the companion of the same major version as the library.
	if v := versionOf(filepath.Base(path)); len(v) > 0 {
		for _, f := range found {
			if fv := versionOf(filepath.Base(f)); len(fv) > 0 && fv[0] == v[0] {
				return []string{f}
			}
		}
	}
	if len(found) > 0 {
		return found[:1]
	}
	return nil
}
