package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"cbs/bench"
	"cbs/compute/device"
	"cbs/model"
)

func init() { verbs = append(verbs, newBenchCmd) }

// benchOptions are bench's flags: the package's options, which mirror torch_ref.py bench's, and
// how to print and where to run.
type benchOptions struct {
	bench.Options
	preset            string
	json              bool
	device, precision string
	cpuProfile        string
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
and multiplies them with fp32 accumulation (weights, AdamW, norms, softmax and the loss stay
fp32): on AMX tiles where the CPU has them (attention and the products whose first operand is
not transposed; CBS_AMX=off turns them off), on oneDNN otherwise; it needs libdnnl.so.2
(Debian: libdnnl2). The default on the CPU is fp32: on cbs's own AVX-512 kernel where the
CPU has AVX-512, else on oneDNN's sgemm where that library loads, else on OpenBLAS's
(CBS_FP32_GEMM=onednn or =blas chooses; each gives different bits).

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
			writeBenchTable(out, res)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.preset, "preset", "default", "model and batch sizes: default or tiny")
	d := benchPresets["default"]
	f.IntVar(&o.Hidden, "hidden", d["hidden"], "hidden size")
	f.IntVar(&o.Layers, "layers", d["layers"], "number of layers")
	f.IntVar(&o.Heads, "heads", d["heads"], "attention heads")
	f.IntVar(&o.KVHeads, "kv-heads", d["kv-heads"], "key/value heads")
	f.IntVar(&o.HeadDim, "head-dim", d["head-dim"], "head dimension")
	f.IntVar(&o.FF, "ff", d["ff"], "MLP intermediate size")
	f.IntVar(&o.Experts, "experts", 0, "experts per MLP layer, Qwen3-MoE (0: dense)")
	f.IntVar(&o.TopK, "top-k", 2, "with --experts: experts each token is routed to")
	f.IntVar(&o.MoEFF, "moe-ff", 256, "with --experts: intermediate size of each expert")
	f.IntVar(&o.Vocab, "vocab", d["vocab"], "vocabulary size (the last id is the mdm mask token)")
	f.IntVar(&o.Seq, "seq", d["seq"], "sequence length")
	f.IntVar(&o.Batch, "batch", d["batch"], "sequences per step")
	f.StringVar(&o.Objective, "objective", model.AR, "ar or mdm")
	f.IntVar(&o.Threads, "threads", 2, "threads")
	f.IntVar(&o.Steps, "steps", 10, "timed steps")
	f.IntVar(&o.Warmup, "warmup", 3, "untimed steps first")
	f.BoolVar(&o.Tie, "tie", false, "tie the output head to the embedding")
	f.Uint64Var(&o.Seed, "seed", 0, "seed for the weights, tokens and masks")
	f.BoolVar(&o.json, "json", false, "print one JSON object instead of a table")
	f.Float64Var(&o.LR, "lr", 1e-3, "AdamW learning rate")
	f.Float64Var(&o.Clip, "clip", 1, "max global gradient norm (0: no clipping)")
	f.Float64Var(&o.InitStd, "init-std", 0.02, "std of the random matrices")
	f.Float64Var(&o.MaskEps, "mask-eps", 1e-3, "mdm: p = (1 - mask_eps) t + mask_eps")
	f.StringVar(&o.device, "device", "cpu", "cpu, cuda or cuda:N")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a pprof CPU profile of the timed steps to this file (go tool pprof reads it)")
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
		"hidden": &o.Hidden, "layers": &o.Layers, "heads": &o.Heads, "kv-heads": &o.KVHeads, "head-dim": &o.HeadDim,
		"ff": &o.FF, "vocab": &o.Vocab, "seq": &o.Seq, "batch": &o.Batch,
	} {
		if !cmd.Flags().Changed(name) {
			*ptr = preset[name]
		}
	}
	for _, p := range []struct {
		name string
		v    int
	}{
		{"hidden", o.Hidden}, {"layers", o.Layers}, {"heads", o.Heads}, {"kv-heads", o.KVHeads}, {"head-dim", o.HeadDim},
		{"ff", o.FF}, {"seq", o.Seq}, {"batch", o.Batch}, {"threads", o.Threads}, {"steps", o.Steps},
	} {
		if p.v <= 0 {
			return usageErrorf("--%s = %d: want a positive integer", p.name, p.v)
		}
	}
	switch {
	case o.Experts < 0:
		return usageErrorf("--experts = %d: want 0 (dense) or more", o.Experts)
	case o.Experts > 0 && (o.TopK < 1 || o.TopK > o.Experts):
		return usageErrorf("--top-k = %d: want 1 to --experts = %d", o.TopK, o.Experts)
	case o.Experts > 0 && o.MoEFF < 1:
		return usageErrorf("--moe-ff = %d: want a positive integer", o.MoEFF)
	case o.Vocab < 2:
		return usageErrorf("--vocab = %d: want at least 2 (the last id is the mask token)", o.Vocab)
	case o.Warmup < 0:
		return usageErrorf("--warmup = %d: want 0 or more", o.Warmup)
	case o.Heads%o.KVHeads != 0:
		return usageErrorf("--kv-heads = %d does not divide --heads = %d", o.KVHeads, o.Heads)
	case o.HeadDim%2 != 0:
		return usageErrorf("--head-dim = %d: want an even number (RoPE rotates halves)", o.HeadDim)
	case o.Objective != model.AR && o.Objective != model.MDM:
		return usageErrorf("--objective %q: want ar or mdm", o.Objective)
	case !(o.LR >= 0) || !(o.Clip >= 0) || !(o.InitStd >= 0):
		return usageErrorf("--lr, --clip and --init-std must be >= 0")
	case !(o.MaskEps > 0 && o.MaskEps < 1):
		return usageErrorf("--mask-eps = %g: want 0 < mask_eps < 1", o.MaskEps)
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

// runBench validates the model, opens the device and times the steps; the errors name the flags.
func runBench(o *benchOptions) (res *bench.Result, err error) {
	c := o.Config()
	if err := c.Validate(); err != nil {
		return nil, &codedError{code: exitUsage, err: err}
	}
	h, err := device.Open(device.Options{Device: o.device, Precision: o.precision, Threads: o.Threads})
	if err != nil {
		return nil, device.Keyed(err, "--")
	}
	defer h.Close()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		// The profile is written when the timed steps end: a failed close loses it.
		defer func() {
			if cerr := f.Close(); cerr != nil && err == nil {
				res, err = nil, fmt.Errorf("--cpuprofile: %w", cerr)
			}
		}()
		o.CPUProfile = f
	}
	s, err := bench.New(h, o.Options)
	if err != nil {
		return nil, fmt.Errorf("--device %s: %w", o.device, err)
	}
	defer s.Free()
	return s.Run()
}

// writeBenchTable prints r as the table bench prints without --json.
func writeBenchTable(w io.Writer, r *bench.Result) {
	c := r.Config
	fmt.Fprintf(w, "model      %d layers, hidden %d, heads %d/%d x %d, ff %d, vocab %d, tied %v (%d parameters)\n",
		c.NumLayers, c.HiddenSize, c.NumHeads, c.NumKVHeads, c.HeadDim, c.IntermediateSize, c.VocabSize, c.TieWordEmbeddings, r.Params)
	fmt.Fprintf(w, "step       %s, %d x %d = %d tokens; %d steps after %d warmup\n", r.Objective, r.Batch, r.Seq, r.Tokens, r.Steps, r.Warmup)
	fmt.Fprintf(w, "backend    %s\n", r.Backend)
	if r.BLAS.Library == "openblas" {
		fmt.Fprintf(w, "openblas   core %s\n", r.BLAS.CoreName)
	}
	fmt.Fprintf(w, "precision  %s matrix products\n", r.Precision)
	if r.FP32Products != "" {
		fmt.Fprintf(w, "fp32 gemm  %s\n", r.FP32Products)
	}
	if r.DNNL != nil {
		fmt.Fprintf(w, "onednn     %s %s, isa %s, %s, %d thread(s) per call\n", r.DNNL.Version, r.DNNL.Path, r.DNNL.ISA, r.DNNL.Runtime, r.DNNL.Threads)
	}
	if r.AMX {
		fmt.Fprintf(w, "amx        attention and forward/input-gradient products on AMX tiles (CBS_AMX=off: all on oneDNN)\n")
	}
	fmt.Fprintf(w, "cpu        %s, %d threads, %s\n", r.CPU, r.Threads, r.GoVersion)
	if r.LoadAvg != "" {
		fmt.Fprintf(w, "loadavg    %s\n", r.LoadAvg)
	}
	fmt.Fprintf(w, "\n%-10s %10s %10s\n", "ms/step", "median", "min")
	for _, ph := range bench.Phases {
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
