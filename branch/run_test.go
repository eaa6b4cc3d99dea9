package branch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cbs/data"
	"cbs/model"
)

func tinySpec(objective string) *Spec {
	s := &Spec{
		ID: "t", Seed: 1, InitSeed: 1, EvalSeed: 1, Objective: objective, MaskEps: 1e-3,
		Init:     &ModelInit{Hidden: 16, Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 8, FF: 32, InitStd: 0.02, RopeTheta: 10000, RMSNormEps: 1e-6},
		Data:     data.SourceConfig{Source: "synthetic", SeqLen: 16, SyntheticTokens: 1 << 16, EvalTokens: 512},
		Optim:    DefaultOptimizer(),
		Schedule: Schedule{Shape: ShapeConstant},
		Budget:   4096, BatchTokens: 512, MicroBatch: 16, LRScale: 1, EvalEvery: 2048, Threads: 1,
	}
	var err error
	if s.Data, err = s.Data.Resolve(); err != nil {
		panic(err)
	}
	return s
}

// TestConvertAddsMaskToken: an AR checkpoint whose config names no mask token is converted for
// the mdm objective by adding a vocabulary row.
func TestConvertAddsMaskToken(t *testing.T) {
	dir := t.TempDir()
	ar := tinySpec(model.AR)
	if err := Run(context.Background(), ar, Options{Dir: filepath.Join(dir, "ar")}); err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(dir, "ar", CkptDir)
	cfgPath := filepath.Join(ckpt, model.ConfigFile)
	b, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(b), `"mask_token_id": 258`, `"mask_token_id": null`, 1)), 0o644)
	os.Remove(filepath.Join(ckpt, model.TrainerFile)) // the sha256 list no longer matches

	mdm := tinySpec(model.MDM)
	mdm.Init, mdm.Parent, mdm.OptimizerState = nil, ckpt, "keep"
	if err := Run(context.Background(), mdm, Options{Dir: filepath.Join(dir, "mdm")}); err != nil {
		t.Fatal(err)
	}
	c, err := model.LoadConfig(filepath.Join(dir, "mdm", CkptDir, model.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if c.VocabSize != 261 || c.MaskTokenID != 260 || c.Attention != model.Bidirectional {
		t.Errorf("converted config: vocab %d, mask %d, attention %s; want 261, 260, bidirectional", c.VocabSize, c.MaskTokenID, c.Attention)
	}
}
