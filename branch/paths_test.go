package branch

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTokenizerPathResolvesAgainstConfig: a tokenizer.json named in a config is found from the
// config's folder, wherever cbs runs from, and the spec names it by its absolute path.
func TestTokenizerPathResolvesAgainstConfig(t *testing.T) {
	dir := t.TempDir()
	tok, err := os.ReadFile(filepath.Join("..", "data", "hftok", "testdata", "tiny.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "cfg", "tok"), 0o755)
	os.WriteFile(filepath.Join(dir, "cfg", "tok", "tokenizer.json"), tok, 0o644)
	os.WriteFile(filepath.Join(dir, "cfg", "a.txt"), []byte("some text to train on\n"), 0o644)
	cfg := filepath.Join(dir, "cfg", "train.toml")
	os.WriteFile(cfg, []byte(`[model]
hidden_size = 8
layers = 1
heads = 2
intermediate_size = 16

[data]
source = "files"
glob = "*.txt"
tokenizer = "tok/tokenizer.json"
seq_len = 8

[train]
budget = 64
batch = 16
`), 0o644)
	spec, _, err := LoadTrainConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "cfg", "tok", "tokenizer.json"); spec.Data.Tokenizer != want {
		t.Errorf("tokenizer = %s, want %s", spec.Data.Tokenizer, want)
	}
}
