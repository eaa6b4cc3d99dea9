package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cbs/branch"
	"cbs/model"
	"cbs/sweep"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestPlanGolden: `cbs config plan` of every sweep under experiments/ is a golden file. The
// parent checkpoints do not exist in a fresh checkout, so a stand-in is written and its path
// replaced by the config's own.
func TestPlanGolden(t *testing.T) {
	configs, _ := filepath.Glob("../../experiments/*/sweep*.toml")
	if len(configs) == 0 {
		t.Fatal("no sweep configs under experiments/")
	}
	parent := filepath.Join(t.TempDir(), "parent")
	c := model.Config{ModelType: "qwen3", HiddenSize: 8, IntermediateSize: 8, NumLayers: 1, NumHeads: 2, NumKVHeads: 1,
		HeadDim: 4, RMSNormEps: 1e-6, RopeTheta: 1e4, VocabSize: 260, MaxPositionEmbeddings: 128, MaskTokenID: 258, Attention: model.Causal}
	if err := model.Save(parent, model.NewParams[float32](c), nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range configs {
		name := filepath.Base(filepath.Dir(cfg)) + "-" + strings.TrimSuffix(filepath.Base(cfg), ".toml")
		t.Run(name, func(t *testing.T) {
			plan, err := sweep.LoadWith(cfg, branch.Overrides{Parent: parent})
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			plan.Print(&b)
			got := strings.ReplaceAll(b.String(), parent, "PARENT")
			golden := filepath.Join("testdata", "plan", name+".golden")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				os.WriteFile(golden, []byte(got), 0o644)
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("plan of %s changed:\n%s\nwant:\n%s", cfg, got, want)
			}
		})
	}
}
