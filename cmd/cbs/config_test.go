package main

import (
	"bytes"
	"flag"
	"fmt"
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

// TestConfigValidateAnalysis: `cbs config validate` refuses a bad [analysis] value with exit
// status 2, naming the file and the key.
func TestConfigValidateAnalysis(t *testing.T) {
	const base = `
[experiment]
name = "v"
[model]
hidden_size = 16
layers = 1
heads = 2
intermediate_size = 32
[data]
source = "synthetic"
seq_len = 16
[branches]
budget = "4Ki"
batch_sizes = ["256", "512"]
[eval]
every = "512"
tokens = "512"
[analysis]
`
	cases := []struct{ value, want string }{
		{"", ""},
		{"eps = -1", "analysis.eps = -1"},
		{"eps = 5", "analysis.eps = 5"},
		{"level = 7", "analysis.level = 7"},
		{"tau = 0", "analysis.tau = 0"},
		{"bootstrap = -1", "analysis.bootstrap = -1"},
		{`metric = "x"`, `analysis.metric = "x"`},
		{"eps_abs = -1", "analysis.eps_abs = -1"},
	}
	for _, tc := range cases {
		path := filepath.Join(t.TempDir(), "sweep.toml")
		if err := os.WriteFile(path, []byte(base+tc.value+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := runCaptured(t, "config", "validate", path)
		if tc.want == "" {
			if code != exitOK {
				t.Errorf("valid config: exit %d: %s", code, out)
			}
			continue
		}
		if code != exitUsage || !strings.Contains(out, path+": "+tc.want) {
			t.Errorf("%s: exit %d, %q; want exit %d naming %q", tc.value, code, out, exitUsage, path+": "+tc.want)
		}
	}
}

// TestConfigValidateModel: a sweep that builds its own model is refused at validation, with the
// key named, for what training would refuse later: a bad architecture, a size past the machine's
// memory, a negative seed.
func TestConfigValidateModel(t *testing.T) {
	const sweepText = `
[experiment]
name = "v"
seed = %s
[model]
hidden_size = %s
layers = %s
heads = %s
kv_heads = %s
intermediate_size = 32
[data]
source = "synthetic"
seq_len = 16
[branches]
budget = "4Ki"
batch_sizes = ["256", "512"]
[eval]
every = "512"
tokens = "512"
`
	cases := []struct{ seed, hidden, layers, heads, kv, want string }{
		{"1", "16", "1", "2", "1", ""},
		{"-3", "16", "1", "2", "1", "experiment.seed = -3"},
		{"1", "16", "-1", "2", "1", "model.layers"},
		{"1", "16", "1", "0", "1", "model.heads"},
		{"1", "16", "1", "4", "3", "model.kv_heads"},
		{"1", "1000000000", "1", "2", "1", "model.hidden_size"},
	}
	for _, tc := range cases {
		path := filepath.Join(t.TempDir(), "sweep.toml")
		text := fmt.Sprintf(sweepText, tc.seed, tc.hidden, tc.layers, tc.heads, tc.kv)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := runCaptured(t, "config", "validate", path)
		switch {
		case tc.want == "" && code != exitOK:
			t.Errorf("valid config: exit %d: %s", code, out)
		case tc.want != "" && (code != exitUsage || !strings.Contains(out, tc.want)):
			t.Errorf("%+v: exit %d, %q; want %d naming %q", tc, code, out, exitUsage, tc.want)
		}
	}
}

// TestConfigValidateSize: a sweep that would not fit in the machine's memory, or whose ladder
// of replicates no machine runs, is refused at validation with the numbers, not when it starts.
func TestConfigValidateSize(t *testing.T) {
	const sweepText = `
[experiment]
name = "v"
[model]
hidden_size = 16
layers = 1
heads = 2
kv_heads = 1
intermediate_size = 32
[data]
source = "synthetic"
seq_len = 1024
[branches]
budget = "%s"
batch_sizes = ["%s"]
micro_batch = %d
replicates = %d
[eval]
every = "%s"
tokens = "1Ki"
`
	cases := []struct {
		batch      string
		micro, rep int
		want       string
	}{
		{"8Ki", 8, 1, ""},
		{"64Mi", 65536, 1, "of memory for 1 branches at a time"},
		{"8Ki", 8, 100000000, "branches.replicates = 100000000, want 1 to 1000"},
	}
	for _, tc := range cases {
		path := filepath.Join(t.TempDir(), "sweep.toml")
		text := fmt.Sprintf(sweepText, tc.batch, tc.batch, tc.micro, tc.rep, tc.batch)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := runCaptured(t, "config", "validate", path)
		switch {
		case tc.want == "" && code != exitOK:
			t.Errorf("valid config: exit %d: %s", code, out)
		case tc.want != "" && (code != exitUsage || !strings.Contains(out, tc.want)):
			t.Errorf("%+v: exit %d, %q; want %d naming %q", tc, code, out, exitUsage, tc.want)
		}
	}
}

// TestConfigValidateData: a corpus that is not there is refused at validation, with the path
// as given and as resolved.
func TestConfigValidateData(t *testing.T) {
	const sweepText = `
[experiment]
name = "v"
[model]
hidden_size = 16
layers = 1
heads = 2
kv_heads = 1
intermediate_size = 32
[data]
%s
seq_len = 16
[branches]
budget = "4Ki"
batch_sizes = ["256", "512"]
[eval]
every = "512"
tokens = "512"
`
	cases := []struct{ data, want string }{
		{"source = \"npy\"\npath = \"missing.npy\"", `data.path = "missing.npy": no such file or directory`},
		{"source = \"files\"\nglob = \"texts/*.txt\"", `data.glob = "texts/*.txt" matches no file`},
		{"source = \"synthetic\"\ntokenizer = \"nope\"", `unknown tokenizer "nope"`},
	}
	for _, tc := range cases {
		path := filepath.Join(t.TempDir(), "sweep.toml")
		if err := os.WriteFile(path, []byte(fmt.Sprintf(sweepText, tc.data)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := runCaptured(t, "config", "validate", path)
		if code != exitUsage || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, %q; want %d naming %q", tc.data, code, out, exitUsage, tc.want)
		}
	}
}
