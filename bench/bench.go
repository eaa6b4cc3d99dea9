// Package bench times training steps of a random model on fresh random tokens (mdm: random
// masks): forward with the loss, backward and the optimizer (clipping and AdamW), each
// separately, and turns the times into the rates, FLOPs and allocations cbs bench prints.
package bench

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"cbs/compute/blas"
	"cbs/compute/device"
	"cbs/internal/rng"
	"cbs/model"
)

// Options are the model and the steps to time. They mirror torch_ref.py bench's flags, so the
// two commands time the same work.
type Options struct {
	Hidden, Layers, Heads, KVHeads int
	HeadDim, FF, Vocab             int
	Experts, TopK, MoEFF           int
	Seq, Batch                     int
	Objective                      string
	Threads, Steps, Warmup         int
	Tie                            bool
	Seed                           uint64
	LR, Clip, InitStd, MaskEps     float64
	// CPUProfile, when set, receives a pprof CPU profile of the timed steps (not the warmup).
	CPUProfile io.Writer
}

// Config is the model the options describe: a Qwen3 decoder, or Qwen3-MoE with Experts > 0.
func (o Options) Config() model.Config {
	attention := model.Causal
	if !model.IsCausal(o.Objective) {
		attention = model.Bidirectional
	}
	c := model.Config{
		ModelType: "qwen3", HiddenSize: o.Hidden, IntermediateSize: o.FF, NumLayers: o.Layers,
		NumHeads: o.Heads, NumKVHeads: o.KVHeads, HeadDim: o.HeadDim, RMSNormEps: 1e-6, RopeTheta: 10000,
		VocabSize: o.Vocab, TieWordEmbeddings: o.Tie, MaxPositionEmbeddings: max(2048, o.Seq),
		MaskTokenID: o.Vocab - 1, Attention: attention,
	}
	if o.Experts > 0 {
		c.ModelType, c.NumExperts, c.NumExpertsPerTok, c.MoEIntermediateSize = "qwen3_moe", o.Experts, o.TopK, o.MoEFF
		c.NormTopKProb, c.DecoderSparseStep = true, 1
	}
	return c
}

// Stat is the median and the minimum of a phase's times, in milliseconds.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
}

func statOf(xs []float64) Stat {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Stat{Median: med, Min: s[0]}
}

// Result is the JSON object cbs bench prints; names follow torch_ref.py bench where they exist.
type Result struct {
	Backend   string `json:"backend"`
	Precision string `json:"precision"` // inputs of the matrix products
	BLAS      BLAS   `json:"blas"`
	// FP32Products names what runs the CPU's fp32 products: "cbs" (its own AVX-512 kernel),
	// else "onednn" where it loads, else "openblas" or "gonum"; absent on a GPU.
	FP32Products string `json:"fp32_products,omitempty"`
	// DNNL is the oneDNN library that runs the CPU's bf16 products, and its fp32 ones where
	// FP32Products says so; absent when oneDNN runs neither.
	DNNL *blas.DNNLInfo `json:"onednn,omitempty"`
	// AMX is true when the CPU's bf16 products run on AMX tiles: attention's and those whose
	// first operand is not transposed (the weight gradients stay on oneDNN).
	AMX       bool         `json:"amx,omitempty"`
	CPU       string       `json:"cpu"`
	GoVersion string       `json:"go"`
	Threads   int          `json:"threads"`
	LoadAvg   string       `json:"loadavg,omitempty"` // /proc/loadavg at start: others' work skews timings
	Objective string       `json:"objective"`
	Config    model.Config `json:"config"`
	Batch     int          `json:"batch"`
	Seq       int          `json:"seq"`
	Tokens    int          `json:"tokens_per_step"`
	Steps     int          `json:"steps"`
	Warmup    int          `json:"warmup"`
	Params    int          `json:"params"`
	// MS holds forward (with the loss and zeroing the gradient), backward, optimizer (clipping and
	// AdamW) and total, per step.
	MS           map[string]Stat `json:"ms"`
	CPUMS        Stat            `json:"cpu_ms_per_step"` // process CPU time, all threads
	TokensPerS   Rate            `json:"tokens_per_s"`
	FLOPs        float64         `json:"flops_per_step"`
	FLOPsFormula string          `json:"flops_formula"`
	GFLOPs       Rate            `json:"gflops_per_s"`
	// GPU runs: the device, TFLOP/s by the same formula, and the fraction of the chip's dense
	// bf16 peak (0 when the chip is not in cbs's table).
	GPU        *device.GPUInfo `json:"gpu,omitempty"`
	TFLOPs     Rate            `json:"tflops_per_s"`
	MFU        float64         `json:"mfu,omitempty"`
	Allocs     float64         `json:"allocs_per_step"`
	AllocBytes float64         `json:"alloc_bytes_per_step"`
	LastLoss   float64         `json:"last_loss"`
}

// BLAS is the BLAS library the CPU computes with (on a GPU run, the one it would use).
type BLAS struct {
	Library  string `json:"library"`
	Path     string `json:"path,omitempty"`
	CoreName string `json:"openblas_corename,omitempty"`
	Config   string `json:"openblas_config,omitempty"`
	CoreSet  string `json:"coretype_set,omitempty"` // OPENBLAS_CORETYPE cbs chose from the CPU flags
	Fallback string `json:"fallback_reason,omitempty"`
}

// Rate is a throughput at the median and at the best step time.
type Rate struct {
	Median float64 `json:"median"`
	Best   float64 `json:"best"`
}

// FLOPs is torch_ref.py's count: 6 flops per linear weight per token (forward and both
// backward products) over q, k, v, o, gate, up, down and the head, plus 12 per layer, position
// and attention channel for the two attention products (full L x L, causal or not).
// In a Qwen3-MoE model a sparse layer counts its router and the top-k experts a token passes
// through, not every expert: the active weights.
func FLOPs(c model.Config, seq, tokens int) (flops float64, linear int) {
	d, qd, kd := c.HiddenSize, c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	sparse := 0
	if c.NumExperts > 0 {
		sparse = c.SparseLayers()
	}
	linear = c.NumLayers*(qd*d+2*kd*d+d*qd) + (c.NumLayers-sparse)*3*d*c.IntermediateSize + c.VocabSize*d
	linear += sparse * (c.NumExperts*d + c.NumExpertsPerTok*3*d*c.MoEIntermediateSize)
	flops = 6*float64(linear)*float64(tokens) + 12*float64(c.NumLayers)*float64(seq)*float64(qd)*float64(tokens)
	return flops, linear
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Stepper is a random model with its optimizer on a device, ready to be timed.
type Stepper struct {
	o      Options
	h      *device.Handle
	c      model.Config
	params int
	m      *device.Model
	opt    *model.AdamW[float32]
}

// New builds the random model o.Config() (which the caller has validated) and its AdamW on h.
// The errors are those of placing the model and the optimizer on the device.
func New(h *device.Handle, o Options) (*Stepper, error) {
	c := o.Config()
	p := model.NewParams[float32](c)
	p.Init(o.Seed, o.InitStd)
	optCfg := model.DefaultOptim()
	optCfg.LR, optCfg.Clip = o.LR, o.Clip
	m, err := h.NewModel(p)
	if err != nil {
		return nil, err
	}
	opt, err := m.NewAdamW(optCfg, nil)
	if err != nil {
		m.Free()
		return nil, err
	}
	return &Stepper{o: o, h: h, c: c, params: len(p.Data), m: m, opt: opt}, nil
}

// Free releases the model's device memory.
func (s *Stepper) Free() { s.m.Free() }

// Run times the warmup and timed steps and reports them.
func (s *Stepper) Run() (*Result, error) {
	t, err := s.timeSteps(s.batches())
	if err != nil {
		return nil, err
	}
	return s.report(t), nil
}

// batches returns the batch of each step: fresh random tokens (and for mdm masks) drawn from
// the seed and the step, into buffers allocated once so allocations per step are the model's.
func (s *Stepper) batches() func(step int) (*model.Batch, error) {
	o := s.o
	B, L, causal := o.Batch, o.Seq, model.IsCausal(o.Objective)
	batch := model.NewBatch(B, L)
	tokens, masks, probs := make([]int32, B*L), make([]bool, B*L), make([]float64, B)
	return func(step int) (*model.Batch, error) {
		r := rng.New(o.Seed, "bench", uint64(step))
		// mdm keeps the last id for the mask token.
		n := o.Vocab
		if !causal {
			n--
		}
		for i := range tokens {
			tokens[i] = int32(r.Intn(n))
		}
		if causal {
			batch.SetAR(tokens, B)
			return batch, nil
		}
		for b := range probs {
			probs[b] = (1-o.MaskEps)*r.Float64() + o.MaskEps
			for i := 0; i < L; i++ {
				masks[b*L+i] = r.Float64() < probs[b]
			}
		}
		return batch, batch.SetMDM(tokens, masks, probs, s.c.MaskTokenID, B)
	}
}

// Phases are the phases a step is timed in, and the whole step.
var Phases = []string{"forward", "backward", "optimizer", "total"}

// times are the measurements of the timed steps.
type times struct {
	ms                 map[string][]float64 // wall milliseconds per phase
	cpuMS              []float64            // process CPU milliseconds per step
	allocs, allocBytes uint64               // over all timed steps
	loss               float64              // of the last step
}

// timeSteps runs the warmup and timed steps, each phase timed separately.
func (s *Stepper) timeSteps(batch func(int) (*model.Batch, error)) (*times, error) {
	o, net, h := s.o, s.m.M, s.h
	causal := model.IsCausal(o.Objective)
	t := &times{ms: map[string][]float64{}}
	var ms0, ms1 runtime.MemStats
	ms := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
	for step := 0; step < o.Warmup+o.Steps; step++ {
		b, err := batch(step)
		if err != nil {
			return nil, err
		}
		if step == o.Warmup {
			runtime.ReadMemStats(&ms0)
			if o.CPUProfile != nil {
				if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
					return nil, fmt.Errorf("cpu profile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
		}
		c0 := cpuTime()
		t0 := time.Now()
		net.ZeroGrad()
		t.loss = net.ForwardLoss(b, causal)
		t1 := time.Now()
		// A GPU queues its work: waiting for it after each phase makes wall times the device's.
		net.Backward(b, causal)
		h.Sync()
		t2 := time.Now()
		s.opt.Update(net, o.LR)
		h.Sync()
		t3 := time.Now()
		c1 := cpuTime()
		if math.IsNaN(t.loss) || math.IsInf(t.loss, 0) {
			return nil, fmt.Errorf("step %d: loss is %v", step, t.loss)
		}
		if step < o.Warmup {
			continue
		}
		for i, dt := range []time.Duration{t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t3.Sub(t0)} {
			t.ms[Phases[i]] = append(t.ms[Phases[i]], ms(dt))
		}
		t.cpuMS = append(t.cpuMS, ms(c1-c0))
	}
	if o.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	runtime.ReadMemStats(&ms1)
	t.allocs, t.allocBytes = ms1.Mallocs-ms0.Mallocs, ms1.TotalAlloc-ms0.TotalAlloc
	return t, nil
}

// report turns the measurements into the result bench prints.
func (s *Stepper) report(t *times) *Result {
	o, h, c := s.o, s.h, s.c
	B, L := o.Batch, o.Seq
	info := hostBLAS(h)
	res := &Result{
		Backend: h.Name(), Precision: h.Precision,
		BLAS: BLAS{Library: info.Library, Path: info.Path, CoreName: info.CoreName, Config: info.Config,
			CoreSet: info.CoreTypeSet, Fallback: info.FallbackReason},
		CPU: blas.CPUInfo(), GoVersion: runtime.Version(), Threads: o.Threads,
		Objective: o.Objective, Config: c, Batch: B, Seq: L, Tokens: B * L,
		Steps: o.Steps, Warmup: o.Warmup, Params: s.params,
		MS: map[string]Stat{}, CPUMS: statOf(t.cpuMS), LastLoss: t.loss,
		Allocs:     float64(t.allocs) / float64(o.Steps),
		AllocBytes: float64(t.allocBytes) / float64(o.Steps),
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.LoadAvg = strings.TrimSpace(string(b))
	}
	for _, ph := range Phases {
		res.MS[ph] = statOf(t.ms[ph])
	}
	flops, linear := FLOPs(c, L, B*L)
	res.FLOPs = flops
	res.FLOPsFormula = fmt.Sprintf("6 * n_linear * tokens + 12 * layers * seq * (heads * head_dim) * tokens; "+
		"n_linear = %d (q,k,v,o,gate,up,down in all layers + output head%s)", linear, moeNote(c))
	tot := res.MS["total"]
	res.TokensPerS = Rate{Median: float64(B*L) / tot.Median * 1e3, Best: float64(B*L) / tot.Min * 1e3}
	res.GFLOPs = Rate{Median: flops / tot.Median / 1e6, Best: flops / tot.Min / 1e6}
	res.TFLOPs = Rate{Median: res.GFLOPs.Median / 1e3, Best: res.GFLOPs.Best / 1e3}
	if cp := h.CPU(); cp != nil {
		res.FP32Products = cp.FP32Library()
		if d := cp.DNNL(); d.Library != "" {
			res.DNNL = &d
		}
		res.AMX = cp.AMX()
	}
	if g := h.GPU(); g != nil {
		res.GPU = g
		if peak := g.Device.PeakBF16TFLOP; peak > 0 {
			res.MFU = res.TFLOPs.Median / peak
		}
	}
	return res
}

// hostBLAS is the BLAS library of the CPU backend, or on a GPU the one the CPU would use: the
// report keeps one shape whichever device ran.
func hostBLAS(h *device.Handle) blas.Info {
	if c := h.CPU(); c != nil {
		return c.BLAS()
	}
	_, info := blas.Default()
	return info
}

// moeNote says what n_linear counts in a sparse layer.
func moeNote(c model.Config) string {
	if c.NumExperts == 0 {
		return ""
	}
	return fmt.Sprintf("; a sparse layer: its router and the %d of %d experts a token is routed to", c.NumExpertsPerTok, c.NumExperts)
}
