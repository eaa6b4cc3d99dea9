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
	"container/heap"
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
	byteID [256]int32
	// merges maps a pair of ids (left<<32 | right) to rank<<32 | merged id, so that comparing
	// values compares ranks.
	merges map[uint64]uint64
	tokens [vocabSize][]byte // each id's bytes, for Decode
	cache  bytelevel.Cache
}

// Pieces longer than this are not cached (they are rare and would bloat the cache), and are
// merged with the heap-based algorithm, whose cost grows as n log n instead of n².
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

func key(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

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

	t := &Tokenizer{merges: make(map[uint64]uint64, numMerges), cache: bytelevel.Cache{Max: 1 << 17, MinPublish: 256}}
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
		t.byteID[b] = id
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
		t.merges[key(ia, ib)] = uint64(rank)<<32 | uint64(uint32(im))
	}
	return t, nil
}

// Encode returns the token ids of text. It never fails: every byte string has an encoding.
func (t *Tokenizer) Encode(text []byte) []int32 {
	out := make([]int32, 0, len(text)/3+1)
	for len(text) > 0 {
		n := nextPiece(text)
		out = t.appendPiece(out, text[:n])
		text = text[n:]
	}
	return out
}

func (t *Tokenizer) appendPiece(out []int32, piece []byte) []int32 {
	if len(piece) == 1 {
		return append(out, t.byteID[piece[0]])
	}
	if len(piece) > longPiece {
		return append(out, t.mergeLong(piece)...)
	}
	if ids, ok := t.cache.Get(piece); ok {
		return append(out, ids...)
	}
	ids := t.merge(piece)
	t.cache.Put(piece, ids)
	return append(out, ids...)
}

// merge applies GPT-2's BPE to one piece: repeatedly find the adjacent pair with the lowest merge
// rank and merge every occurrence of it, left to right, until no pair has a rank.
func (t *Tokenizer) merge(piece []byte) []int32 {
	parts := make([]int32, len(piece))
	for i, b := range piece {
		parts[i] = t.byteID[b]
	}
	for len(parts) > 1 {
		best, at := ^uint64(0), -1
		for i := 0; i+1 < len(parts); i++ {
			if m, ok := t.merges[key(parts[i], parts[i+1])]; ok && m < best {
				best, at = m, i
			}
		}
		if at < 0 {
			break
		}
		// at is the leftmost occurrence of the best pair.
		a, b, merged := parts[at], parts[at+1], int32(uint32(best))
		w := at
		for i := at; i < len(parts); w++ {
			if i+1 < len(parts) && parts[i] == a && parts[i+1] == b {
				parts[w] = merged
				i += 2
			} else {
				parts[w] = parts[i]
				i++
			}
		}
		parts = parts[:w]
	}
	return parts
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

// mergeLong computes the same result as merge with a heap of candidate pairs over a linked list
// of parts, so that a long piece (a run of thousands of letters or digits) costs n log n.
// Candidates pop in (rank, position) order, which merges every occurrence of the best pair left
// to right before any pair of a higher rank, as merge does: a merge only creates pairs with a
// merged token, whose ranks are higher than that of the pair that made it.
func (t *Tokenizer) mergeLong(piece []byte) []int32 {
	n := len(piece)
	ids := make([]int32, n) // -1 once a part has been merged into its left neighbour
	next := make([]int32, n)
	prev := make([]int32, n)
	for i, b := range piece {
		ids[i], next[i], prev[i] = t.byteID[b], int32(i+1), int32(i-1)
	}
	next[n-1] = -1
	h := &candidates{}
	push := func(i int32) {
		j := next[i]
		if j < 0 {
			return
		}
		if m, ok := t.merges[key(ids[i], ids[j])]; ok {
			heap.Push(h, candidate{rank: uint32(m >> 32), merged: int32(uint32(m)), pos: i, left: ids[i], right: ids[j]})
		}
	}
	for i := range int32(n - 1) {
		push(i)
	}
	for h.Len() > 0 {
		c := heap.Pop(h).(candidate)
		i := c.pos
		j := next[i]
		if ids[i] != c.left || j < 0 || ids[j] != c.right {
			continue // stale: one side has been merged since
		}
		ids[i], ids[j] = c.merged, -1
		next[i] = next[j]
		if next[j] >= 0 {
			prev[next[j]] = i
		}
		if prev[i] >= 0 {
			push(prev[i])
		}
		push(i)
	}
	var out []int32
	for i := int32(0); i >= 0; i = next[i] {
		out = append(out, ids[i])
	}
	return out
}

type candidate struct {
	rank        uint32
	merged      int32
	pos         int32
	left, right int32
}

type candidates []candidate

func (h candidates) Len() int { return len(h) }
func (h candidates) Less(i, j int) bool {
	return h[i].rank < h[j].rank || h[i].rank == h[j].rank && h[i].pos < h[j].pos
}
func (h candidates) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *candidates) Push(x any)   { *h = append(*h, x.(candidate)) }
func (h *candidates) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}
