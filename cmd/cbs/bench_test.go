package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cbs/bench"
	"cbs/compute/blas"
)

func runCaptured(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		code := exitError
		if ce, ok := err.(*codedError); ok {
			code = ce.code
		}
		return err.Error(), code
	}
	return out.String(), exitOK
}

// TestBenchJSON runs a few steps of the tiny preset and checks that the report is complete and
// self-consistent. Timings are not asserted.
func TestBenchJSON(t *testing.T) {
	for _, objective := range []string{"ar", "mdm"} {
		out, code := runCaptured(t, "bench", "--preset", "tiny", "--seq", "16", "--batch", "2",
			"--steps", "2", "--warmup", "1", "--threads", "2", "--objective", objective, "--json")
		if code != exitOK {
			t.Fatalf("%s: exit %d: %s", objective, code, out)
		}
		var r bench.Result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%s: %v\n%s", objective, err, out)
		}
		if r.Objective != objective || r.Tokens != 32 || r.Steps != 2 || r.Threads != 2 {
			t.Errorf("%s: objective %q, tokens %d, steps %d, threads %d", objective, r.Objective, r.Tokens, r.Steps, r.Threads)
		}
		c := r.Config
		if c.HiddenSize != 64 || c.NumLayers != 2 || c.NumKVHeads != 2 || c.HeadDim != 16 || c.VocabSize != 260 {
			t.Errorf("%s: tiny preset not applied: %+v", objective, c)
		}
		// torch_ref's count for tiny at 32 tokens: n_linear = 2 (64*64 + 2*32*64 + 64*64 + 3*64*128) + 260*64.
		linear := 2*(64*64+2*32*64+64*64+3*64*128) + 260*64
		if want := 6*float64(linear)*32 + 12*2*16*64*32; r.FLOPs != want {
			t.Errorf("%s: flops %v, want %v", objective, r.FLOPs, want)
		}
		for _, ph := range []string{"forward", "backward", "optimizer", "total"} {
			s, ok := r.MS[ph]
			if !ok || !(s.Min > 0) || s.Min > s.Median {
				t.Errorf("%s: phase %s: %+v", objective, ph, s)
			}
		}
		if !(r.TokensPerS.Best >= r.TokensPerS.Median && r.TokensPerS.Median > 0) || !(r.GFLOPs.Median > 0) {
			t.Errorf("%s: rates %+v %+v", objective, r.TokensPerS, r.GFLOPs)
		}
		// A random model predicts about uniformly: the loss is near log(vocab) (mdm: times the mean 1/p weight).
		if math.IsNaN(r.LastLoss) || r.LastLoss <= 0 {
			t.Errorf("%s: last loss %v", objective, r.LastLoss)
		}
		if objective == "ar" && math.Abs(r.LastLoss-math.Log(260)) > 0.5 {
			t.Errorf("ar: last loss %v, want about log(260) = %v", r.LastLoss, math.Log(260))
		}
		if r.BLAS.Library == "" || r.Backend == "" || r.CPU == "" {
			t.Errorf("%s: missing backend description: %+v %q %q", objective, r.BLAS, r.Backend, r.CPU)
		}
		// oneDNN is reported at fp32 exactly when it runs the fp32 products.
		if r.Precision != "fp32" || r.FP32Products == "" || (r.DNNL != nil) != (r.FP32Products == "onednn") {
			t.Errorf("%s: default precision %q, fp32 products on %q, onednn %+v", objective, r.Precision, r.FP32Products, r.DNNL)
		}
	}
}

// TestBenchBF16 runs the tiny preset with bf16 products: the report names the precision and
// oneDNN, and the loss is that of a random model. It skips where oneDNN is absent.
func TestBenchBF16(t *testing.T) {
	if d, info := blas.DefaultDNNL(); d == nil {
		t.Skipf("onednn not loaded: %s", info.Unavailable)
	}
	out, code := runCaptured(t, "bench", "--preset", "tiny", "--seq", "16", "--batch", "2",
		"--steps", "2", "--warmup", "1", "--precision", "bf16", "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	var r bench.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Precision != "bf16" || r.DNNL == nil || r.DNNL.Library != "onednn" || r.DNNL.ISA == "" || !strings.Contains(r.Backend, "bf16") {
		t.Errorf("precision %q, onednn %+v, backend %q", r.Precision, r.DNNL, r.Backend)
	}
	if math.Abs(r.LastLoss-math.Log(260)) > 0.5 {
		t.Errorf("last loss %v, want about log(260) = %v", r.LastLoss, math.Log(260))
	}
	out, code = runCaptured(t, "bench", "--preset", "tiny", "--seq", "8", "--batch", "1", "--steps", "1", "--warmup", "0", "--precision", "bf16")
	if code != exitOK || !strings.Contains(out, "precision  bf16") || !strings.Contains(out, "onednn     ") {
		t.Errorf("table: exit %d:\n%s", code, out)
	}
}

func TestBenchTable(t *testing.T) {
	out, code := runCaptured(t, "bench", "--preset", "tiny", "--seq", "8", "--batch", "1", "--steps", "1", "--warmup", "0")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, want := range []string{"forward", "backward", "optimizer", "tokens/s", "GFLOP/s", "allocs"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestBenchCPUProfile: --cpuprofile writes a pprof profile (gzip-compressed protobuf) of the
// timed steps, and a file that cannot be created is a runtime error.
func TestBenchCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	args := []string{"bench", "--preset", "tiny", "--seq", "8", "--batch", "1", "--steps", "2", "--warmup", "1"}
	if out, code := runCaptured(t, append(args, "--cpuprofile", path)...); code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("profile %s: %d bytes, err %v: want a gzip stream", path, len(b), err)
	}
	bad := filepath.Join(t.TempDir(), "missing", "cpu.pprof")
	if out, code := runCaptured(t, append(args, "--cpuprofile", bad)...); code != exitError || !strings.Contains(out, "--cpuprofile") {
		t.Errorf("unwritable profile: exit %d (%s), want %d naming the flag", code, out, exitError)
	}
}

func TestBenchBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--objective", "xyz"},
		{"bench", "--preset", "huge"},
		{"bench", "--heads", "3", "--kv-heads", "2"},
		{"bench", "--steps", "0"},
		{"bench", "--precision", "tf32"}, // cuda only
		{"bench", "--precision", "fp16"},
	} {
		if out, code := runCaptured(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, out, exitUsage)
		}
	}
}

// TestBenchMoE: bench runs a Qwen3-MoE model and its formula says what a sparse layer counts.
func TestBenchMoE(t *testing.T) {
	out, code := runCaptured(t, "bench", "--preset", "tiny", "--experts", "4", "--top-k", "2", "--moe-ff", "32", "--steps", "1", "--warmup", "0", "--json")
	if code != 0 || !strings.Contains(out, "router and the 2 of 4 experts") {
		t.Errorf("bench with experts: exit %d\n%s", code, out)
	}
}
