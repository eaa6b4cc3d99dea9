package model

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Config is the architecture, stored as config.json with Hugging Face Qwen3 keys plus cbs's own
// (mask_token_id, attention, tokenizer). A config.json written by another tool loads: the other
// keys Hugging Face's Qwen3 and Qwen3-MoE publish are checked and otherwise ignored (hfKeys: one
// that asks for what cbs does not implement, such as rope_scaling or sliding-window attention, is
// refused), unknown keys are ignored with a note (ParseConfigNotes), num_key_value_heads defaults
// to num_attention_heads and head_dim to hidden_size / num_attention_heads (also when null).
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
	// BOSTokenID and EOSTokenID are Hugging Face's special-token keys, kept as config.json gives
	// them (an id or a list of ids; absent when null) and written back, so that a checkpoint keeps
	// them for generation. Training does not use them.
	BOSTokenID json.RawMessage `json:"bos_token_id,omitempty"`
	EOSTokenID json.RawMessage `json:"eos_token_id,omitempty"`

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
	c, _, err := ParseConfigNotes(data)
	return c, err
}

// ParseConfigNotes is ParseConfig, also returning notes for the user about what it read but does
// not use: one listing the unknown keys it ignored, and one per special-token id beyond the
// vocabulary.
func ParseConfigNotes(data []byte) (Config, []string, error) {
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, nil, fmt.Errorf("config.json: %w", err)
	}
	c := Config{RMSNormEps: 1e-6, RopeTheta: 10000, MaskTokenID: -1, Attention: Causal, MaxPositionEmbeddings: 2048}
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, nil, fmt.Errorf("config.json: %w", err)
	}
	if err := c.applyModelTypeDefaults(raw); err != nil {
		return Config{}, nil, err
	}
	var unknown []string
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		v := raw[key]
		check, hf := hfKeys[key]
		switch {
		case hf:
			if err := check(&c, raw, v); err != nil {
				return Config{}, nil, fmt.Errorf("config.json: %s = %s: %w", key, compactJSON(v), err)
			}
		case !configKeys[key]:
			unknown = append(unknown, key)
		}
	}
	c.applyAbsentDefaults(raw)
	if err := c.Validate(); err != nil {
		return c, nil, err
	}
	return c, c.readNotes(unknown), nil
}

// applyModelTypeDefaults clears what a dense Qwen3 has no use for and gives a Qwen3-MoE the
// Hugging Face defaults of the expert keys config.json leaves out.
func (c *Config) applyModelTypeDefaults(raw map[string]json.RawMessage) error {
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
		return fmt.Errorf("config.json: model_type = %q, want %q or %q", c.ModelType, Qwen3, Qwen3MoE)
	}
	return nil
}

// applyAbsentDefaults fills what Hugging Face derives when config.json leaves a key out or
// sets it to null.
func (c *Config) applyAbsentDefaults(raw map[string]json.RawMessage) {
	given := func(key string) bool {
		v, ok := raw[key]
		return ok && !isNull(v)
	}
	// A null special token is none: absent when the config is written again.
	if isNull(c.BOSTokenID) {
		c.BOSTokenID = nil
	}
	if isNull(c.EOSTokenID) {
		c.EOSTokenID = nil
	}
	if !given("num_key_value_heads") {
		c.NumKVHeads = c.NumHeads
	}
	if !given("head_dim") && c.NumHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumHeads
	}
	if m, ok := raw["mask_token_id"]; ok && isNull(m) {
		c.MaskTokenID = -1
	}
}

// readNotes are the notes for the user: the unknown keys ignored, and each special-token id
// beyond the vocabulary.
func (c *Config) readNotes(unknown []string) []string {
	var notes []string
	if len(unknown) > 0 {
		notes = append(notes, fmt.Sprintf("config.json: ignored %d key(s) cbs does not know: %s", len(unknown), strings.Join(unknown, ", ")))
	}
	for _, tk := range []struct {
		key string
		v   json.RawMessage
	}{{"bos_token_id", c.BOSTokenID}, {"eos_token_id", c.EOSTokenID}} {
		for _, id := range tokenIDs(tk.v) {
			if id >= int64(c.VocabSize) {
				notes = append(notes, fmt.Sprintf("config.json: %s = %s lies beyond vocab_size = %d (kept; training does not use it)", tk.key, compactJSON(tk.v), c.VocabSize))
				break
			}
		}
	}
	return notes
}

// LoadConfig reads dir/config.json.
func LoadConfig(path string) (Config, error) {
	c, _, err := LoadConfigNotes(path)
	return c, err
}

// LoadConfigNotes is LoadConfig with ParseConfigNotes's notes.
func LoadConfigNotes(path string) (Config, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, err
	}
	c, notes, err := ParseConfigNotes(data)
	if err != nil {
		return Config{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, notes, nil
}

// configKeys are the config.json keys of Config's fields.
var configKeys = func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
}()

// torchDTypes are the torch_dtype (or dtype) values config.json may give: the storage type of
// the published weights. Whatever it says, cbs trains float32 master weights.
var torchDTypes = []string{"float32", "bfloat16", "float16", "float64"}

// hfKeys are the keys Hugging Face's Qwen3 and Qwen3-MoE config.json hold besides Config's
// fields (and dtype, layer_types and rope_parameters, which later versions of its library write).
// Each is checked against what cbs implements, then ignored; c is the config read so far and raw
// the whole file, for checks that depend on another key.
var hfKeys = map[string]func(c *Config, raw map[string]json.RawMessage, v json.RawMessage) error{
	"architectures":        anyValue,
	"initializer_range":    anyValue, // the run's own init_std sets a fresh model's scale
	"transformers_version": anyValue,
	"use_cache":            anyValue,
	"max_window_layers":    nullOr(optionalInt), // matters only with sliding-window attention
	"sliding_window":       nullOr(optionalInt), // used only when use_sliding_window is true
	"hidden_act": func(_ *Config, _ map[string]json.RawMessage, v json.RawMessage) error {
		var s *string
		if err := json.Unmarshal(v, &s); err != nil {
			return errors.New("want a string")
		}
		if s != nil && *s != "silu" {
			return errors.New(`cbs's MLP is SwiGLU: want "silu"`)
		}
		return nil
	},
	"attention_bias": refuseTrue("cbs's q, k, v and o projections have no bias"),
	"use_sliding_window": refuseTrue("cbs has full attention in every layer, " +
		"not sliding-window attention"),
	"attention_dropout": func(_ *Config, _ map[string]json.RawMessage, v json.RawMessage) error {
		var f *float64
		if err := json.Unmarshal(v, &f); err != nil {
			return errors.New("want a number")
		}
		if f != nil && *f != 0 {
			return errors.New("cbs trains without dropout: want 0")
		}
		return nil
	},
	"torch_dtype": checkDType,
	"dtype":       checkDType,
	"rope_scaling": func(_ *Config, _ map[string]json.RawMessage, v json.RawMessage) error {
		if !isNull(v) {
			return errors.New("cbs implements plain RoPE with rope_theta only: want null")
		}
		return nil
	},
	"rope_parameters": func(c *Config, raw map[string]json.RawMessage, v json.RawMessage) error {
		if isNull(v) {
			return nil
		}
		var rp map[string]json.RawMessage
		if err := json.Unmarshal(v, &rp); err != nil {
			return errors.New("want an object")
		}
		const plain = `cbs implements plain RoPE only: want {"rope_type": "default", "rope_theta": ...}`
		var kind string
		if t, ok := rp["rope_type"]; ok {
			if err := json.Unmarshal(t, &kind); err != nil || kind != "default" {
				return errors.New(plain)
			}
		}
		for k := range rp {
			if k != "rope_type" && k != "rope_theta" {
				return fmt.Errorf("%s: %s", k, plain)
			}
		}
		t, ok := rp["rope_theta"]
		if !ok {
			return nil
		}
		var theta float64
		if err := json.Unmarshal(t, &theta); err != nil {
			return errors.New("rope_theta: want a number")
		}
		if top, ok := raw["rope_theta"]; ok && !isNull(top) && theta != c.RopeTheta {
			return fmt.Errorf("its rope_theta disagrees with rope_theta = %s", compactJSON(top))
		}
		c.RopeTheta = theta
		return nil
	},
	"layer_types": func(c *Config, _ map[string]json.RawMessage, v json.RawMessage) error {
		if isNull(v) {
			return nil
		}
		var types []string
		if err := json.Unmarshal(v, &types); err != nil {
			return errors.New("want a list of strings")
		}
		for l, t := range types {
			if t != "full_attention" {
				return fmt.Errorf("layer %d is %q: cbs has full attention in every layer", l, t)
			}
		}
		if len(types) != c.NumLayers {
			return fmt.Errorf("%d entries, want num_hidden_layers = %d", len(types), c.NumLayers)
		}
		return nil
	},
	"quantization_config": func(_ *Config, _ map[string]json.RawMessage, v json.RawMessage) error {
		if !isNull(v) {
			return errors.New("cbs trains unquantized weights: want null or no key")
		}
		return nil
	},
	// Config fields, checked here because they may take several forms.
	"bos_token_id": checkTokenIDs,
	"eos_token_id": checkTokenIDs,
}

func anyValue(*Config, map[string]json.RawMessage, json.RawMessage) error { return nil }

// nullOr accepts null or what check accepts.
func nullOr(check func(json.RawMessage) error) func(*Config, map[string]json.RawMessage, json.RawMessage) error {
	return func(_ *Config, _ map[string]json.RawMessage, v json.RawMessage) error {
		if isNull(v) {
			return nil
		}
		return check(v)
	}
}

func optionalInt(v json.RawMessage) error {
	var n int64
	if err := json.Unmarshal(v, &n); err != nil || n < 0 {
		return errors.New("want a non-negative integer or null")
	}
	return nil
}

// refuseTrue accepts false or null, and refuses true for reason.
func refuseTrue(reason string) func(*Config, map[string]json.RawMessage, json.RawMessage) error {
	return func(_ *Config, _ map[string]json.RawMessage, v json.RawMessage) error {
		var b *bool
		if err := json.Unmarshal(v, &b); err != nil {
			return errors.New("want true or false")
		}
		if b != nil && *b {
			return errors.New(reason + ": want false")
		}
		return nil
	}
}

// checkDType accepts torch_dtype or dtype naming a floating-point type, and refuses the two
// keys disagreeing.
func checkDType(_ *Config, raw map[string]json.RawMessage, v json.RawMessage) error {
	if isNull(v) {
		return nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil || !slices.Contains(torchDTypes, s) {
		return fmt.Errorf("want one of %s", strings.Join(torchDTypes, ", "))
	}
	a, b := raw["torch_dtype"], raw["dtype"]
	if a != nil && b != nil && !isNull(a) && !isNull(b) && compactJSON(a) != compactJSON(b) {
		return fmt.Errorf("torch_dtype = %s and dtype = %s disagree", compactJSON(a), compactJSON(b))
	}
	return nil
}

// checkTokenIDs accepts a special-token key: null, a non-negative integer or a list of them.
func checkTokenIDs(_ *Config, _ map[string]json.RawMessage, v json.RawMessage) error {
	var one int64
	var many []int64
	switch {
	case isNull(v):
	case json.Unmarshal(v, &one) == nil && one >= 0:
	case json.Unmarshal(v, &many) == nil && !slices.ContainsFunc(many, func(n int64) bool { return n < 0 }):
	default:
		return errors.New("want a token id, a list of token ids, or null")
	}
	return nil
}

// tokenIDs lists the ids of a special-token key checkTokenIDs accepted.
func tokenIDs(v json.RawMessage) []int64 {
	var one int64
	if json.Unmarshal(v, &one) == nil {
		return []int64{one}
	}
	var many []int64
	_ = json.Unmarshal(v, &many)
	return many
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// compactJSON renders a JSON value on one line, for error messages.
func compactJSON(v json.RawMessage) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return string(v)
	}
	return buf.String()
}

// JSON renders config.json with the keys Hugging Face's Qwen3 (or Qwen3-MoE) loader expects, for
// float32 weights.
func (c Config) JSON() []byte { return c.jsonFor("float32") }

// jsonFor renders config.json for weights stored as torchDType (torch_dtype's value).
func (c Config) jsonFor(torchDType string) []byte {
	out := map[string]any{
		"model_type": "qwen3", "architectures": []string{"Qwen3ForCausalLM"}, "hidden_act": "silu",
		"attention_bias": false, "torch_dtype": torchDType,
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
	for key, v := range map[string]json.RawMessage{"bos_token_id": c.BOSTokenID, "eos_token_id": c.EOSTokenID} {
		if len(v) > 0 && json.Valid(v) {
			out[key] = v
		}
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
