package model

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Config is the architecture, stored as config.json with Hugging Face Qwen3 keys plus cbs's own
// (mask_token_id, attention, tokenizer). A config.json written by another tool loads: unknown keys
// are ignored, num_key_value_heads defaults to num_attention_heads and head_dim to
// hidden_size / num_attention_heads.
//
// model_type "qwen3_moe" is Qwen3-MoE: the layers Sparse names replace the SwiGLU MLP with a
// router and NumExperts SwiGLU experts of width MoEIntermediateSize, of which each token passes
// through NumExpertsPerTok (moe.go). Keys its config.json leaves out take Hugging Face's
// defaults. The MoE fields are zero for "qwen3" (a stray num_experts there is ignored, as
// Hugging Face's Qwen3 ignores it) and absent from a dense model's JSON.
type Config struct {
	ModelType             string  `json:"model_type"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	NumLayers             int     `json:"num_hidden_layers"`
	NumHeads              int     `json:"num_attention_heads"`
	NumKVHeads            int     `json:"num_key_value_heads"`
	HeadDim               int     `json:"head_dim"`
	RMSNormEps            float64 `json:"rms_norm_eps"`
	RopeTheta             float64 `json:"rope_theta"`
	VocabSize             int     `json:"vocab_size"`
	TieWordEmbeddings     bool    `json:"tie_word_embeddings"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	// MaskTokenID is the token that replaces masked positions under the mdm objective; -1: none.
	MaskTokenID int `json:"mask_token_id"`
	// Attention is "causal" or "bidirectional": what the model was last trained with.
	Attention string `json:"attention"`
	Tokenizer string `json:"tokenizer,omitempty"`

	// Qwen3-MoE (model_type "qwen3_moe"); all zero for a dense model.
	NumExperts          int `json:"num_experts,omitempty"`
	NumExpertsPerTok    int `json:"num_experts_per_tok,omitempty"`
	MoEIntermediateSize int `json:"moe_intermediate_size,omitempty"`
	// NormTopKProb renormalises the k routing weights of a token to sum to 1.
	NormTopKProb bool `json:"norm_topk_prob,omitempty"`
	// DecoderSparseStep and MLPOnlyLayers decide which layers are sparse (Sparse).
	DecoderSparseStep int   `json:"decoder_sparse_step,omitempty"`
	MLPOnlyLayers     []int `json:"mlp_only_layers,omitempty"`
	// RouterAuxLossCoef weighs the router load-balancing loss, which the training loss includes
	// when OutputRouterLogits is set (AuxLossOn).
	RouterAuxLossCoef  float64 `json:"router_aux_loss_coef,omitempty"`
	OutputRouterLogits bool    `json:"output_router_logits,omitempty"`
}

// Model types.
const (
	Qwen3    = "qwen3"
	Qwen3MoE = "qwen3_moe"
)

// Hugging Face's Qwen3-MoE defaults, for keys a qwen3_moe config.json leaves out.
const (
	defaultNumExperts        = 128
	defaultNumExpertsPerTok  = 8
	defaultMoEIntermediate   = 768
	defaultRouterAuxLossCoef = 0.001
)

// MoE reports whether c is a Qwen3-MoE model (some of its layers may still be dense).
func (c *Config) MoE() bool { return c.NumExperts > 0 }

// Sparse reports whether layer l has a sparse MoE block instead of the dense MLP: Hugging Face's
// rule, l not in mlp_only_layers and (l + 1) a multiple of decoder_sparse_step.
func (c *Config) Sparse(l int) bool {
	if c.NumExperts <= 0 || slices.Contains(c.MLPOnlyLayers, l) {
		return false
	}
	return (l+1)%max(1, c.DecoderSparseStep) == 0
}

// SparseLayers is the number of sparse layers.
func (c *Config) SparseLayers() int {
	n := 0
	for l := range c.NumLayers {
		if c.Sparse(l) {
			n++
		}
	}
	return n
}

// AuxLossOn reports whether the training loss includes the router load-balancing loss: as in
// Hugging Face's Qwen3-MoE, when output_router_logits is set (and some layer is sparse). A zero
// coefficient adds nothing, so it counts as off.
func (c *Config) AuxLossOn() bool {
	return c.OutputRouterLogits && c.RouterAuxLossCoef != 0 && c.SparseLayers() > 0
}

// Attention modes.
const (
	Causal        = "causal"
	Bidirectional = "bidirectional"
)

// Validate reports the first inconsistent field, naming its config.json key.
func (c *Config) Validate() error {
	pos := []struct {
		key string
		v   int
	}{
		{"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumLayers}, {"num_attention_heads", c.NumHeads},
		{"num_key_value_heads", c.NumKVHeads}, {"head_dim", c.HeadDim},
		{"vocab_size", c.VocabSize}, {"max_position_embeddings", c.MaxPositionEmbeddings},
	}
	for _, p := range pos {
		if p.v <= 0 {
			return fmt.Errorf("model config: %s = %d, want a positive integer", p.key, p.v)
		}
	}
	if err := c.checkSize(); err != nil {
		return err
	}
	switch {
	case c.NumHeads%c.NumKVHeads != 0:
		return fmt.Errorf("model config: num_key_value_heads = %d does not divide num_attention_heads = %d", c.NumKVHeads, c.NumHeads)
	case c.HeadDim%2 != 0:
		return fmt.Errorf("model config: head_dim = %d, want an even number (RoPE rotates halves)", c.HeadDim)
	case c.RMSNormEps <= 0:
		return fmt.Errorf("model config: rms_norm_eps = %g, want > 0", c.RMSNormEps)
	case c.RopeTheta <= 0:
		return fmt.Errorf("model config: rope_theta = %g, want > 0", c.RopeTheta)
	case c.MaskTokenID < -1 || c.MaskTokenID >= c.VocabSize:
		return fmt.Errorf("model config: mask_token_id = %d, want a token id below vocab_size = %d (or -1 for none)", c.MaskTokenID, c.VocabSize)
	case c.Attention != Causal && c.Attention != Bidirectional:
		return fmt.Errorf("model config: attention = %q, want %q or %q", c.Attention, Causal, Bidirectional)
	}
	return c.validateMoE()
}

// validateMoE checks the Qwen3-MoE keys (those of a dense model must be unset).
func (c *Config) validateMoE() error {
	if c.ModelType != Qwen3MoE {
		if c.NumExperts != 0 {
			return fmt.Errorf("model config: num_experts = %d needs model_type %q (model_type = %q)", c.NumExperts, Qwen3MoE, c.ModelType)
		}
		return nil
	}
	switch {
	case c.NumExperts <= 0:
		return fmt.Errorf("model config: num_experts = %d, want a positive integer for %s", c.NumExperts, Qwen3MoE)
	case c.NumExpertsPerTok < 1 || c.NumExpertsPerTok > c.NumExperts:
		return fmt.Errorf("model config: num_experts_per_tok = %d, want 1 to num_experts = %d", c.NumExpertsPerTok, c.NumExperts)
	case c.MoEIntermediateSize <= 0:
		return fmt.Errorf("model config: moe_intermediate_size = %d, want a positive integer", c.MoEIntermediateSize)
	case c.DecoderSparseStep < 1:
		return fmt.Errorf("model config: decoder_sparse_step = %d, want a positive integer", c.DecoderSparseStep)
	case !(c.RouterAuxLossCoef >= 0) || math.IsInf(c.RouterAuxLossCoef, 0):
		return fmt.Errorf("model config: router_aux_loss_coef = %g, want a finite value >= 0", c.RouterAuxLossCoef)
	}
	for _, l := range c.MLPOnlyLayers {
		if l < 0 || l >= c.NumLayers {
			return fmt.Errorf("model config: mlp_only_layers lists layer %d, want indices below num_hidden_layers = %d", l, c.NumLayers)
		}
	}
	return nil
}

// ParseConfig reads config.json bytes, filling the defaults Hugging Face configs leave out.
func ParseConfig(data []byte) (Config, error) {
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("config.json: %w", err)
	}
	c := Config{RMSNormEps: 1e-6, RopeTheta: 10000, MaskTokenID: -1, Attention: Causal, MaxPositionEmbeddings: 2048}
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("config.json: %w", err)
	}
	switch c.ModelType {
	case "", Qwen3:
		// Hugging Face's Qwen3 has no experts, whatever else the file holds.
		c.ModelType = Qwen3
		c.NumExperts, c.NumExpertsPerTok, c.MoEIntermediateSize, c.NormTopKProb = 0, 0, 0, false
		c.DecoderSparseStep, c.MLPOnlyLayers, c.RouterAuxLossCoef, c.OutputRouterLogits = 0, nil, 0, false
	case Qwen3MoE:
		defaults := []struct {
			key string
			v   *int
			def int
		}{
			{"num_experts", &c.NumExperts, defaultNumExperts},
			{"num_experts_per_tok", &c.NumExpertsPerTok, defaultNumExpertsPerTok},
			{"moe_intermediate_size", &c.MoEIntermediateSize, defaultMoEIntermediate},
			{"decoder_sparse_step", &c.DecoderSparseStep, 1},
		}
		for _, d := range defaults {
			if _, ok := raw[d.key]; !ok {
				*d.v = d.def
			}
		}
		if _, ok := raw["router_aux_loss_coef"]; !ok {
			c.RouterAuxLossCoef = defaultRouterAuxLossCoef
		}
	default:
		return Config{}, fmt.Errorf("config.json: model_type = %q, want %q or %q", c.ModelType, Qwen3, Qwen3MoE)
	}
	if _, ok := raw["num_key_value_heads"]; !ok {
		c.NumKVHeads = c.NumHeads
	}
	if _, ok := raw["head_dim"]; !ok && c.NumHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumHeads
	}
	if m, ok := raw["mask_token_id"]; ok && string(m) == "null" {
		c.MaskTokenID = -1
	}
	return c, c.Validate()
}

// LoadConfig reads dir/config.json.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// JSON renders config.json with the keys Hugging Face's Qwen3 (or Qwen3-MoE) loader expects.
func (c Config) JSON() []byte {
	out := map[string]any{
		"model_type": "qwen3", "architectures": []string{"Qwen3ForCausalLM"}, "hidden_act": "silu",
		"attention_bias": false, "torch_dtype": "float32",
		"hidden_size": c.HiddenSize, "intermediate_size": c.IntermediateSize,
		"num_hidden_layers": c.NumLayers, "num_attention_heads": c.NumHeads,
		"num_key_value_heads": c.NumKVHeads, "head_dim": c.HeadDim, "rms_norm_eps": c.RMSNormEps,
		"rope_theta": c.RopeTheta, "vocab_size": c.VocabSize, "tie_word_embeddings": c.TieWordEmbeddings,
		"max_position_embeddings": c.MaxPositionEmbeddings, "attention": c.Attention,
	}
	if c.MaskTokenID >= 0 {
		out["mask_token_id"] = c.MaskTokenID
	} else {
		out["mask_token_id"] = nil
	}
	if c.Tokenizer != "" {
		out["tokenizer"] = c.Tokenizer
	}
	if c.ModelType == Qwen3MoE {
		only := c.MLPOnlyLayers
		if only == nil {
			only = []int{}
		}
		out["model_type"], out["architectures"] = Qwen3MoE, []string{"Qwen3MoeForCausalLM"}
		out["num_experts"], out["num_experts_per_tok"] = c.NumExperts, c.NumExpertsPerTok
		out["moe_intermediate_size"], out["norm_topk_prob"] = c.MoEIntermediateSize, c.NormTopKProb
		out["decoder_sparse_step"], out["mlp_only_layers"] = c.DecoderSparseStep, only
		out["router_aux_loss_coef"], out["output_router_logits"] = c.RouterAuxLossCoef, c.OutputRouterLogits
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	return append(b, '\n')
}

// bytesPerParam is what every use of a model needs per parameter at the least: its float32
// weight. Training needs four times that (gradient and two AdamW moments); a config whose
// weights alone exceed the machine's memory is refused before anything is allocated, since
// Layout, NewParams and the readers would otherwise die in makeslice or out of memory.
const bytesPerParam = 4

// machineMemory reports the machine's memory in bytes and where the number came from. A variable,
// so tests can stand in a small machine.
var machineMemory = func() (uint64, string) {
	if runtime.GOOS == "linux" {
		if n, err := memTotal("/proc/meminfo"); err == nil {
			return n, "MemTotal in /proc/meminfo"
		}
	}
	return 1 << 40, "assumed: no /proc/meminfo to read"
}

// MachineMemory is the machine's memory in bytes and where the number came from.
func MachineMemory() (uint64, string) { return machineMemory() }

// HumanBytes writes a byte count with a binary unit: 1.5 GiB.
func HumanBytes(b float64) string { return humanBytes(b) }

// memTotal reads the MemTotal line (in kB) of a meminfo file.
func memTotal(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: MemTotal = %q: %w", path, fields[1], err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no MemTotal line", path)
}

// ParamCount is the number of parameters of c, in float64 so that a config of absurd size
// neither overflows nor allocates (NumParams walks Layout). A sparse layer counts its router and
// every expert.
func (c *Config) ParamCount() float64 { return c.paramCount(c.NumExperts) }

// ActiveParamCount is the number of parameters one token's forward pass reads: a sparse layer
// counts its router and the num_experts_per_tok experts the token is routed to (and the
// embedding counts whole, as in ParamCount). For a dense model it is ParamCount.
func (c *Config) ActiveParamCount() float64 { return c.paramCount(c.NumExpertsPerTok) }

// paramCount counts the parameters with experts experts in each sparse layer's MLP.
func (c *Config) paramCount(experts int) float64 {
	d, ff, V, hd := float64(c.HiddenSize), float64(c.IntermediateSize), float64(c.VocabSize), float64(c.HeadDim)
	h, kv := float64(c.NumHeads), float64(c.NumKVHeads)
	sparse := 0.0
	if c.NumExperts > 0 {
		// A closed form of SparseLayers, so that an absurd num_hidden_layers costs nothing.
		step := max(1, c.DecoderSparseStep)
		sparse = float64(c.NumLayers / step)
		for i, l := range c.MLPOnlyLayers {
			if l >= 0 && l < c.NumLayers && (l+1)%step == 0 && !slices.Contains(c.MLPOnlyLayers[:i], l) {
				sparse--
			}
		}
	}
	n := float64(c.NumLayers)
	layer := 2*d + 2*h*hd*d + 2*kv*hd*d + 2*hd
	total := V*d + n*layer + (n-sparse)*3*ff*d + d
	if sparse > 0 {
		total += sparse * (float64(c.NumExperts)*d + float64(experts)*3*float64(c.MoEIntermediateSize)*d)
	}
	if !c.TieWordEmbeddings {
		total += V * d
	}
	return total
}

// checkSize refuses a config whose float32 weights do not fit in the machine's memory, naming
// the key that overshoots the most and the largest value of it that would fit with the others.
func (c *Config) checkSize() error {
	mem, source := machineMemory()
	limit := float64(mem) / bytesPerParam
	params := c.ParamCount()
	if params <= limit {
		return nil
	}
	keys := []struct {
		key string
		v   *int
	}{
		{"hidden_size", &c.HiddenSize}, {"intermediate_size", &c.IntermediateSize},
		{"num_hidden_layers", &c.NumLayers}, {"num_attention_heads", &c.NumHeads},
		{"num_key_value_heads", &c.NumKVHeads}, {"head_dim", &c.HeadDim}, {"vocab_size", &c.VocabSize},
	}
	if c.MoE() {
		keys = append(keys, []struct {
			key string
			v   *int
		}{{"num_experts", &c.NumExperts}, {"moe_intermediate_size", &c.MoEIntermediateSize}}...)
	}
	// The key to blame is the one that multiplies the count the most: the count with it as
	// given over the count with it at 1. The allowed value is the largest that fits with the
	// other keys as given, found by bisection (the count grows with every key).
	worst, worstMax, worstRatio := "", 0, 0.0
	for _, k := range keys {
		orig := *k.v
		*k.v = 1
		ratio := params / c.ParamCount()
		lo, hi := 0, orig
		for lo < hi {
			mid := lo + (hi-lo+1)/2
			*k.v = mid
			if c.ParamCount() <= limit {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		*k.v = orig
		if worst == "" || ratio > worstRatio {
			worst, worstMax, worstRatio = k.key, lo, ratio
		}
	}
	var value int
	for _, k := range keys {
		if k.key == worst {
			value = *k.v
		}
	}
	allowed := fmt.Sprintf("at most %d with the other sizes as given", worstMax)
	if worstMax == 0 {
		allowed = "no value fits with the other sizes as given"
	}
	return fmt.Errorf("model config: %s = %d gives %.3g parameters, %s of float32 weights alone; this machine has %s (%s): %s",
		worst, value, params, humanBytes(params*bytesPerParam), humanBytes(float64(mem)), source, allowed)
}

func humanBytes(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == len(units)-1 && b >= 1024 {
		return fmt.Sprintf("%.3g %s", b, units[i])
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}
