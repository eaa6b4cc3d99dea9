package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"cbs/internal/safetensors"
	"cbs/model"
)

func init() { verbs = append(verbs, newCkptCmd) }

func newCkptCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ckpt", Short: "Work with checkpoint directories"}
	var asJSON bool
	inspect := &cobra.Command{
		Use:   "inspect DIR",
		Short: "Print a checkpoint's config, weight files, parameter table and trainer state",
		Long: `Print what a checkpoint holds: the architecture, the files holding the weights with their
dtypes, every parameter tensor with its shape, group and stored dtype, the optimizer state and the
trainer state. The sha256 of every file that trainer.json lists is checked. For a Qwen3-MoE model
it also shows the experts, which layers are sparse, and the parameters one token's forward pass
reads (active) beside the total.

Weights stored as Hugging Face shards (model-0000k-of-0000n.safetensors with
model.safetensors.index.json) are listed shard by shard, and the index is verified: every tensor
it lists is in the shard it names and in no other, every tensor of a shard is listed, no shard
file is left that it does not name, and its metadata.total_size is compared with the shards'
tensor data (a difference is a warning: the weights load all the same). Only the files' headers
are read. Config keys cbs ignores are listed as notes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := inspectCheckpoint(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				b, _ := json.MarshalIndent(rep, "", "  ")
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			}
			rep.print(cmd.OutOrStdout())
			return nil
		},
	}
	inspect.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(inspect, newConvertCmd())
	return cmd
}

func newConvertCmd() *cobra.Command {
	var dtype, shardSize string
	convert := &cobra.Command{
		Use:   "convert SRC DST",
		Short: "Write a checkpoint's weights in another dtype, or as Hugging Face shards",
		Long: `Read SRC's config.json and weights (one model.safetensors, or shards with
model.safetensors.index.json) and write them to DST, a new directory, stored as --dtype. With
--shard-size the weights are written as Hugging Face publishes large models: shards
model-0000k-of-0000n.safetensors of at most that many bytes of tensor data each (tensors in name
order; a tensor larger than the limit has a shard of its own) and model.safetensors.index.json.
Without it they are one model.safetensors, as cbs's own checkpoints are. config.json's torch_dtype
follows --dtype.

The optimizer and trainer state are not carried over: DST is a starting point, as a published
checkpoint is. Training writes its own checkpoints as one float32 model.safetensors, so that a
resumed run continues bit for bit.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := args[0], args[1]
			dt := strings.ToUpper(dtype)
			if dt != "F32" && dt != "BF16" && dt != "F64" {
				return usageErrorf("ckpt convert: --dtype = %q, want F32, BF16 or F64", dtype)
			}
			var shard int64
			if shardSize != "" {
				var err error
				if shard, err = parseByteSize(shardSize); err != nil || shard <= 0 {
					return usageErrorf("ckpt convert: --shard-size = %q, want a positive size in bytes, e.g. 5GB (10^9), 2GiB (2^30) or 1000000", shardSize)
				}
			}
			if _, err := os.Stat(dst); err == nil {
				return usageErrorf("ckpt convert: %s exists; give a new directory", dst)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			opts := model.SaveOptions{DType: dt, ShardBytes: shard}
			var notes []string
			var err error
			if dt == "F64" {
				var p *model.Params[float64]
				if p, notes, err = model.LoadNotes[float64](src); err == nil {
					err = model.SaveWith(dst, p, nil, nil, opts)
				}
			} else {
				var p *model.Params[float32]
				if p, notes, err = model.LoadNotes[float32](src); err == nil {
					err = model.SaveWith(dst, p, nil, nil, opts)
				}
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, n := range notes {
				fmt.Fprintf(w, "note: %s\n", n)
			}
			stored, err := model.ReadStoredWeights(dst)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "wrote %s: %s\n", dst, weightsSummary(stored))
			return nil
		},
	}
	convert.Flags().StringVar(&dtype, "dtype", "F32", "storage type of the weights: F32, BF16 (rounded to nearest even) or F64")
	convert.Flags().StringVar(&shardSize, "shard-size", "", "write shards of at most this much tensor data each, with the index: bytes, or with a unit KB, MB, GB (powers of ten, as Hugging Face's max_shard_size) or KiB, MiB, GiB (default: one model.safetensors)")
	return convert
}

// parseByteSize reads a size in bytes: "5GB" (10^9), "2GiB" (2^30), "1000000", "1.5GB".
func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	for _, u := range []struct {
		suffix string
		v      float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			mult, t = u.v, strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a size in bytes", s)
	}
	v := f * mult
	if v != math.Trunc(v) || v < 0 || v > 1<<62 {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	return int64(v), nil
}

type tensorRow struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
	Group string `json:"group"`
	Size  int    `json:"size"`
	DType string `json:"dtype"`
	// File is the shard holding the tensor, for sharded weights.
	File string `json:"file,omitempty"`
}

// weightsReport describes the files holding the weights.
type weightsReport struct {
	// Index is model.safetensors.index.json for sharded weights; absent for one file.
	Index string             `json:"index,omitempty"`
	Files []model.StoredFile `json:"files"`
	// DataBytes is the tensor data of all the files.
	DataBytes int64 `json:"data_bytes"`
	// IndexTensors is the number of tensors the index lists; TotalSize its metadata.total_size
	// (absent when it gives none) and TotalSizeOK whether that equals DataBytes.
	IndexTensors int    `json:"index_tensors,omitempty"`
	TotalSize    *int64 `json:"total_size,omitempty"`
	TotalSizeOK  *bool  `json:"total_size_ok,omitempty"`
}

type ckptReport struct {
	Dir          string              `json:"dir"`
	Config       model.Config        `json:"config"`
	Params       int                 `json:"params"`
	Tensors      []tensorRow         `json:"tensors"`
	Optimizer    map[string]string   `json:"optimizer,omitempty"`
	Trainer      *model.TrainerState `json:"trainer,omitempty"`
	FilesChecked bool                `json:"files_checked"`
	// ActiveParams and SparseLayers are set for a Qwen3-MoE model only: the parameters one
	// token's forward pass reads (the router and the top-k experts of a sparse layer), and the
	// layers with a sparse block.
	ActiveParams int   `json:"active_params,omitempty"`
	SparseLayers []int `json:"sparse_layers,omitempty"`
	// Weights describes the files holding the weights.
	Weights weightsReport `json:"weights"`
	// Notes are what cbs reads but does not use: config.json keys it does not know, and stored
	// tensors the model has no place for.
	Notes []string `json:"notes,omitempty"`
}

func inspectCheckpoint(dir string) (*ckptReport, error) {
	c, notes, err := model.LoadConfigNotes(filepath.Join(dir, model.ConfigFile))
	if err != nil {
		return nil, err
	}
	stored, err := model.ReadStoredWeights(dir)
	if err != nil {
		return nil, err
	}
	rep := &ckptReport{Dir: dir, Config: c, Params: model.NumParams(c), Notes: notes}
	rep.Weights = weightsReport{Index: stored.Index, Files: stored.Files, DataBytes: stored.DataBytes(), IndexTensors: stored.IndexTensors}
	if stored.Index != "" && stored.TotalSize >= 0 {
		ts, ok := stored.TotalSize, stored.TotalSize == stored.DataBytes()
		rep.Weights.TotalSize, rep.Weights.TotalSizeOK = &ts, &ok
	}
	if c.MoE() {
		rep.ActiveParams = int(c.ActiveParamCount())
		for l := range c.NumLayers {
			if c.Sparse(l) {
				rep.SparseLayers = append(rep.SparseLayers, l)
			}
		}
	}
	layout := model.Layout(c)
	if err := rep.checkWeights(dir, stored, layout); err != nil {
		return nil, err
	}
	if err := rep.checkOptimizer(dir, layout); err != nil {
		return nil, err
	}
	if rep.Trainer, err = model.LoadTrainerState(dir); err != nil {
		return nil, err
	}
	rep.FilesChecked = rep.Trainer != nil
	return rep, nil
}

// checkWeights lists the tensors the layout implies with the dtype and file stored for each,
// refuses a checkpoint whose shapes disagree with them, and notes the stored tensors the model
// does not use.
func (rep *ckptReport) checkWeights(dir string, stored *model.StoredWeights, layout []model.Tensor) error {
	var bad []string
	used := map[string]bool{}
	for _, t := range layout {
		st, file, ok := stored.Tensor(t.Name)
		dtype := "missing"
		if ok {
			dtype = st.DType
		}
		if stored.Index == "" {
			file = ""
		}
		used[t.Name] = true
		bad = append(bad, shapeProblem(st, ok, t.Name, t.Shape)...)
		rep.Tensors = append(rep.Tensors, tensorRow{Name: t.Name, Shape: t.Shape, Group: t.Group, Size: t.Size, DType: dtype, File: file})
	}
	// The table shows the shapes config.json implies; a checkpoint whose tensors disagree would not
	// load, and must not be reported as verified.
	where := filepath.Join(dir, model.WeightsFile)
	if stored.Index != "" {
		where = filepath.Join(dir, stored.Index)
	}
	if err := shapeError(where, bad); err != nil {
		return err
	}
	var unused []string
	for _, name := range stored.Names() {
		if !used[name] {
			unused = append(unused, name)
		}
	}
	if len(unused) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("weights: %d stored tensor(s) the model does not use, ignored when loading: %s", len(unused), strings.Join(unused, ", ")))
	}
	return nil
}

// checkOptimizer checks the AdamW moments' shapes against the layout, where the checkpoint has
// an optimizer file, and reports its metadata.
func (rep *ckptReport) checkOptimizer(dir string, layout []model.Tensor) error {
	optPath := filepath.Join(dir, model.OptimizerFile)
	of, err := safetensors.Read(optPath)
	switch {
	case err == nil:
		var bad []string
		for _, t := range layout {
			for _, suffix := range []string{".exp_avg", ".exp_avg_sq"} {
				st, ok := of.Tensor(t.Name + suffix)
				bad = append(bad, shapeProblem(st, ok, t.Name+suffix, t.Shape)...)
			}
		}
		if err := shapeError(optPath, bad); err != nil {
			return err
		}
		rep.Optimizer = of.Metadata
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return nil
}

func (r *ckptReport) print(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "checkpoint %s\n", r.Dir)
	fmt.Fprintf(w, "  %s: hidden %d, layers %d, heads %d (kv %d, head_dim %d), ff %d, vocab %d, tied %v\n",
		c.ModelType, c.HiddenSize, c.NumLayers, c.NumHeads, c.NumKVHeads, c.HeadDim, c.IntermediateSize, c.VocabSize, c.TieWordEmbeddings)
	fmt.Fprintf(w, "  attention %s, mask token %d, rope_theta %g, rms_norm_eps %g, tokenizer %q\n",
		c.Attention, c.MaskTokenID, c.RopeTheta, c.RMSNormEps, c.Tokenizer)
	if len(c.BOSTokenID) > 0 || len(c.EOSTokenID) > 0 {
		fmt.Fprintf(w, "  bos_token_id %s, eos_token_id %s (kept for generation)\n", orNone(c.BOSTokenID), orNone(c.EOSTokenID))
	}
	if !c.MoE() {
		fmt.Fprintf(w, "  %d parameters\n\n", r.Params)
	} else {
		aux := "off (output_router_logits false)"
		if c.AuxLossOn() {
			aux = "in the training loss"
		}
		fmt.Fprintf(w, "  experts: %d per sparse layer, top %d (norm_topk_prob %v), moe_intermediate_size %d\n",
			c.NumExperts, c.NumExpertsPerTok, c.NormTopKProb, c.MoEIntermediateSize)
		fmt.Fprintf(w, "  sparse layers %v (%d of %d; decoder_sparse_step %d, mlp_only_layers %v)\n",
			r.SparseLayers, len(r.SparseLayers), c.NumLayers, c.DecoderSparseStep, c.MLPOnlyLayers)
		fmt.Fprintf(w, "  router load-balancing loss: coef %g, %s\n", c.RouterAuxLossCoef, aux)
		fmt.Fprintf(w, "  %d parameters, %d active per token (%.1f%%)\n\n", r.Params, r.ActiveParams,
			100*float64(r.ActiveParams)/float64(r.Params))
	}
	r.printWeights(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if r.Weights.Index == "" {
		fmt.Fprintln(tw, "tensor\tshape\tgroup\tparams\tdtype")
		for _, t := range r.Tensors {
			fmt.Fprintf(tw, "%s\t%v\t%s\t%d\t%s\n", t.Name, t.Shape, t.Group, t.Size, t.DType)
		}
	} else {
		fmt.Fprintln(tw, "tensor\tshape\tgroup\tparams\tdtype\tshard")
		for _, t := range r.Tensors {
			fmt.Fprintf(tw, "%s\t%v\t%s\t%d\t%s\t%s\n", t.Name, t.Shape, t.Group, t.Size, t.DType, t.File)
		}
	}
	tw.Flush()
	if r.Optimizer != nil {
		fmt.Fprintf(w, "\noptimizer: AdamW step %s, betas (%s, %s), eps %s, weight_decay %s, clip %s\n",
			r.Optimizer["step"], r.Optimizer["beta1"], r.Optimizer["beta2"], r.Optimizer["eps"], r.Optimizer["weight_decay"], r.Optimizer["clip"])
	} else {
		fmt.Fprintln(w, "\noptimizer: none")
	}
	if t := r.Trainer; t != nil {
		fmt.Fprintf(w, "trainer: %s objective, step %d, %d tokens seen, data cursor %d, seed %d, config %s\n",
			t.Objective, t.Step, t.TokensSeen, t.DataCursor, t.Seed, t.ConfigFingerprint)
		fmt.Fprintf(w, "files: sha256 of %d files verified\n", len(t.Files))
	} else {
		fmt.Fprintln(w, "trainer: none (weights only)")
	}
}

// printWeights writes the weights section: the files with their dtypes, the index's verification
// and the notes, then a blank line.
func (r *ckptReport) printWeights(w io.Writer) {
	wr := r.Weights
	if wr.Index == "" {
		f := wr.Files[0]
		fmt.Fprintf(w, "weights: %s, %s, %s, %d bytes of tensor data\n", f.Name, tensorCount(f.Tensors), dtypeCounts(f.DTypes), f.DataBytes)
	} else {
		fmt.Fprintf(w, "weights: %d shards listed by %s, %d bytes of tensor data\n", len(wr.Files), wr.Index, wr.DataBytes)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, f := range wr.Files {
			fmt.Fprintf(tw, "  %s\t%s\t%d bytes of data\t%s\n", f.Name, tensorCount(f.Tensors), f.DataBytes, dtypeCounts(f.DTypes))
		}
		tw.Flush()
		fmt.Fprintf(w, "  index verified: each of its %d tensors is in the shard it names and in no other; no shard is left unnamed\n", wr.IndexTensors)
		switch {
		case wr.TotalSize == nil:
			fmt.Fprintln(w, "  index gives no metadata.total_size")
		case *wr.TotalSizeOK:
			fmt.Fprintf(w, "  metadata.total_size %d = the shards' tensor data\n", *wr.TotalSize)
		default:
			fmt.Fprintf(w, "  warning: metadata.total_size %d, but the shards hold %d bytes of tensor data (the weights load all the same)\n", *wr.TotalSize, wr.DataBytes)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintln(w)
}

// tensorCount writes "1 tensor", "5 tensors".
func tensorCount(n int) string {
	if n == 1 {
		return "1 tensor"
	}
	return fmt.Sprintf("%d tensors", n)
}

// orNone writes a special-token key's JSON value, or "none".
func orNone(v json.RawMessage) string {
	if len(v) == 0 {
		return "none"
	}
	return string(v)
}

// dtypeCounts writes a file's dtypes: "BF16", or "F32 (3), BF16 (30)" when they are mixed.
func dtypeCounts(m map[string]int) string {
	names := slices.Sorted(maps.Keys(m))
	if len(names) == 1 {
		return names[0]
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s (%d)", n, m[n])
	}
	return strings.Join(parts, ", ")
}

// weightsSummary is one line on the weights: "3 shards with model.safetensors.index.json, BF16,
// 123456 bytes of tensor data".
func weightsSummary(s *model.StoredWeights) string {
	all := map[string]int{}
	for _, f := range s.Files {
		for d, n := range f.DTypes {
			all[d] += n
		}
	}
	layout := s.Files[0].Name
	if s.Index != "" {
		layout = fmt.Sprintf("%d shards with %s", len(s.Files), s.Index)
	}
	return fmt.Sprintf("%s, %s, %d bytes of tensor data", layout, dtypeCounts(all), s.DataBytes())
}

// shapeProblem describes how stored tensor st (ok: present) differs from the shape config.json
// implies; nil when it does not.
func shapeProblem(st safetensors.Tensor, ok bool, name string, want []int) []string {
	switch {
	case !ok:
		return []string{fmt.Sprintf("%s is missing", name)}
	case !slices.Equal(st.Shape, want):
		return []string{fmt.Sprintf("%s has shape %v, config.json implies %v", name, st.Shape, want)}
	}
	return nil
}

// shapeError reports up to a few of the problems of one file.
func shapeError(path string, bad []string) error {
	if len(bad) == 0 {
		return nil
	}
	const show = 3
	more := ""
	if len(bad) > show {
		more = fmt.Sprintf(" (and %d more)", len(bad)-show)
		bad = bad[:show]
	}
	return fmt.Errorf("%s does not match config.json: %s%s", path, strings.Join(bad, "; "), more)
}
