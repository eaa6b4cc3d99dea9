package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"cbs/branch"
	"cbs/compute/blas"
)

// TestEvalDevice: eval computes its float32 loss where --device and --precision say, refusing
// what the device does not allow; bf16 products move the loss a little, never far.
func TestEvalDevice(t *testing.T) {
	ckpt := filepath.Join(robustFixture(t), branch.CkptDir)
	tokens := filepath.Join(t.TempDir(), "x.npy")
	randomTokens(t, tokens, 2, 32, 200, 1)
	args := []string{"--checkpoint", ckpt, "--tokens", tokens, "--objective", "ar"}
	for _, tc := range []struct {
		flags  []string
		phrase string
	}{
		{[]string{"--precision", "tf32"}, `--precision = "tf32": want "fp32" or "bf16" on the CPU`},
		{[]string{"--device", "gpu"}, `--device = "gpu": want`},
		{[]string{"--dtype", "float64", "--precision", "bf16"}, "--dtype float64 runs on the CPU's reference backend"},
	} {
		code, _, stderr := cbs(t, append(append([]string{"eval"}, args...), tc.flags...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.phrase) {
			t.Errorf("%v: exit %d, %q; want exit %d saying %q", tc.flags, code, stderr, exitUsage, tc.phrase)
		}
	}
	fp32 := evalJSON(t, args...)
	if again := evalJSON(t, append(args, "--device", "cpu", "--precision", "fp32")...); again != fp32 {
		t.Errorf("explicit cpu fp32 %v, default %v", again, fp32)
	}
	if d, info := blas.DefaultDNNL(); d == nil {
		t.Skipf("onednn not loaded: %s", info.Unavailable)
	}
	bf16 := evalJSON(t, append(args, "--precision", "bf16")...)
	if d := math.Abs(bf16-fp32) / fp32; d == 0 || d > 1e-2 {
		t.Errorf("bf16 loss %v, fp32 %v: want them apart by less than 1%%, not equal", bf16, fp32)
	}
}
