package model

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cbs/internal/safetensors"
)

func TestCheckpointRoundTrip(t *testing.T) {
	c := tinyConfig(4, 2, false)
	p := NewParams[float32](c)
	p.Init(3, 0.02)
	opt := NewAdamW[float32](DefaultOptim(), len(p.Data))
	for i := range opt.M {
		opt.M[i], opt.V[i] = float32(i)*1e-3, float32(i)*1e-6
	}
	opt.Step = 17
	state := &TrainerState{Objective: MDM, Step: 17, TokensSeen: 4096, DataCursor: 64, Seed: 9}
	dir := filepath.Join(t.TempDir(), "ckpt")
	for round := 0; round < 2; round++ { // the second save replaces the first
		if err := Save(dir, p, opt, state, ""); err != nil {
			t.Fatal(err)
		}
	}
	q, err := Load[float32](dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Data {
		if p.Data[i] != q.Data[i] {
			t.Fatalf("weight %d: saved %v, loaded %v", i, p.Data[i], q.Data[i])
		}
	}
	o2, err := LoadOptimizer(dir, q, DefaultOptim())
	if err != nil || o2 == nil {
		t.Fatalf("LoadOptimizer: %v, %v", o2, err)
	}
	if o2.Step != 17 || o2.M[100] != opt.M[100] || o2.V[200] != opt.V[200] {
		t.Errorf("optimizer state did not round-trip: step %d", o2.Step)
	}
	s2, err := LoadTrainerState(dir)
	if err != nil || s2.DataCursor != 64 || s2.TokensSeen != 4096 || len(s2.Files) != 3 {
		t.Fatalf("trainer state %+v, %v", s2, err)
	}
	// A damaged weights file is refused.
	w := filepath.Join(dir, WeightsFile)
	b, _ := os.ReadFile(w)
	b[len(b)-1] ^= 1
	os.WriteFile(w, b, 0o644)
	if _, err := LoadTrainerState(dir); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged checkpoint: err = %v, want a sha256 mismatch", err)
	}
}

// TestLoadForeignCheckpoint: a directory with only a Hugging Face style config.json (no head_dim,
// no num_key_value_heads, unknown keys) and BF16 weights loads.
func TestLoadForeignCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"model_type": "qwen3", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1,
	"num_attention_heads": 2, "vocab_size": 10, "tie_word_embeddings": true, "rope_scaling": null, "use_cache": true}`
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfg), 0o644)
	c, err := LoadConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if c.HeadDim != 8 || c.NumKVHeads != 2 || c.MaskTokenID != -1 || c.Attention != Causal {
		t.Fatalf("defaults not filled: %+v", c)
	}
	p := NewParams[float32](c)
	p.Init(1, 0.5)
	var tensors []safetensors.Named
	for i, tn := range p.Tensors {
		tensors = append(tensors, safetensors.Named{Name: tn.Name, Shape: tn.Shape, Data: p.View(i)})
	}
	if err := safetensors.Write(filepath.Join(dir, WeightsFile), tensors, nil, "BF16"); err != nil {
		t.Fatal(err)
	}
	q, err := Load[float32](dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Data {
		want := safetensors.BF16ToFloat32(safetensors.BF16FromFloat32(p.Data[i]))
		if q.Data[i] != want {
			t.Fatalf("weight %d: %v, want bf16-rounded %v", i, q.Data[i], want)
		}
	}
	if opt, err := LoadOptimizer(dir, q, DefaultOptim()); opt != nil || err != nil {
		t.Errorf("no optimizer file: got %v, %v", opt, err)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ json, key string }{
		{`{"hidden_size": 16, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 3, "num_key_value_heads": 2, "head_dim": 4, "vocab_size": 5}`, "num_key_value_heads"},
		{`{"hidden_size": 16, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "head_dim": 5, "vocab_size": 5}`, "head_dim"},
		{`{"hidden_size": 16, "intermediate_size": 8, "num_hidden_layers": 0, "num_attention_heads": 2, "vocab_size": 5}`, "num_hidden_layers"},
		{`{"hidden_size": 16, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 5, "mask_token_id": 5}`, "mask_token_id"},
		{`{"model_type": "llama", "hidden_size": 16}`, "model_type"},
	} {
		_, err := ParseConfig([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: err = %v, want it to name %s", tc.json, err, tc.key)
		}
	}
}
