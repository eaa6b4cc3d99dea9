package model

import (
	"encoding/json"
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

// TestRunningStatsReadOldTrainerJSON: the running statistics of a trainer.json whose "extra"
// object was written from a map of names read into their fields, and are written back to the
// same bytes, so such a checkpoint resumes exactly and is indistinguishable from a new one.
func TestRunningStatsReadOldTrainerJSON(t *testing.T) {
	old := map[string]float64{
		"gns_ema_weight": 0.25, "gns_grad_sq_ema": 3.5e-3, "gns_trace_ema": 0.125,
		"loss_ema": 2.6545945361265835, "loss_ema_min": 2.636863520605729, "loss_ema_weight": 0.9996645373720974,
		"wall_s": 51.227930238,
	}
	var withMap struct {
		Step  int                `json:"step"`
		Extra map[string]float64 `json:"extra"`
	}
	withMap.Step, withMap.Extra = 512, old
	b, err := json.MarshalIndent(withMap, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var s TrainerState
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	want := RunningStats{GNSEMAWeight: 0.25, GNSGradSqEMA: 3.5e-3, GNSTraceEMA: 0.125, LossEMA: 2.6545945361265835,
		LossEMAMin: 2.636863520605729, LossEMAWeight: 0.9996645373720974, WallS: 51.227930238}
	if s.Stats != want {
		t.Fatalf("read %+v, want %+v", s.Stats, want)
	}
	again, err := json.MarshalIndent(struct {
		Step  int          `json:"step"`
		Stats RunningStats `json:"extra"`
	}{512, s.Stats}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(b) {
		t.Errorf("written back as\n%s\nwant\n%s", again, b)
	}
	// A trainer.json without statistics (another trainer's checkpoint) reads zeros and writes none.
	var bare TrainerState
	if err := json.Unmarshal([]byte(`{"step": 3}`), &bare); err != nil || bare.Stats != (RunningStats{}) {
		t.Fatalf("bare: %+v, %v", bare.Stats, err)
	}
	if b, _ := json.Marshal(bare); strings.Contains(string(b), "extra") {
		t.Errorf("zero statistics written: %s", b)
	}
}
