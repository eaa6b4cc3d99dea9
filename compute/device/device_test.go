package device

import (
	"errors"
	"strings"
	"testing"

	"cbs/compute/blas"
	"cbs/model"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Target
		bad  bool
	}{
		{"auto", Target{Kind: Auto}, false}, {"", Target{Kind: Auto}, false}, {"cpu", Target{Kind: CPU}, false},
		{"cuda", Target{Kind: CUDA}, false}, {"cuda:3", Target{Kind: CUDA, Ordinal: 3}, false},
		{"cuda:-1", Target{}, true}, {"cuda:x", Target{}, true}, {"gpu", Target{}, true}, {"CPU", Target{}, true},
	} {
		got, err := Parse(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v", tc.in, got, err)
		}
	}
	if s := (Target{Kind: CUDA}).String(); s != "cuda:0" {
		t.Errorf("cuda prints as %q, want cuda:0", s)
	}
}

// TestCheckPrecision: each device allows its own precisions, and auto what both allow; a
// refusal lists what the device allows.
func TestCheckPrecision(t *testing.T) {
	for _, tc := range []struct {
		device, precision string
		ok                bool
		says              string
	}{
		{"cpu", "", true, ""}, {"cpu", "fp32", true, ""}, {"cpu", "bf16", true, ""},
		{"cpu", "tf32", false, `want "fp32" or "bf16" on the CPU`},
		{"cuda:1", "", true, ""}, {"cuda", "tf32", true, ""}, {"cuda", "fp32", true, ""}, {"cuda", "bf16", true, ""},
		{"cuda", "fp16", false, `want "bf16", "tf32" or "fp32" on a GPU`},
		{"auto", "bf16", true, ""}, {"auto", "tf32", false, "device auto"},
		{"cpu", "BF16", false, "want"},
	} {
		target, _ := Parse(tc.device)
		err := CheckPrecision(target, tc.precision)
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), tc.says)) {
			t.Errorf("%s at %q: %v; want ok %v, saying %q", tc.device, tc.precision, err, tc.ok, tc.says)
		}
	}
}

// TestOpenCPU: the CPU opens at fp32 by default, at bf16 where oneDNN loads, and refuses a
// GPU's precision and a bad device with errors that Keyed names in the caller's terms.
func TestOpenCPU(t *testing.T) {
	h, err := Open(Options{Device: "cpu", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.Target != (Target{Kind: CPU}) || h.Precision != FP32 || h.Memory != nil || h.CPU() == nil || h.GPU() != nil {
		t.Errorf("cpu: target %v, precision %s, memory %v, gpu %v", h.Target, h.Precision, h.Memory, h.GPU())
	}
	if h.Name() != h.CPU().Name() || strings.Contains(h.Name(), "bf16") {
		t.Errorf("name %q", h.Name())
	}
	if _, _, ok := h.MemInfo(); ok || h.Sync() != nil {
		t.Error("the CPU reports device memory or a pending error")
	}

	_, err = Open(Options{Device: "cpu", Precision: "tf32"})
	if got := Keyed(err, "run.").Error(); !strings.HasPrefix(got, `run.precision = "tf32": want "fp32" or "bf16"`) {
		t.Errorf("tf32 on the CPU: %q", got)
	}
	_, err = Open(Options{Device: "gpu"})
	if got := Keyed(err, "--").Error(); !strings.HasPrefix(got, `--device = "gpu": want`) {
		t.Errorf("bad device: %q", got)
	}
	if other := errors.New("x"); Keyed(other, "run.") != other {
		t.Error("Keyed changed an error that is not the device's")
	}

	bf, err := Open(Options{Device: "cpu", Precision: "bf16", Threads: 1})
	if d, info := blas.DefaultDNNL(); d == nil {
		if err == nil || !strings.Contains(err.Error(), "oneDNN") {
			t.Errorf("bf16 without oneDNN (%s): %v", info.Unavailable, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	if bf.Precision != BF16 || !strings.Contains(bf.Name(), "bf16") {
		t.Errorf("bf16: precision %s, name %q", bf.Precision, bf.Name())
	}
}

// TestOpenAuto: auto lands on a GPU or on the CPU and says which, in one line.
func TestOpenAuto(t *testing.T) {
	var lines []string
	h, err := Open(Options{Device: "auto", Threads: 1, Log: func(l string) { lines = append(lines, l) }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want, where := FP32, "running on the CPU"
	if h.Target.Kind == CUDA {
		want, where = BF16, "running on cuda:0"
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "device auto: ") || !strings.HasSuffix(lines[0], where) {
		t.Errorf("auto on %v said %q", h.Target, lines)
	}
	if h.Target.Kind == Auto || h.Precision != want {
		t.Errorf("auto: target %v at %s", h.Target, h.Precision)
	}
}

// TestModelOnCPU: on the CPU the placed model computes on the parameters it was given and the
// optimizer state is the one it continues, so checkpoints save them as they are.
func TestModelOnCPU(t *testing.T) {
	h, err := Open(Options{Device: "cpu", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c := model.Config{ModelType: "qwen3", HiddenSize: 8, IntermediateSize: 8, NumLayers: 1, NumHeads: 2, NumKVHeads: 1,
		HeadDim: 4, RMSNormEps: 1e-6, RopeTheta: 1e4, VocabSize: 16, MaxPositionEmbeddings: 8, MaskTokenID: 15, Attention: model.Causal}
	p := model.NewParams[float32](c)
	m, err := h.NewModel(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if m.Resident() || m.M.Params != p {
		t.Fatal("the CPU model is not the parameters it was given")
	}
	cfg := model.DefaultOptim()
	fresh, err := m.NewAdamW(cfg, nil)
	if err != nil || len(fresh.M) != len(p.Data) || fresh.Step != 0 {
		t.Fatalf("fresh optimizer: %v", err)
	}
	kept := model.NewAdamW[float32](model.OptimConfig{}, len(p.Data))
	kept.Step = 5
	opt, err := m.NewAdamW(cfg, kept)
	if err != nil || opt != kept || opt.Cfg.Beta2 != cfg.Beta2 {
		t.Fatalf("continued optimizer: %v, same %v", err, opt == kept)
	}
	if hp, ho := m.Host(opt, kept); hp != p || ho != opt {
		t.Error("Host copied on the CPU")
	}
}
