package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"cbs/compute/blas"
	"cbs/compute/device"
	"cbs/internal/rng"
	"cbs/model"
)

func init() { verbs = append(verbs, newBenchCmd) }

// benchOptions mirror torch_ref.py bench's flags, so the two commands time the same work.
type benchOptions struct {
	preset                     string
	hidden, layers, heads, kv  int
	headDim, ff, vocab         int
	experts, topK, moeFF       int
	seq, batch                 int
	objective                  string
	threads, steps, warmup     int
	tie                        bool
	seed                       uint64
	json                       bool
	lr, clip, initStd, maskEps float64
	device, precision          string
}

// benchPresets fill the model flags the user did not give. tiny is torch_ref.py's tiny model.
var benchPresets = map[string]map[string]int{
	"default": {"hidden": 256, "layers": 4, "heads": 4, "kv-heads": 4, "head-dim": 64, "ff": 1024, "vocab": 256, "seq": 256, "batch": 16},
	"tiny":    {"hidden": 64, "layers": 2, "heads": 4, "kv-heads": 2, "head-dim": 16, "ff": 128, "vocab": 260, "seq": 64, "batch": 16},
}

func newBenchCmd() *cobra.Command {
	o := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Time CPU training steps on random tokens",
		Long: `bench builds a random model and times training steps on fresh random tokens (mdm: random
masks): forward with the loss, backward, and the optimizer (clipping and AdamW), each separately.
It prints the median and best time per phase, tokens/s, GFLOP/s (torch_ref.py's formula:
6 x linear weights incl. the head x tokens + 12 x layers x seq x heads x head_dim x tokens),
allocations per step and the BLAS library with its OpenBLAS kernel family.

--precision bf16 on the CPU rounds both operands of the model's matrix products to bfloat16
and multiplies them with oneDNN (fp32 accumulation; weights, AdamW, norms, softmax and the loss
stay fp32); it needs libdnnl.so.2 (Debian: libdnnl2). The default on the CPU is fp32 (OpenBLAS).

Its flags and defaults are those of the PyTorch reference trainer's bench command (torch_ref.py
bench), so the two compare.
--preset tiny selects torch_ref.py's tiny model; flags given explicitly override a preset.

Exit status: 0 ok, 1 error, 2 bad flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.resolve(cmd); err != nil {
				return err
			}
			if o.device == "cpu" {
				warnSlowPath(cmd.ErrOrStderr())
			}
			res, err := runBench(o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if o.json {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			res.writeTable(out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.preset, "preset", "default", "model and batch sizes: default or tiny")
	d := benchPresets["default"]
	f.IntVar(&o.hidden, "hidden", d["hidden"], "hidden size")
	f.IntVar(&o.layers, "layers", d["layers"], "number of layers")
	f.IntVar(&o.heads, "heads", d["heads"], "attention heads")
	f.IntVar(&o.kv, "kv-heads", d["kv-heads"], "key/value heads")
	f.IntVar(&o.headDim, "head-dim", d["head-dim"], "head dimension")
	f.IntVar(&o.ff, "ff", d["ff"], "MLP intermediate size")
	f.IntVar(&o.experts, "experts", 0, "experts per MLP layer, Qwen3-MoE (0: dense)")
	f.IntVar(&o.topK, "top-k", 2, "with --experts: experts each token is routed to")
	f.IntVar(&o.moeFF, "moe-ff", 256, "with --experts: intermediate size of each expert")
	f.IntVar(&o.vocab, "vocab", d["vocab"], "vocabulary size (the last id is the mdm mask token)")
	f.IntVar(&o.seq, "seq", d["seq"], "sequence length")
	f.IntVar(&o.batch, "batch", d["batch"], "sequences per step")
	f.StringVar(&o.objective, "objective", model.AR, "ar or mdm")
	f.IntVar(&o.threads, "threads", 2, "threads")
	f.IntVar(&o.steps, "steps", 10, "timed steps")
	f.IntVar(&o.warmup, "warmup", 3, "untimed steps first")
	f.BoolVar(&o.tie, "tie", false, "tie the output head to the embedding")
	f.Uint64Var(&o.seed, "seed", 0, "seed for the weights, tokens and masks")
	f.BoolVar(&o.json, "json", false, "print one JSON object instead of a table")
	f.Float64Var(&o.lr, "lr", 1e-3, "AdamW learning rate")
	f.Float64Var(&o.clip, "clip", 1, "max global gradient norm (0: no clipping)")
	f.Float64Var(&o.initStd, "init-std", 0.02, "std of the random matrices")
	f.Float64Var(&o.maskEps, "mask-eps", 1e-3, "mdm: p = (1 - mask_eps) t + mask_eps")
	f.StringVar(&o.device, "device", "cpu", "cpu, cuda or cuda:N")
	f.StringVar(&o.precision, "precision", "", "inputs of the matrix products (fp32 accumulation): cpu fp32 (default) or bf16; cuda bf16 (default), tf32 or fp32")
	return cmd
}

// resolve applies the preset to the flags not given and checks the values.
func (o *benchOptions) resolve(cmd *cobra.Command) error {
	preset, ok := benchPresets[o.preset]
	if !ok {
		return usageErrorf("--preset %q: want default or tiny", o.preset)
	}
	for name, ptr := range map[string]*int{
		"hidden": &o.hidden, "layers": &o.layers, "heads": &o.heads, "kv-heads": &o.kv, "head-dim": &o.headDim,
		"ff": &o.ff, "vocab": &o.vocab, "seq": &o.seq, "batch": &o.batch,
	} {
		if !cmd.Flags().Changed(name) {
			*ptr = preset[name]
		}
	}
	for _, p := range []struct {
		name string
		v    int
	}{
		{"hidden", o.hidden}, {"layers", o.layers}, {"heads", o.heads}, {"kv-heads", o.kv}, {"head-dim", o.headDim},
		{"ff", o.ff}, {"seq", o.seq}, {"batch", o.batch}, {"threads", o.threads}, {"steps", o.steps},
	} {
		if p.v <= 0 {
			return usageErrorf("--%s = %d: want a positive integer", p.name, p.v)
		}
	}
	switch {
	case o.experts < 0:
		return usageErrorf("--experts = %d: want 0 (dense) or more", o.experts)
	case o.experts > 0 && (o.topK < 1 || o.topK > o.experts):
		return usageErrorf("--top-k = %d: want 1 to --experts = %d", o.topK, o.experts)
	case o.experts > 0 && o.moeFF < 1:
		return usageErrorf("--moe-ff = %d: want a positive integer", o.moeFF)
	case o.vocab < 2:
		return usageErrorf("--vocab = %d: want at least 2 (the last id is the mask token)", o.vocab)
	case o.warmup < 0:
		return usageErrorf("--warmup = %d: want 0 or more", o.warmup)
	case o.heads%o.kv != 0:
		return usageErrorf("--kv-heads = %d does not divide --heads = %d", o.kv, o.heads)
	case o.headDim%2 != 0:
		return usageErrorf("--head-dim = %d: want an even number (RoPE rotates halves)", o.headDim)
	case o.objective != model.AR && o.objective != model.MDM:
		return usageErrorf("--objective %q: want ar or mdm", o.objective)
	case !(o.lr >= 0) || !(o.clip >= 0) || !(o.initStd >= 0):
		return usageErrorf("--lr, --clip and --init-std must be >= 0")
	case !(o.maskEps > 0 && o.maskEps < 1):
		return usageErrorf("--mask-eps = %g: want 0 < mask_eps < 1", o.maskEps)
	}
	// A benchmark says what it measures: auto, which might land on either device, is refused.
	target, err := device.Parse(o.device)
	if err != nil || target.Kind == device.Auto {
		return usageErrorf("--device = %q: want cpu, cuda or cuda:N", o.device)
	}
	if err := device.CheckPrecision(target, o.precision); err != nil {
		return usageErrorf("--precision = %q: %v", o.precision, err)
	}
	return nil
}

func (o *benchOptions) config() model.Config {
	attention := model.Causal
	if !model.IsCausal(o.objective) {
		attention = model.Bidirectional
	}
	c := model.Config{
		ModelType: "qwen3", HiddenSize: o.hidden, IntermediateSize: o.ff, NumLayers: o.layers,
		NumHeads: o.heads, NumKVHeads: o.kv, HeadDim: o.headDim, RMSNormEps: 1e-6, RopeTheta: 10000,
		VocabSize: o.vocab, TieWordEmbeddings: o.tie, MaxPositionEmbeddings: max(2048, o.seq),
		MaskTokenID: o.vocab - 1, Attention: attention,
	}
	if o.experts > 0 {
		c.ModelType, c.NumExperts, c.NumExpertsPerTok, c.MoEIntermediateSize = "qwen3_moe", o.experts, o.topK, o.moeFF
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

// benchResult is the JSON object bench prints; names follow torch_ref.py bench where they exist.
type benchResult struct {
	Backend   string    `json:"backend"`
	Precision string    `json:"precision"` // inputs of the matrix products
	BLAS      benchBLAS `json:"blas"`
	// DNNL is the oneDNN library that runs the CPU's bf16 products; absent at fp32.
	DNNL      *blas.DNNLInfo `json:"onednn,omitempty"`
	CPU       string         `json:"cpu"`
	GoVersion string         `json:"go"`
	Threads   int            `json:"threads"`
	LoadAvg   string         `json:"loadavg,omitempty"` // /proc/loadavg at start: others' work skews timings
	Objective string         `json:"objective"`
	Config    model.Config   `json:"config"`
	Batch     int            `json:"batch"`
	Seq       int            `json:"seq"`
	Tokens    int            `json:"tokens_per_step"`
	Steps     int            `json:"steps"`
	Warmup    int            `json:"warmup"`
	Params    int            `json:"params"`
	// MS holds forward (with the loss and zeroing the gradient), backward, optimizer (clipping and
	// AdamW) and total, per step.
	MS           map[string]Stat `json:"ms"`
	CPUMS        Stat            `json:"cpu_ms_per_step"` // process CPU time, all threads
	TokensPerS   benchRate       `json:"tokens_per_s"`
	FLOPs        float64         `json:"flops_per_step"`
	FLOPsFormula string          `json:"flops_formula"`
	GFLOPs       benchRate       `json:"gflops_per_s"`
	// GPU runs: the device, TFLOP/s by the same formula, and the fraction of the chip's dense
	// bf16 peak (0 when the chip is not in cbs's table).
	GPU        *device.GPUInfo `json:"gpu,omitempty"`
	TFLOPs     benchRate       `json:"tflops_per_s"`
	MFU        float64         `json:"mfu,omitempty"`
	Allocs     float64         `json:"allocs_per_step"`
	AllocBytes float64         `json:"alloc_bytes_per_step"`
	LastLoss   float64         `json:"last_loss"`
}

type benchBLAS struct {
	Library  string `json:"library"`
	Path     string `json:"path,omitempty"`
	CoreName string `json:"openblas_corename,omitempty"`
	Config   string `json:"openblas_config,omitempty"`
	CoreSet  string `json:"coretype_set,omitempty"` // OPENBLAS_CORETYPE cbs chose from the CPU flags
	Fallback string `json:"fallback_reason,omitempty"`
}

type benchRate struct {
	Median float64 `json:"median"`
	Best   float64 `json:"best"`
}

// benchFLOPs is torch_ref.py's count: 6 flops per linear weight per token (forward and both
// backward products) over q, k, v, o, gate, up, down and the head, plus 12 per layer, position
// and attention channel for the two attention products (full L x L, causal or not).
// In a Qwen3-MoE model a sparse layer counts its router and the top-k experts a token passes
// through, not every expert: the active weights.
func benchFLOPs(c model.Config, seq, tokens int) (flops float64, linear int) {
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

func runBench(o *benchOptions) (*benchResult, error) {
	c := o.config()
	if err := c.Validate(); err != nil {
		return nil, &codedError{code: exitUsage, err: err}
	}
	h, err := device.Open(device.Options{Device: o.device, Precision: o.precision, Threads: o.threads})
	if err != nil {
		return nil, device.Keyed(err, "--")
	}
	defer h.Close()
	p := model.NewParams[float32](c)
	p.Init(o.seed, o.initStd)
	optCfg := model.DefaultOptim()
	optCfg.LR, optCfg.Clip = o.lr, o.clip
	m, err := h.NewModel(p)
	if err != nil {
		return nil, fmt.Errorf("--device %s: %w", o.device, err)
	}
	defer m.Free()
	opt, err := m.NewAdamW(optCfg, nil)
	if err != nil {
		return nil, fmt.Errorf("--device %s: %w", o.device, err)
	}
	t, err := o.timeSteps(h, m.M, opt, o.batches(c))
	if err != nil {
		return nil, err
	}
	return o.report(h, c, len(p.Data), t), nil
}

// batches returns the batch of each step: fresh random tokens (and for mdm masks) drawn from
// the seed and the step, into buffers allocated once so allocations per step are the model's.
func (o *benchOptions) batches(c model.Config) func(step int) (*model.Batch, error) {
	B, L, causal := o.batch, o.seq, model.IsCausal(o.objective)
	batch := model.NewBatch(B, L)
	tokens, masks, probs := make([]int32, B*L), make([]bool, B*L), make([]float64, B)
	return func(step int) (*model.Batch, error) {
		s := rng.New(o.seed, "bench", uint64(step))
		// mdm keeps the last id for the mask token.
		n := o.vocab
		if !causal {
			n--
		}
		for i := range tokens {
			tokens[i] = int32(s.Intn(n))
		}
		if causal {
			batch.SetAR(tokens, B)
			return batch, nil
		}
		for b := range probs {
			probs[b] = (1-o.maskEps)*s.Float64() + o.maskEps
			for i := 0; i < L; i++ {
				masks[b*L+i] = s.Float64() < probs[b]
			}
		}
		return batch, batch.SetMDM(tokens, masks, probs, c.MaskTokenID, B)
	}
}

// benchPhases are the phases a step is timed in, and the whole step.
var benchPhases = []string{"forward", "backward", "optimizer", "total"}

// benchTimes are the measurements of the timed steps.
type benchTimes struct {
	ms                 map[string][]float64 // wall milliseconds per phase
	cpuMS              []float64            // process CPU milliseconds per step
	allocs, allocBytes uint64               // over all timed steps
	loss               float64              // of the last step
}

// timeSteps runs the warmup and timed steps of net with opt, each phase timed separately.
func (o *benchOptions) timeSteps(h *device.Handle, net *model.Model[float32], opt *model.AdamW[float32], batch func(int) (*model.Batch, error)) (*benchTimes, error) {
	causal := model.IsCausal(o.objective)
	t := &benchTimes{ms: map[string][]float64{}}
	var ms0, ms1 runtime.MemStats
	ms := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
	for step := 0; step < o.warmup+o.steps; step++ {
		b, err := batch(step)
		if err != nil {
			return nil, err
		}
		if step == o.warmup {
			runtime.ReadMemStats(&ms0)
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
		opt.Update(net, o.lr)
		h.Sync()
		t3 := time.Now()
		c1 := cpuTime()
		if math.IsNaN(t.loss) || math.IsInf(t.loss, 0) {
			return nil, fmt.Errorf("step %d: loss is %v", step, t.loss)
		}
		if step < o.warmup {
			continue
		}
		for i, dt := range []time.Duration{t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t3.Sub(t0)} {
			t.ms[benchPhases[i]] = append(t.ms[benchPhases[i]], ms(dt))
		}
		t.cpuMS = append(t.cpuMS, ms(c1-c0))
	}
	runtime.ReadMemStats(&ms1)
	t.allocs, t.allocBytes = ms1.Mallocs-ms0.Mallocs, ms1.TotalAlloc-ms0.TotalAlloc
	return t, nil
}

// report turns the measurements into the result bench prints.
func (o *benchOptions) report(h *device.Handle, c model.Config, params int, t *benchTimes) *benchResult {
	B, L := o.batch, o.seq
	info := hostBLAS(h)
	res := &benchResult{
		Backend: h.Name(), Precision: h.Precision,
		BLAS: benchBLAS{Library: info.Library, Path: info.Path, CoreName: info.CoreName, Config: info.Config,
			CoreSet: info.CoreTypeSet, Fallback: info.FallbackReason},
		CPU: blas.CPUInfo(), GoVersion: runtime.Version(), Threads: o.threads,
		Objective: o.objective, Config: c, Batch: B, Seq: L, Tokens: B * L,
		Steps: o.steps, Warmup: o.warmup, Params: params,
		MS: map[string]Stat{}, CPUMS: statOf(t.cpuMS), LastLoss: t.loss,
		Allocs:     float64(t.allocs) / float64(o.steps),
		AllocBytes: float64(t.allocBytes) / float64(o.steps),
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.LoadAvg = strings.TrimSpace(string(b))
	}
	for _, ph := range benchPhases {
		res.MS[ph] = statOf(t.ms[ph])
	}
	flops, linear := benchFLOPs(c, L, B*L)
	res.FLOPs = flops
	res.FLOPsFormula = fmt.Sprintf("6 * n_linear * tokens + 12 * layers * seq * (heads * head_dim) * tokens; "+
		"n_linear = %d (q,k,v,o,gate,up,down in all layers + output head%s)", linear, moeNote(c))
	tot := res.MS["total"]
	res.TokensPerS = benchRate{Median: float64(B*L) / tot.Median * 1e3, Best: float64(B*L) / tot.Min * 1e3}
	res.GFLOPs = benchRate{Median: flops / tot.Median / 1e6, Best: flops / tot.Min / 1e6}
	res.TFLOPs = benchRate{Median: res.GFLOPs.Median / 1e3, Best: res.GFLOPs.Best / 1e3}
	if cp := h.CPU(); cp != nil {
		if d := cp.DNNL(); d.Library != "" {
			res.DNNL = &d
		}
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

func (r *benchResult) writeTable(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "model      %d layers, hidden %d, heads %d/%d x %d, ff %d, vocab %d, tied %v (%d parameters)\n",
		c.NumLayers, c.HiddenSize, c.NumHeads, c.NumKVHeads, c.HeadDim, c.IntermediateSize, c.VocabSize, c.TieWordEmbeddings, r.Params)
	fmt.Fprintf(w, "step       %s, %d x %d = %d tokens; %d steps after %d warmup\n", r.Objective, r.Batch, r.Seq, r.Tokens, r.Steps, r.Warmup)
	fmt.Fprintf(w, "backend    %s\n", r.Backend)
	if r.BLAS.Library == "openblas" {
		fmt.Fprintf(w, "openblas   core %s\n", r.BLAS.CoreName)
	}
	fmt.Fprintf(w, "precision  %s matrix products\n", r.Precision)
	if r.DNNL != nil {
		fmt.Fprintf(w, "onednn     %s %s, isa %s, %s, %d thread(s) per call\n", r.DNNL.Version, r.DNNL.Path, r.DNNL.ISA, r.DNNL.Runtime, r.DNNL.Threads)
	}
	fmt.Fprintf(w, "cpu        %s, %d threads, %s\n", r.CPU, r.Threads, r.GoVersion)
	if r.LoadAvg != "" {
		fmt.Fprintf(w, "loadavg    %s\n", r.LoadAvg)
	}
	fmt.Fprintf(w, "\n%-10s %10s %10s\n", "ms/step", "median", "min")
	for _, ph := range []string{"forward", "backward", "optimizer", "total"} {
		fmt.Fprintf(w, "%-10s %10.1f %10.1f\n", ph, r.MS[ph].Median, r.MS[ph].Min)
	}
	fmt.Fprintf(w, "%-10s %10.1f %10.1f\n", "cpu time", r.CPUMS.Median, r.CPUMS.Min)
	fmt.Fprintf(w, "\n%-10s %10s %10s\n", "", "median", "best")
	fmt.Fprintf(w, "%-10s %10.0f %10.0f\n", "tokens/s", r.TokensPerS.Median, r.TokensPerS.Best)
	fmt.Fprintf(w, "%-10s %10.1f %10.1f\n", "GFLOP/s", r.GFLOPs.Median, r.GFLOPs.Best)
	if r.GPU != nil {
		fmt.Fprintf(w, "%-10s %10.2f %10.2f\n", "TFLOP/s", r.TFLOPs.Median, r.TFLOPs.Best)
		fmt.Fprintf(w, "gpu        %s, %s; MFU %.1f%% of %g TFLOP/s bf16\n", r.GPU.Device.Name, r.GPU.Precision, 100*r.MFU, r.GPU.Device.PeakBF16TFLOP)
	}
	fmt.Fprintf(w, "\nallocs     %.0f per step (%.1f MB)\n", r.Allocs, r.AllocBytes/1e6)
	fmt.Fprintf(w, "last loss  %.4f\n", r.LastLoss)
}

// moeNote says what n_linear counts in a sparse layer.
func moeNote(c model.Config) string {
	if c.NumExperts == 0 {
		return ""
	}
	return fmt.Sprintf("; a sparse layer: its router and the %d of %d experts a token is routed to", c.NumExpertsPerTok, c.NumExperts)
}
