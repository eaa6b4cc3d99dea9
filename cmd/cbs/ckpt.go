package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
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
		Short: "Print a checkpoint's config, parameter table and trainer state",
		Long: `Print what a checkpoint holds: the architecture, every parameter tensor with its shape,
group and stored dtype, the optimizer state and the trainer state. The sha256 of every file that
trainer.json lists is checked. For a Qwen3-MoE model it also shows the experts, which layers are
sparse, and the parameters one token's forward pass reads (active) beside the total.`,
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
	cmd.AddCommand(inspect)
	return cmd
}

type tensorRow struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
	Group string `json:"group"`
	Size  int    `json:"size"`
	DType string `json:"dtype"`
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
}

func inspectCheckpoint(dir string) (*ckptReport, error) {
	c, err := model.LoadConfig(filepath.Join(dir, model.ConfigFile))
	if err != nil {
		return nil, err
	}
	f, err := safetensors.Read(filepath.Join(dir, model.WeightsFile))
	if err != nil {
		return nil, err
	}
	rep := &ckptReport{Dir: dir, Config: c, Params: model.NumParams(c)}
	if c.MoE() {
		rep.ActiveParams = int(c.ActiveParamCount())
		for l := range c.NumLayers {
			if c.Sparse(l) {
				rep.SparseLayers = append(rep.SparseLayers, l)
			}
		}
	}
	layout := model.Layout(c)
	var bad []string
	for _, t := range layout {
		st, ok := f.Tensor(t.Name)
		dtype := "missing"
		if ok {
			dtype = st.DType
		}
		bad = append(bad, shapeProblem(st, ok, t.Name, t.Shape)...)
		rep.Tensors = append(rep.Tensors, tensorRow{Name: t.Name, Shape: t.Shape, Group: t.Group, Size: t.Size, DType: dtype})
	}
	// The table shows the shapes config.json implies; a checkpoint whose tensors disagree would not
	// load, and must not be reported as verified.
	if err := shapeError(filepath.Join(dir, model.WeightsFile), bad); err != nil {
		return nil, err
	}
	optPath := filepath.Join(dir, model.OptimizerFile)
	of, err := safetensors.Read(optPath)
	switch {
	case err == nil:
		bad = nil
		for _, t := range layout {
			for _, suffix := range []string{".exp_avg", ".exp_avg_sq"} {
				st, ok := of.Tensor(t.Name + suffix)
				bad = append(bad, shapeProblem(st, ok, t.Name+suffix, t.Shape)...)
			}
		}
		if err := shapeError(optPath, bad); err != nil {
			return nil, err
		}
		rep.Optimizer = of.Metadata
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if rep.Trainer, err = model.LoadTrainerState(dir); err != nil {
		return nil, err
	}
	rep.FilesChecked = rep.Trainer != nil
	return rep, nil
}

func (r *ckptReport) print(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "checkpoint %s\n", r.Dir)
	fmt.Fprintf(w, "  %s: hidden %d, layers %d, heads %d (kv %d, head_dim %d), ff %d, vocab %d, tied %v\n",
		c.ModelType, c.HiddenSize, c.NumLayers, c.NumHeads, c.NumKVHeads, c.HeadDim, c.IntermediateSize, c.VocabSize, c.TieWordEmbeddings)
	fmt.Fprintf(w, "  attention %s, mask token %d, rope_theta %g, rms_norm_eps %g, tokenizer %q\n",
		c.Attention, c.MaskTokenID, c.RopeTheta, c.RMSNormEps, c.Tokenizer)
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
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tensor\tshape\tgroup\tparams\tdtype")
	for _, t := range r.Tensors {
		fmt.Fprintf(tw, "%s\t%v\t%s\t%d\t%s\n", t.Name, t.Shape, t.Group, t.Size, t.DType)
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
