package model

import (
	"encoding/json"
	"fmt"
	"os"
)

// Config is the architecture, stored as config.json with Hugging Face Qwen3 keys plus cbs's own
// (mask_token_id, attention, tokenizer). A config.json written by another tool loads: unknown keys
// are ignored, num_key_value_heads defaults to num_attention_heads and head_dim to
// hidden_size / num_attention_heads.
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
	if c.ModelType != "" && c.ModelType != "qwen3" {
		return Config{}, fmt.Errorf("config.json: model_type = %q, want \"qwen3\"", c.ModelType)
	}
	c.ModelType = "qwen3"
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

// JSON renders config.json with the keys Hugging Face's Qwen3 loader expects.
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
	b, _ := json.MarshalIndent(out, "", "  ")
	return append(b, '\n')
}
