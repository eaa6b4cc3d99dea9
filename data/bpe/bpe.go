// Package bpe is GPT-2's byte-level BPE tokenizer in pure Go, with the vocabulary embedded.
//
// It reproduces the reference encoder exactly on valid UTF-8 text (the tests compare with the
// JavaScript implementation that ships the same vocabulary), and it is lossless on any byte
// string: Decode(Encode(b)) == b, invalid UTF-8 included, because BPE runs on bytes.
//
// The vocabulary is GPT-2's 50257 tokens, <|endoftext|> (50256) last, which serves as both BOS
// and EOS. cbs adds two ids after it, which the text encoder never produces: MASK (50257), the
// masked-diffusion mask token, and PAD (50258). VocabSize is therefore 50259. The text
// "<|endoftext|>" in the input is encoded as ordinary text, not as the special token, so a
// corpus cannot inject control tokens.
//
// Importing the package registers the tokenizer as "gpt2" with cbs/data.
package bpe

import (
	"compress/gzip"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"cbs/data/internal/bytelevel"
)

// Special token ids.
const (
	EndOfText int32 = 50256 // <|endoftext|>, BOS and EOS
	MaskID    int32 = 50257 // <|mask|>, added by cbs
	PadID     int32 = 50258 // <|pad|>, added by cbs

	vocabSize = 50259
	numMerges = 50000
)

// encoder.json and vocab.bpe are GPT-2's files, gzipped; see NOTICE.
//
//go:embed encoder.json.gz vocab.bpe.gz
var files embed.FS

// Tokenizer is GPT-2's byte-level BPE. It is safe for concurrent use.
type Tokenizer struct {
	bpe    bytelevel.BPE
	tokens [vocabSize][]byte // each id's bytes, for Decode
}

// longPiece is the longest piece whose ids are cached.
const longPiece = 64

var (
	loadOnce sync.Once
	shared   *Tokenizer
	loadErr  error
)

// GPT2 returns the GPT-2 tokenizer. The vocabulary is decoded on the first call (about a tenth
// of a second); every call returns the same Tokenizer.
func GPT2() (*Tokenizer, error) {
	loadOnce.Do(func() { shared, loadErr = load() })
	return shared, loadErr
}

// Name is the name the tokenizer is registered under.
func (t *Tokenizer) Name() string { return "gpt2" }

// VocabSize is 50259: GPT-2's 50257 tokens, then MASK and PAD.
func (t *Tokenizer) VocabSize() int { return vocabSize }

// BOS is <|endoftext|>, which GPT-2 uses between documents.
func (t *Tokenizer) BOS() int32 { return EndOfText }

// EOS is <|endoftext|>, the same id as BOS.
func (t *Tokenizer) EOS() int32 { return EndOfText }

// Mask is the masked-diffusion mask token, 50257.
func (t *Tokenizer) Mask() int32 { return MaskID }

// Pad is the padding token, 50258.
func (t *Tokenizer) Pad() int32 { return PadID }

func readGz(name string) ([]byte, error) {
	f, err := files.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

func load() (*Tokenizer, error) {
	encJSON, err := readGz("encoder.json.gz")
	if err != nil {
		return nil, err
	}
	mergesText, err := readGz("vocab.bpe.gz")
	if err != nil {
		return nil, err
	}
	var encoder map[string]int32
	if err := json.Unmarshal(encJSON, &encoder); err != nil {
		return nil, fmt.Errorf("encoder.json: %w", err)
	}
	if len(encoder) != int(EndOfText)+1 || encoder["<|endoftext|>"] != EndOfText {
		return nil, fmt.Errorf("encoder.json: %d tokens, <|endoftext|> = %d; want %d tokens ending with it", len(encoder), encoder["<|endoftext|>"], EndOfText+1)
	}

	t := &Tokenizer{bpe: bytelevel.BPE{Merges: make(map[uint64]uint64, numMerges), Cache: bytelevel.Cache{Max: 1 << 17, MinPublish: 256}, LongPiece: longPiece}}
	toRune := bytelevel.Runes
	fromRune := make(map[rune]byte, 256)
	for b, r := range toRune {
		fromRune[r] = byte(b)
	}
	for s, id := range encoder {
		if id < 0 || id > EndOfText || t.tokens[id] != nil {
			return nil, fmt.Errorf("encoder.json: token %q has id %d, out of range or taken", s, id)
		}
		if id == EndOfText {
			t.tokens[id] = []byte(s)
			continue
		}
		raw := make([]byte, 0, len(s))
		for _, r := range s {
			b, ok := fromRune[r]
			if !ok {
				return nil, fmt.Errorf("encoder.json: token %q holds %U, outside the byte mapping", s, r)
			}
			raw = append(raw, b)
		}
		t.tokens[id] = raw
	}
	t.tokens[MaskID] = []byte("<|mask|>")
	t.tokens[PadID] = []byte("<|pad|>")
	for b, r := range toRune {
		id, ok := encoder[string(r)]
		if !ok {
			return nil, fmt.Errorf("encoder.json: no token for byte %#02x", b)
		}
		t.bpe.ByteID[b] = id
	}

	// vocab.bpe: a version line, then one merge per line in rank order, then an empty line.
	lines := strings.Split(string(mergesText), "\n")
	if len(lines) != numMerges+2 || !strings.HasPrefix(lines[0], "#version") || lines[len(lines)-1] != "" {
		return nil, fmt.Errorf("vocab.bpe: %d lines, want a version line, %d merges and a final newline", len(lines), numMerges)
	}
	for rank, line := range lines[1 : numMerges+1] {
		a, b, ok := strings.Cut(line, " ")
		ia, oka := encoder[a]
		ib, okb := encoder[b]
		im, okm := encoder[a+b]
		if !ok || !oka || !okb || !okm {
			return nil, fmt.Errorf("vocab.bpe: line %d: merge %q of tokens not in encoder.json", rank+2, line)
		}
		t.bpe.Merges[bytelevel.PairKey(ia, ib)] = uint64(rank)<<32 | uint64(uint32(im))
	}
	return t, nil
}

// Encode returns the token ids of text. It never fails: every byte string has an encoding.
func (t *Tokenizer) Encode(text []byte) []int32 {
	out := make([]int32, 0, len(text)/3+1)
	for len(text) > 0 {
		n := nextPiece(text)
		out = t.bpe.AppendPiece(out, text[:n])
		text = text[n:]
	}
	return out
}

// Decode returns the text of ids. BOS/EOS decodes as "<|endoftext|>", MASK as "<|mask|>", PAD as
// "<|pad|>", and an id outside the vocabulary as U+FFFD. The result is not necessarily valid
// UTF-8, since tokens are bytes: decoding the ids of any byte string gives that byte string back.
func (t *Tokenizer) Decode(ids []int32) string {
	var b strings.Builder
	for _, id := range ids {
		if id < 0 || int(id) >= vocabSize {
			b.WriteRune(utf8.RuneError)
			continue
		}
		b.Write(t.tokens[id])
	}
	return b.String()
}

// TokenBytes returns the bytes token id stands for, and false for an id outside the vocabulary.
// The result must not be modified.
func (t *Tokenizer) TokenBytes(id int32) ([]byte, bool) {
	if id < 0 || int(id) >= vocabSize {
		return nil, false
	}
	return t.tokens[id], true
}
