package data

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestByteTokenizer(t *testing.T) {
	tok, err := NewTokenizer("byte")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Name() != "byte" || tok.VocabSize() != 260 {
		t.Fatalf("name %q vocab %d, want byte 260", tok.Name(), tok.VocabSize())
	}
	specials := []struct {
		name string
		got  int32
		want int32
	}{{"BOS", tok.BOS(), 256}, {"EOS", tok.EOS(), 257}, {"Mask", tok.Mask(), 258}, {"Pad", tok.Pad(), 259}}
	for _, s := range specials {
		if s.got != s.want {
			t.Errorf("%s = %d, want %d", s.name, s.got, s.want)
		}
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	ids := tok.Encode(all)
	for i, id := range ids {
		if id != int32(i) {
			t.Fatalf("Encode byte %d = %d", i, id)
		}
	}
	if got := tok.Decode(ids); got != string(all) {
		t.Errorf("Decode(Encode(all bytes)) differs")
	}
	decodes := []struct {
		ids  []int32
		want string
	}{
		{[]int32{256, 'h', 'i', 258, 257, 259}, "<|bos|>hi<|mask|><|eos|><|pad|>"},
		{[]int32{-1, 260}, "\ufffd\ufffd"},
		{nil, ""},
	}
	for _, d := range decodes {
		if got := tok.Decode(d.ids); got != d.want {
			t.Errorf("Decode(%v) = %q, want %q", d.ids, got, d.want)
		}
	}
}

func TestTokenizerRegistry(t *testing.T) {
	_, err := NewTokenizer("nope")
	if err == nil || !strings.Contains(err.Error(), `unknown tokenizer "nope" (allowed: byte`) {
		t.Errorf("unknown name: err = %v", err)
	}
	if _, err := NewTokenizer("gpt2"); err != nil && !strings.Contains(err.Error(), "cbs/data/bpe") {
		t.Errorf("unlinked gpt2: err = %v, want a hint naming cbs/data/bpe", err)
	}

	RegisterTokenizer("test-bytes", func() (Tokenizer, error) { return ByteTokenizer{}, nil })
	broken := errors.New("vocabulary file missing")
	RegisterTokenizer("test-broken", func() (Tokenizer, error) { return nil, broken })
	if tok, err := NewTokenizer("test-bytes"); err != nil || tok.VocabSize() != 260 {
		t.Errorf("registered tokenizer: %v, %v", tok, err)
	}
	if _, err := NewTokenizer("test-broken"); !errors.Is(err, broken) {
		t.Errorf("constructor error not wrapped: %v", err)
	}
	names := strings.Join(TokenizerNames(), ",")
	if !strings.Contains(names, "byte") || !strings.Contains(names, "test-bytes") {
		t.Errorf("TokenizerNames() = %s", names)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("registering byte twice did not panic")
			}
		}()
		RegisterTokenizer("byte", func() (Tokenizer, error) { return ByteTokenizer{}, nil })
	}()
}

// TestTokenizerFile: a path names a Hugging Face tokenizer.json, by its extension or because
// the file exists; a files corpus tokenized with it ends every document with its EOS and is
// cached under its name.
func TestTokenizerFile(t *testing.T) {
	const path = "hftok/testdata/tiny.json"
	tok, err := NewTokenizer(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Name(), "hf-") || len(tok.Name()) != 19 {
		t.Errorf("Name() = %q, want hf- and 16 hex digits", tok.Name())
	}
	if got := tok.Decode(tok.Encode([]byte("doc<|endoftext|>"))); got != "doc<|endoftext|>" {
		t.Errorf("round trip gives %q", got)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plain := filepath.Join(dir, "qwen-tokenizer")
	if err := os.WriteFile(plain, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if same, err := NewTokenizer(plain); err != nil || same.Name() != tok.Name() {
		t.Errorf("the same file without .json: %v, %v", same, err)
	}
	if _, err := NewTokenizer(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: err = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"model": {"type": "WordPiece"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewTokenizer(filepath.Join(dir, "bad.json")); err == nil || !strings.Contains(err.Error(), "model.type") {
		t.Errorf("unsupported file: err = %v", err)
	}

	docs := filepath.Join(dir, "docs")
	if err := os.Mkdir(docs, 0o755); err != nil {
		t.Fatal(err)
	}
	texts := []string{"The café's menu.\n", "日本語のテキスト\n", "func main() {\n\treturn\n}\n"}
	for i, text := range texts {
		if err := os.WriteFile(filepath.Join(docs, fmt.Sprintf("%d.txt", i)), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var want []int32
	for _, text := range texts {
		want = append(append(want, tok.Encode([]byte(text))...), tok.EOS())
	}
	cfg := SourceConfig{Source: SourceFiles, Glob: filepath.Join(docs, "*.txt"), SeqLen: 4, Tokenizer: path, CacheDir: filepath.Join(dir, "cache")}
	for range 2 { // tokenized, then read from the cache
		c, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := allTokens(c); !slices.Equal(got, want[:len(want)/4*4]) {
			t.Errorf("tokens %q, want %q", tok.Decode(got), tok.Decode(want))
		}
		if c.Info().Tokenizer != tok.Name() {
			t.Errorf("corpus tokenizer %q, want %q", c.Info().Tokenizer, tok.Name())
		}
	}
	shards, _ := filepath.Glob(filepath.Join(dir, "cache", "files-"+tok.Name()+"-*.shard"))
	if len(shards) != 1 {
		t.Errorf("cache holds %v, want one shard named after %s", shards, tok.Name())
	}
}
