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
			// The plan names resolved, absolute paths; the golden file names them from the
			// repository's root.
			root, _ := filepath.Abs(filepath.Join("..", ".."))
			got := strings.ReplaceAll(strings.ReplaceAll(b.String(), parent, "PARENT"), root+string(filepath.Separator), "")
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
// validSweep is a small sweep that config validate accepts; the tests below replace one line of
// it (or add one to [analysis]) and check that validation refuses the result.
const validSweep = `
[experiment]
name = "v"
seed = 1
[model]
hidden_size = 16
layers = 1
heads = 2
kv_heads = 1
intermediate_size = 32
[data]
source = "synthetic"
seq_len = 16
[branches]
budget = "4Ki"
batch_sizes = ["256", "512"]
micro_batch = 16
replicates = 1
[eval]
every = "512"
tokens = "512"
[analysis]
`

// validateCase is validSweep with each of edits (old line -> new text) applied; want is a phrase
// of the refusal, which must name the config file first, or "" for a config that passes.
type validateCase struct {
	edits map[string]string
	want  string
	// direct asks for want right after the file's name, as the [analysis] checks word it.
	direct bool
}

func checkValidate(t *testing.T, cases []validateCase) {
	t.Helper()
	for _, tc := range cases {
		text := validSweep
		for old, repl := range tc.edits {
			if !strings.Contains(text, old) {
				t.Fatalf("validSweep has no %q", old)
			}
			text = strings.Replace(text, old, repl, 1)
		}
		path := filepath.Join(t.TempDir(), "sweep.toml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := runCaptured(t, "config", "validate", path)
		switch {
		case tc.want == "" && code != exitOK:
			t.Errorf("%v: valid config: exit %d: %s", tc.edits, code, out)
		case tc.want != "" && tc.direct && (code != exitUsage || !strings.Contains(out, path+": "+tc.want)):
			t.Errorf("%v: exit %d, %q; want %d naming %q", tc.edits, code, out, exitUsage, path+": "+tc.want)
		case tc.want != "" && !tc.direct && (code != exitUsage || !strings.Contains(out, path+": ") || !strings.Contains(out, tc.want)):
			t.Errorf("%v: exit %d, %q; want %d naming %s and %q", tc.edits, code, out, exitUsage, path, tc.want)
		}
	}
}

// TestConfigValidateAnalysis: every bad [analysis] value is refused with its key.
func TestConfigValidateAnalysis(t *testing.T) {
	var cases []validateCase
	for _, c := range []struct{ value, want string }{
		{"", ""},
		{"eps = -1", "analysis.eps = -1"},
		{"eps = 5", "analysis.eps = 5"},
		{"level = 7", "analysis.level = 7"},
		{"tau = 0", "analysis.tau = 0"},
		{"bootstrap = -1", "analysis.bootstrap = -1"},
		{`metric = "x"`, `analysis.metric = "x"`},
		{"eps_abs = -1", "analysis.eps_abs = -1"},
	} {
		cases = append(cases, validateCase{map[string]string{"[analysis]\n": "[analysis]\n" + c.value + "\n"}, c.want, true})
	}
	checkValidate(t, cases)
}

// TestConfigValidateModel: what training would refuse later is refused at validation, with the key
// named: a bad architecture, a size past the machine's memory, a negative seed.
func TestConfigValidateModel(t *testing.T) {
	checkValidate(t, []validateCase{
		{map[string]string{"seed = 1": "seed = -3"}, "experiment.seed = -3", false},
		{map[string]string{"layers = 1": "layers = -1"}, "model.layers", false},
		{map[string]string{"heads = 2": "heads = 0"}, "model.heads", false},
		{map[string]string{"heads = 2": "heads = 4", "kv_heads = 1": "kv_heads = 3"}, "model.kv_heads", false},
		{map[string]string{"hidden_size = 16": "hidden_size = 1000000000"}, "model.hidden_size", false},
	})
}

// TestConfigValidateSize: a sweep that would not fit in the machine's memory, or whose replicates
// no machine runs, is refused at validation with the numbers, not when it starts.
func TestConfigValidateSize(t *testing.T) {
	big := map[string]string{"seq_len = 16": "seq_len = 1024", `budget = "4Ki"`: `budget = "64Mi"`,
		`batch_sizes = ["256", "512"]`: `batch_sizes = ["64Mi"]`, "micro_batch = 16": "micro_batch = 65536",
		`every = "512"`: `every = "64Mi"`, `tokens = "512"`: `tokens = "1Ki"`}
	checkValidate(t, []validateCase{
		{big, "of memory for 1 branches at a time", false},
		{map[string]string{"replicates = 1": "replicates = 100000000"}, "branches.replicates = 100000000, want 1 to 1000", false},
	})
}

// TestConfigValidateData: a corpus that is not there is refused at validation, with the path as
// given and as resolved.
func TestConfigValidateData(t *testing.T) {
	checkValidate(t, []validateCase{
		{map[string]string{`source = "synthetic"`: "source = \"npy\"\npath = \"missing.npy\""}, `data.path = "missing.npy": no such file or directory`, true},
		{map[string]string{`source = "synthetic"`: "source = \"files\"\nglob = \"texts/*.txt\""}, `data.glob = "texts/*.txt" matches no file`, true},
		{map[string]string{`source = "synthetic"`: "source = \"synthetic\"\ntokenizer = \"nope\""}, `unknown tokenizer "nope"`, false},
	})
}

// TestConfigReference: docs/config.md is what `cbs config keys --markdown` prints, so the
// reference follows the decoders' types; every key has a meaning; the examples in it are
// configs `cbs config validate` accepts.
func TestConfigReference(t *testing.T) {
	got := configReferenceMarkdown()
	path := filepath.Join("..", "..", "docs", "config.md")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("docs/config.md differs from `cbs config keys --markdown`: run go test ./cmd/cbs -run TestConfigReference -update")
	}
	tables := map[string]bool{}
	for _, tb := range configTables {
		tables[tb.name] = true
	}
	for _, k := range referenceKeys() {
		if k.Doc == "" {
			t.Errorf("%s has no doc tag", k.Path())
		}
		if !tables[k.Table] {
			t.Errorf("%s: table [%s] is not in configTables", k.Path(), k.Table)
		}
	}

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "corpus"), 0o755)
	os.WriteFile(filepath.Join(dir, "corpus", "a.txt"), bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), 4000), 0o644)
	train := filepath.Join(dir, "train.toml")
	os.WriteFile(train, []byte(exampleTrain), 0o644)
	if _, _, err := branch.LoadTrainConfig(train); err != nil {
		t.Errorf("the train example is refused: %v", err)
	}
	parent := filepath.Join(dir, "runs", "base", "ckpt")
	c := model.Config{ModelType: "qwen3", HiddenSize: 8, IntermediateSize: 8, NumLayers: 1, NumHeads: 2, NumKVHeads: 1,
		HeadDim: 4, RMSNormEps: 1e-6, RopeTheta: 1e4, VocabSize: 260, MaxPositionEmbeddings: 128, MaskTokenID: 258, Attention: model.Causal}
	if err := model.Save(parent, model.NewParams[float32](c), nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	sw := filepath.Join(dir, "sweep.toml")
	os.WriteFile(sw, []byte(exampleSweep), 0o644)
	if _, err := sweep.Load(sw); err != nil {
		t.Errorf("the sweep example is refused: %v", err)
	}
}

// TestConfigKeys: `cbs config keys` prints one table or all, and names the closest table for a
// typo with exit status 2.
func TestConfigKeys(t *testing.T) {
	code, out, _ := cbs(t, "config", "keys", "branches")
	if code != 0 || !strings.Contains(out, "batch_sizes: list of tokens, default required") || strings.Contains(out, "[run]") {
		t.Errorf("config keys branches: rc %d\n%s", code, out)
	}
	code, _, errOut := cbs(t, "config", "keys", "branch")
	if code != 2 || !strings.Contains(errOut, "did you mean [branches]?") {
		t.Errorf("config keys branch: rc %d, %s", code, errOut)
	}
}

// TestConfigValidateKinds: config validate tells a train config from a sweep config and checks
// each as its verb would.
func TestConfigValidateKinds(t *testing.T) {
	code, out, stderr := cbs(t, "config", "validate", "../../experiments/train-goroot/ar.toml")
	if code != 0 || !strings.Contains(out, "ok, a train config") {
		t.Errorf("train config: exit %d\n%s%s", code, out, stderr)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "train.toml")
	os.WriteFile(bad, []byte(strings.Replace(mustRead(t, "../../experiments/train-goroot/ar.toml"), "[train]", "[train]\nbatchsize = 1", 1)), 0o644)
	if code, _, stderr := cbs(t, "config", "validate", bad); code != exitUsage || !strings.Contains(stderr, "unknown key train.batchsize: did you mean train.batch?") {
		t.Errorf("bad train config: exit %d, %s", code, stderr)
	}
}
