package data

import (
	"errors"
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
