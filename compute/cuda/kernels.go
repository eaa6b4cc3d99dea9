package cuda

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

//go:embed kernels.cu
var kernelSource string

// kernelNames lists every kernel the backend launches; Open fails if the module lacks one.
var kernelNames = []string{
	"cast_f32_bf16", "cast_bf16_f32", "embedding_fwd", "embedding_bwd",
	"rmsnorm_fwd", "rmsnorm_bwd_dx", "rmsnorm_bwd_dw_partial", "colsum_finish",
	"rope", "softmax_fwd", "softmax_bwd", "swiglu_fwd", "swiglu_bwd",
	"cross_entropy", "sum_d", "sumsq_partial", "add", "scale", "adamw",
}

// sourceKernels returns the names of the extern "C" __global__ functions in src.
func sourceKernels(src string) []string {
	re := regexp.MustCompile(`extern "C" __global__ void (\w+)\(`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(src, -1) {
		out = append(out, m[1])
	}
	return out
}

// sourceHash identifies the kernel source (and the compile options, which change the code).
func sourceHash() string {
	h := sha256.Sum256([]byte(kernelSource + "\x00" + compileOptionsKey))
	return hex.EncodeToString(h[:])
}

// compileOptionsKey is part of the cache key: change it when nvrtc.compile's options change.
const compileOptionsKey = "--fmad=false"

// cacheKey names a compiled module: the source hash, the target (e.g. sm_90), and the NVRTC and
// driver versions, since a module from another toolkit or driver may not load or may differ.
func cacheKey(srcHash, arch, nvrtcVersion string, driverVersion int) string {
	return fmt.Sprintf("kernels-%s-%s-nvrtc%s-driver%d", srcHash[:16], arch, nvrtcVersion, driverVersion)
}

// cacheDir is where compiled modules are kept: $CBS_CUDA_CACHE, else the user cache folder.
func cacheDir() (string, error) {
	if d := os.Getenv("CBS_CUDA_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "cbs", "cuda"), nil
}

// readCache returns a cached module image, or nil.
func readCache(dir, key string) []byte {
	b, err := os.ReadFile(filepath.Join(dir, key))
	if err != nil || len(b) == 0 {
		return nil
	}
	return b
}

// writeCache stores an image atomically; failure only costs a recompilation next time.
func writeCache(dir, key string, image []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, key+".tmp*")
	if err != nil {
		return err
	}
	if _, err := f.Write(image); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, key))
}
