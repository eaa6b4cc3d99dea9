package main

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/spf13/cobra"

	"cbs/compute/cpu"
	"cbs/compute/device"
	"cbs/data"
	"cbs/model"
)

func init() { verbs = append(verbs, newEvalCmd) }

type evalOptions struct {
	checkpoint, tokens, objective string
	mask, p                       string
	seed                          uint64
	maskEps                       float64
	dtype                         string
	threads                       int
	device, precision             string
}

func newEvalCmd() *cobra.Command {
	o := &evalOptions{}
	cmd := &cobra.Command{
		Use:   "eval --checkpoint DIR --tokens X.npy --objective ar|mdm",
		Short: "Print the loss of a checkpoint on a token array, as JSON",
		Long: `Evaluate a checkpoint on the sequences of a .npy token array ([B, L] or [L]; int32, int64 or
uint16). For mdm, --mask (bool [B, L]) and --p (float [B]) give the masked positions and masking
probabilities; without them a mask is drawn from --seed. The loss is the objective's: mean
next-token cross-entropy for ar; sum of masked cross-entropies weighted 1/p over B x L for mdm.

--device and --precision choose where the float32 loss is computed, as run.device and
run.precision do for training: the CPU at fp32 by default, or bf16 matrix products (oneDNN), or
a GPU (bf16 by default, tf32 or fp32).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runEval(o)
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.checkpoint, "checkpoint", "", "checkpoint directory (config.json + model.safetensors)")
	f.StringVar(&o.tokens, "tokens", "", ".npy token array")
	f.StringVar(&o.objective, "objective", "", "ar or mdm")
	f.StringVar(&o.mask, "mask", "", "mdm: .npy bool mask [B, L]")
	f.StringVar(&o.p, "p", "", "mdm: .npy masking probabilities [B]")
	f.Uint64Var(&o.seed, "seed", 0, "mdm: seed of the drawn mask when --mask is not given")
	f.Float64Var(&o.maskEps, "mask-eps", data.DefaultMaskEps, "mdm: p = (1 - eps) t + eps")
	f.StringVar(&o.dtype, "dtype", "float32", "float32 (fast backend) or float64 (reference backend)")
	f.IntVar(&o.threads, "threads", 0, "CPU threads (0: all cores)")
	f.StringVar(&o.device, "device", device.CPU, "float32: cpu, cuda, cuda:N or auto")
	f.StringVar(&o.precision, "precision", "", "float32: inputs of the matrix products (fp32 accumulation): cpu fp32 (default) or bf16; cuda bf16 (default), tf32 or fp32")
	return cmd
}

type evalResult struct {
	Loss      float64 `json:"loss"`
	Objective string  `json:"objective"`
	Batch     int     `json:"batch"`
	Seq       int     `json:"seq"`
	Tokens    int     `json:"tokens"`
	Predicted int     `json:"predicted"`
	DType     string  `json:"dtype"`
}

func runEval(o *evalOptions) (*evalResult, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	toks, shape, err := data.ReadNPYTokensFile(o.tokens)
	if err != nil {
		return nil, err
	}
	if len(shape) == 0 || len(shape) > 2 || len(toks) == 0 {
		return nil, usageErrorf("eval: %s has shape %v, want [B, L] or [L]", o.tokens, shape)
	}
	L := shape[len(shape)-1]
	B := len(toks) / L
	res := &evalResult{Objective: o.objective, Batch: B, Seq: L, Tokens: B * L, DType: o.dtype}
	c, err := model.LoadConfig(o.checkpoint + "/" + model.ConfigFile)
	if err != nil {
		return nil, err
	}
	// The same check train and ckpt inspect make: a checkpoint damaged after it was written
	// would otherwise give a loss that looks like any other.
	if _, err := model.LoadTrainerState(o.checkpoint); err != nil {
		return nil, err
	}
	for i, t := range toks {
		if t < 0 || int(t) >= c.VocabSize {
			return nil, usageErrorf("eval: %s: token %d at position %d is outside [0, %d)", o.tokens, t, i, c.VocabSize)
		}
	}
	b := model.NewBatch(B, L)
	if o.objective == model.AR {
		b.SetAR(toks, B)
		res.Predicted = B * (L - 1)
	} else if res.Predicted, err = o.setMDM(b, toks, c.MaskTokenID); err != nil {
		return nil, err
	}
	if res.Loss, err = o.loss(b); err != nil {
		return nil, err
	}
	if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
		return nil, fmt.Errorf("eval: the loss of %s on %s is %v: the weights hold NaN or Inf, or the model overflowed on this input", o.checkpoint, o.tokens, res.Loss)
	}
	return res, nil
}

// validate checks the flags that need no file read.
func (o *evalOptions) validate() error {
	switch {
	case o.checkpoint == "":
		return usageErrorf("eval: --checkpoint DIR is required")
	case o.tokens == "":
		return usageErrorf("eval: --tokens X.npy is required")
	case o.objective != model.AR && o.objective != model.MDM:
		return usageErrorf("eval: --objective = %q, want ar or mdm", o.objective)
	case (o.mask == "") != (o.p == ""):
		return usageErrorf("eval: give both --mask and --p, or neither")
	case o.dtype != "float32" && o.dtype != "float64":
		return usageErrorf("eval: --dtype = %q, want float32 or float64", o.dtype)
	case !(o.maskEps > 0 && o.maskEps < 1):
		return usageErrorf("eval: --mask-eps = %g, want 0 < eps < 1", o.maskEps)
	case o.dtype == "float64" && (o.device != device.CPU || o.precision != ""):
		return usageErrorf("eval: --dtype float64 runs on the CPU's reference backend: drop --device and --precision")
	}
	target, err := device.Parse(o.device)
	if err != nil {
		return usageErrorf("eval: --device = %q: %v", o.device, err)
	}
	if err := device.CheckPrecision(target, o.precision); err != nil {
		return usageErrorf("eval: --precision = %q: %v", o.precision, err)
	}
	return nil
}

// setMDM fills b for the mdm objective, with the masks and probabilities of --mask and --p or
// drawn from --seed, and returns how many positions are masked.
func (o *evalOptions) setMDM(b *model.Batch, toks []int32, maskToken int) (int, error) {
	B, L := b.B, b.L
	masks, p := make([]bool, B*L), make([]float64, B)
	if o.mask != "" {
		if err := o.readMasks(masks, p); err != nil {
			return 0, err
		}
	} else {
		data.MDMBatchMasks(o.seed, data.PurposeEvalMask, 0, o.maskEps, L, masks, p)
	}
	predicted := 0
	for _, m := range masks {
		if m {
			predicted++
		}
	}
	return predicted, b.SetMDM(toks, masks, p, maskToken, B)
}

// readMasks reads --mask and --p into masks [B*L] and p [B].
func (o *evalOptions) readMasks(masks []bool, p []float64) error {
	B, L := len(p), len(masks)/len(p)
	ma, err := data.ReadNPYFile(o.mask)
	if err != nil {
		return err
	}
	pa, err := data.ReadNPYFile(o.p)
	if err != nil {
		return err
	}
	if ma.Len() != B*L || ma.Bools == nil {
		return usageErrorf("eval: --mask %s: want a bool array of %d x %d, got %s %v", o.mask, B, L, ma.DType, ma.Shape)
	}
	if pa.Len() != B || pa.Floats == nil {
		return usageErrorf("eval: --p %s: want a float array of %d, got %s %v", o.p, B, pa.DType, pa.Shape)
	}
	for i, v := range pa.Floats {
		// SetMDM weights each masked position by 1/p: p outside (0, 1] is no
		// masking probability and would make the loss infinite or meaningless.
		if !(v > 0 && v <= 1) {
			return usageErrorf("eval: --p %s: p[%d] = %g, want 0 < p <= 1", o.p, i, v)
		}
	}
	copy(masks, ma.Bools)
	copy(p, pa.Floats)
	return nil
}

// loss is the checkpoint's loss on b: in float64 on the CPU's reference backend, else on the
// device --device and --precision name.
func (o *evalOptions) loss(b *model.Batch) (float64, error) {
	causal := model.IsCausal(o.objective)
	if o.dtype == "float64" {
		p, err := model.Load[float64](o.checkpoint)
		if err != nil {
			return 0, err
		}
		return model.New(p, cpu.Reference[float64]{}).Loss(b, causal), nil
	}
	p, err := model.Load[float32](o.checkpoint)
	if err != nil {
		return 0, err
	}
	h, err := device.Open(device.Options{Device: o.device, Precision: o.precision, Threads: o.threads})
	if err != nil {
		return 0, device.Keyed(err, "--")
	}
	defer h.Close()
	m, err := h.NewModel(p)
	if err != nil {
		return 0, fmt.Errorf("--device %s: %w", o.device, err)
	}
	defer m.Free()
	return m.M.Loss(b, causal), nil
}
