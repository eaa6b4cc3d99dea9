// Package hftok loads a byte-level BPE tokenizer from a Hugging Face tokenizer.json, the format
// Qwen2 and Qwen3 ship their tokenizers in, and encodes with it in pure Go; the structures of
// GPT-2's and Llama 3's files are supported too. It reproduces the Hugging Face tokenizers library's encoding (the tests compare it with an
// independent JavaScript implementation on Qwen3's tokenizer.json): added tokens are matched
// first (leftmost, longest), the rest is normalized, cut by the pre-tokenizer's pattern, mapped
// to bytes and merged by rank. Encode adds no BOS or EOS of its own (as add_special_tokens=False
// would), whatever the post_processor says.
//
// # What a tokenizer.json may hold
//
//   - model: BPE over the 256 byte-level symbols (each must be in the vocab, so unk_token is
//     never needed), merges as ["a", "b"] pairs or "a b" strings, ignore_merges honoured; no
//     byte_fallback, dropout, continuing_subword_prefix or end_of_word_suffix.
//   - normalizer: none, NFC, NFD, NFKC, NFKD or a Sequence of them.
//   - pre_tokenizer: Split on Qwen2's pattern (or Llama 3's) with behavior Isolated, then
//     ByteLevel with use_regex false; or ByteLevel alone with use_regex (GPT-2's pattern). In
//     both, add_prefix_space false. See split.go for how the patterns are matched.
//   - decoder: ByteLevel, or none.
//   - added_tokens: every one is matched in the input, special or not, before normalization
//     (normalized false) or in the normalized text (normalized true), with single_word, lstrip
//     and rstrip as in Hugging Face tokenizers. The text "<|endoftext|>" in a document is
//     therefore encoded as that token, as the reference library does.
//
// Anything else is refused when the file is loaded, with the field named.
//
// # Ids for cbs
//
// VocabSize counts every id of the file, added tokens included (the highest id plus one), plus
// the ids cbs appends. EOS, the document separator of text corpora, is the first of
// <|endoftext|>, <|end_of_text|>, </s> and <eos> that the file lists among its added tokens
// (ordinary vocab entries do not count: Qwen's vocab has a plain "<s>"); BOS is the first of
// <|begin_of_text|>, <s> and <bos> listed there, else EOS. MASK (the masked-diffusion mask
// token) is the added token <|mask|> and PAD the added token <|pad|> when the file has them;
// each of EOS, MASK and PAD the file lacks gets a new id after the file's, in that order, which
// text never encodes to and which decodes as its name. For Qwen3's tokenizer.json (151643
// vocab tokens and 26 added tokens, ids 0 to 151668) that makes EOS = BOS = 151643
// (<|endoftext|>), MASK = 151669, PAD = 151670 and VocabSize 151671.
//
// Decode writes each vocab token's bytes and each added token's content, so decoding the ids of
// a valid UTF-8 text gives the text back as the normalizer leaves it (NFC for Qwen: text already
// in NFC comes back unchanged). Encode accepts any bytes: a byte that is not valid UTF-8 passes
// normalization unchanged and is a character of its own in the pattern, so it still round-trips.
//
// The tokenizer's Name is "hf-" followed by the first 16 hex digits of the SHA-256 of the
// tokenizer.json file, so fingerprints and cache keys change with its content.
package hftok

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"cbs/data/internal/bytelevel"
)

// Tokenizer is a byte-level BPE tokenizer loaded from a tokenizer.json. It is safe for
// concurrent use.
type Tokenizer struct {
	name string
	bpe  bytelevel.BPE
	// whole maps a vocab token's bytes to its id, when ignore_merges lets a piece that is a
	// token skip the merges.
	whole     map[string]int32
	tokens    [][]byte // each id's bytes, for Decode; nil for an unused id
	forms     []norm.Form
	split     func([]byte) int
	raw       *matcher // added tokens matched before normalization
	norm      *matcher // added tokens matched in the normalized text
	bos, eos  int32
	mask, pad int32
}

var (
	loadMu sync.Mutex
	loaded = map[[sha256.Size]byte]*Tokenizer{}
)

// Load reads and parses a tokenizer.json file. Files with the same content share one Tokenizer
// (and its cache of merged pieces), however often and under whatever path they are loaded.
func Load(path string) (*Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse builds the tokenizer a tokenizer.json's content describes; see the package comment for
// what it supports.
func Parse(content []byte) (*Tokenizer, error) {
	sum := sha256.Sum256(content)
	loadMu.Lock()
	defer loadMu.Unlock()
	if t, ok := loaded[sum]; ok {
		return t, nil
	}
	t, err := parse(content)
	if err != nil {
		return nil, err
	}
	t.name = "hf-" + hex.EncodeToString(sum[:8])
	loaded[sum] = t
	return t, nil
}

// Name is "hf-" and the first 16 hex digits of the SHA-256 of the tokenizer.json.
func (t *Tokenizer) Name() string { return t.name }

// VocabSize is the number of ids: the file's (added tokens included) and any cbs appended.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// BOS is the beginning-of-text token; EOS when the file has none.
func (t *Tokenizer) BOS() int32 { return t.bos }

// EOS is the end-of-text token, which separates the documents of a text corpus.
func (t *Tokenizer) EOS() int32 { return t.eos }

// Mask is the masked-diffusion mask token.
func (t *Tokenizer) Mask() int32 { return t.mask }

// Pad is the padding token.
func (t *Tokenizer) Pad() int32 { return t.pad }

// TokenBytes returns the bytes id decodes to, and false for an id that decodes to nothing. The
// result must not be modified.
func (t *Tokenizer) TokenBytes(id int32) ([]byte, bool) {
	if id < 0 || int(id) >= len(t.tokens) || t.tokens[id] == nil {
		return nil, false
	}
	return t.tokens[id], true
}

// Encode returns the token ids of text. It never fails: every byte string has an encoding.
func (t *Tokenizer) Encode(text []byte) []int32 {
	out := make([]int32, 0, len(text)/4+4)
	var buf [4]segment
	for _, s := range t.raw.split(buf[:0], text) {
		if s.tok != nil {
			out = append(out, s.tok.ID)
			continue
		}
		normalized := t.normalize(s.text)
		if t.norm.empty {
			out = t.encodeText(out, normalized)
			continue
		}
		var buf2 [4]segment
		for _, s2 := range t.norm.split(buf2[:0], normalized) {
			if s2.tok != nil {
				out = append(out, s2.tok.ID)
			} else {
				out = t.encodeText(out, s2.text)
			}
		}
	}
	return out
}

// normalize applies the normalizer. Text that is already normalized (all ASCII text is, for
// every supported form) is returned as it is.
func (t *Tokenizer) normalize(s []byte) []byte {
	for _, f := range t.forms {
		if f.QuickSpan(s) < len(s) {
			s = f.Bytes(s)
		}
	}
	return s
}

func (t *Tokenizer) encodeText(out []int32, text []byte) []int32 {
	for len(text) > 0 {
		n := t.split(text)
		out = t.appendPiece(out, text[:n])
		text = text[n:]
	}
	return out
}

// appendPiece appends the ids of piece: a vocab token's own id where ignore_merges lets a
// piece that is a token skip the merges, else its merges'.
func (t *Tokenizer) appendPiece(out []int32, piece []byte) []int32 {
	if t.whole != nil && len(piece) > 1 {
		if id, ok := t.whole[string(piece)]; ok {
			return append(out, id)
		}
	}
	return t.bpe.AppendPiece(out, piece)
}

// Decode returns the bytes of ids as a string: each vocab token's bytes, each added token's
// content, the names of the ids cbs appended, and U+FFFD for an id outside the vocabulary. The
// result need not be valid UTF-8: decoding the ids of any byte string gives the normalized
// string back.
func (t *Tokenizer) Decode(ids []int32) string {
	var b strings.Builder
	b.Grow(4 * len(ids))
	for _, id := range ids {
		if id < 0 || int(id) >= len(t.tokens) || t.tokens[id] == nil {
			b.WriteRune(utf8.RuneError)
			continue
		}
		b.Write(t.tokens[id])
	}
	return b.String()
}

var runeBytes = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	for b, r := range bytelevel.Runes {
		m[r] = byte(b)
	}
	return m
}()

// tokenBytes maps a vocab token back to the bytes its symbols stand for. A token with a symbol
// outside the alphabet decodes to its own UTF-8 text, as the reference ByteLevel decoder does.
func tokenBytes(s string) []byte {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		c, ok := runeBytes[r]
		if !ok {
			return []byte(s)
		}
		b = append(b, c)
	}
	return b
}

// The JSON of a tokenizer.json, as far as it is read.
type fileJSON struct {
	AddedTokens  []addedToken    `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Decoder      json.RawMessage `json:"decoder"`
	Model        *modelJSON      `json:"model"`
}

type modelJSON struct {
	Type                    string           `json:"type"`
	Vocab                   map[string]int64 `json:"vocab"`
	Merges                  json.RawMessage  `json:"merges"`
	Dropout                 *float64         `json:"dropout"`
	ContinuingSubwordPrefix *string          `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string          `json:"end_of_word_suffix"`
	ByteFallback            bool             `json:"byte_fallback"`
	IgnoreMerges            bool             `json:"ignore_merges"`
}

// component is a normalizer, pre-tokenizer or decoder: a type and its fields.
type component struct {
	Type           string            `json:"type"`
	Normalizers    []json.RawMessage `json:"normalizers"`
	PreTokenizers  []json.RawMessage `json:"pretokenizers"`
	Decoders       []json.RawMessage `json:"decoders"`
	Pattern        *splitPattern     `json:"pattern"`
	Behavior       string            `json:"behavior"`
	Invert         bool              `json:"invert"`
	AddPrefixSpace *bool             `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
}

type splitPattern struct {
	Regex  *string `json:"Regex"`
	String *string `json:"String"`
}

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

// flatten decodes a component and expands Sequences, whose members list is picked by members.
func flatten(raw json.RawMessage, members func(*component) []json.RawMessage) ([]component, error) {
	if isNull(raw) {
		return nil, nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	if c.Type != "Sequence" {
		return []component{c}, nil
	}
	var out []component
	for _, m := range members(&c) {
		sub, err := flatten(m, members)
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}

func parse(content []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(content, &f); err != nil {
		return nil, fmt.Errorf("not a tokenizer.json: %w", err)
	}
	m := f.Model
	if err := checkModel(m); err != nil {
		return nil, err
	}
	t := &Tokenizer{bpe: bytelevel.BPE{Merges: make(map[uint64]uint64), Cache: bytelevel.Cache{Max: 1 << 18, MinPublish: 512}, LongPiece: longPiece}}
	var err error
	if t.forms, err = parseNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	if t.split, err = parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	decoders, err := flatten(f.Decoder, func(c *component) []json.RawMessage { return c.Decoders })
	if err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	for _, d := range decoders {
		if d.Type != "ByteLevel" {
			return nil, fmt.Errorf("decoder %q: only ByteLevel is supported", d.Type)
		}
	}
	if err := t.readVocab(m, f.AddedTokens); err != nil {
		return nil, err
	}
	if err := t.readMerges(m); err != nil {
		return nil, err
	}
	addedByContent, err := t.readAddedTokens(f.AddedTokens)
	if err != nil {
		return nil, err
	}
	t.setSpecialIDs(addedByContent)
	return t, nil
}

// checkModel refuses a model that is not deterministic byte-level BPE.
func checkModel(m *modelJSON) error {
	if m == nil {
		return errors.New("model: missing")
	}
	if m.Type != "BPE" && !(m.Type == "" && m.Merges != nil) {
		return fmt.Errorf("model.type = %q: only BPE is supported", m.Type)
	}
	switch {
	case m.ByteFallback:
		return errors.New("model.byte_fallback = true: only byte-level BPE is supported")
	case m.Dropout != nil && *m.Dropout != 0:
		return fmt.Errorf("model.dropout = %g: only deterministic BPE (no dropout) is supported", *m.Dropout)
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "":
		return fmt.Errorf("model.continuing_subword_prefix = %q: not supported", *m.ContinuingSubwordPrefix)
	case m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return fmt.Errorf("model.end_of_word_suffix = %q: not supported", *m.EndOfWordSuffix)
	}
	return nil
}

// readVocab builds the decode table, sized for the vocab and the added tokens, the id of every
// byte's token and, when the model ignores merges, the table of whole-word tokens.
func (t *Tokenizer) readVocab(m *modelJSON, added []addedToken) error {
	size := int64(0)
	for s, id := range m.Vocab {
		if id < 0 || id >= 1<<31-8 {
			return fmt.Errorf("model.vocab: token %q has id %d, out of range", s, id)
		}
		size = max(size, id+1)
	}
	for _, a := range added {
		if a.ID < 0 || a.ID >= 1<<31-8 {
			return fmt.Errorf("added_tokens: %q has id %d, out of range", a.Content, a.ID)
		}
		size = max(size, int64(a.ID)+1)
	}
	t.tokens = make([][]byte, size)
	for s, id := range m.Vocab {
		if t.tokens[id] != nil {
			return fmt.Errorf("model.vocab: id %d is given to two tokens, one of them %q", id, s)
		}
		t.tokens[id] = tokenBytes(s)
	}
	for b, r := range bytelevel.Runes {
		id, ok := m.Vocab[string(r)]
		if !ok {
			return fmt.Errorf("model.vocab: no token for byte %#02x (%q): not a byte-level vocabulary", b, r)
		}
		t.bpe.ByteID[b] = int32(id)
	}
	if m.IgnoreMerges {
		t.whole = make(map[string]int32, len(m.Vocab))
		for s, id := range m.Vocab {
			t.whole[string(tokenBytes(s))] = int32(id)
		}
	}
	return nil
}

// readMerges reads the merges in rank order; a pair listed twice keeps its last rank, as in the
// reference.
func (t *Tokenizer) readMerges(m *modelJSON) error {
	pairs, err := parseMerges(m.Merges)
	if err != nil {
		return err
	}
	for rank, p := range pairs {
		a, oka := m.Vocab[p[0]]
		b, okb := m.Vocab[p[1]]
		ab, okab := m.Vocab[p[0]+p[1]]
		if !oka || !okb || !okab {
			return fmt.Errorf("model.merges[%d]: %q + %q: a token or their merge is not in the vocab", rank, p[0], p[1])
		}
		t.bpe.Merges[bytelevel.PairKey(int32(a), int32(b))] = uint64(rank)<<32 | uint64(uint32(ab))
	}
	return nil
}

// readAddedTokens makes the added tokens decode as their content and builds their matchers,
// raw or normalized; it returns their ids by content.
func (t *Tokenizer) readAddedTokens(added []addedToken) (map[string]int32, error) {
	addedByContent := map[string]int32{}
	var raw, normalized []pattern
	for i := range added {
		a := &added[i]
		if a.Content == "" {
			return nil, fmt.Errorf("added_tokens: id %d has empty content", a.ID)
		}
		t.tokens[a.ID] = []byte(a.Content)
		addedByContent[a.Content] = a.ID
		isNormalized := !a.Special
		if a.Normalized != nil {
			isNormalized = *a.Normalized
		}
		if isNormalized {
			normalized = append(normalized, pattern{text: t.normalize([]byte(a.Content)), tok: a})
		} else {
			raw = append(raw, pattern{text: []byte(a.Content), tok: a})
		}
	}
	t.raw, t.norm = newMatcher(raw), newMatcher(normalized)
	return addedByContent, nil
}

// setSpecialIDs picks the ids cbs needs (end and beginning of text, mask, padding) among the
// added tokens by their usual names, appending a token for each that the file lacks (a missing
// beginning of text is the end of text).
func (t *Tokenizer) setSpecialIDs(addedByContent map[string]int32) {
	find := func(names ...string) (int32, bool) {
		for _, n := range names {
			if id, ok := addedByContent[n]; ok {
				return id, true
			}
		}
		return 0, false
	}
	appendToken := func(name string) int32 {
		t.tokens = append(t.tokens, []byte(name))
		return int32(len(t.tokens) - 1)
	}
	var ok bool
	if t.eos, ok = find("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"); !ok {
		t.eos = appendToken("<|endoftext|>")
	}
	if t.bos, ok = find("<|begin_of_text|>", "<s>", "<bos>"); !ok {
		t.bos = t.eos
	}
	if t.mask, ok = find("<|mask|>"); !ok {
		t.mask = appendToken("<|mask|>")
	}
	if t.pad, ok = find("<|pad|>"); !ok {
		t.pad = appendToken("<|pad|>")
	}
}

func parseNormalizer(raw json.RawMessage) ([]norm.Form, error) {
	comps, err := flatten(raw, func(c *component) []json.RawMessage { return c.Normalizers })
	if err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	var forms []norm.Form
	for _, c := range comps {
		f, ok := map[string]norm.Form{"NFC": norm.NFC, "NFD": norm.NFD, "NFKC": norm.NFKC, "NFKD": norm.NFKD}[c.Type]
		if !ok {
			return nil, fmt.Errorf("normalizer %q: only NFC, NFD, NFKC, NFKD and Sequences of them are supported", c.Type)
		}
		forms = append(forms, f)
	}
	return forms, nil
}

func parsePreTokenizer(raw json.RawMessage) (func([]byte) int, error) {
	comps, err := flatten(raw, func(c *component) []json.RawMessage { return c.PreTokenizers })
	if err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	const supported = "Split(Qwen2's or Llama 3's pattern, Isolated) then ByteLevel(use_regex false), or ByteLevel(use_regex true) alone"
	byteLevel := func(c component, useRegex bool) error {
		if c.Type != "ByteLevel" {
			return fmt.Errorf("pre_tokenizer %q: supported: %s", c.Type, supported)
		}
		if c.AddPrefixSpace == nil || *c.AddPrefixSpace {
			return errors.New("pre_tokenizer ByteLevel: add_prefix_space must be false")
		}
		if got := c.UseRegex == nil || *c.UseRegex; got != useRegex {
			return fmt.Errorf("pre_tokenizer ByteLevel: use_regex = %v, want %v here; supported: %s", got, useRegex, supported)
		}
		return nil
	}
	switch len(comps) {
	case 1:
		if err := byteLevel(comps[0], true); err != nil {
			return nil, err
		}
		return nextGPT2, nil
	case 2:
		s := comps[0]
		if s.Type != "Split" {
			return nil, fmt.Errorf("pre_tokenizer %q: supported: %s", s.Type, supported)
		}
		if s.Pattern == nil || s.Pattern.Regex == nil {
			return nil, errors.New("pre_tokenizer Split: only a Regex pattern is supported")
		}
		f, ok := splitters[*s.Pattern.Regex]
		if !ok {
			return nil, fmt.Errorf("pre_tokenizer Split: pattern %q is not one cbs implements (Qwen2's, Llama 3's or GPT-2's)", *s.Pattern.Regex)
		}
		if s.Behavior != "Isolated" || s.Invert {
			return nil, fmt.Errorf("pre_tokenizer Split: behavior %q, invert %v: only Isolated without invert is supported", s.Behavior, s.Invert)
		}
		if err := byteLevel(comps[1], false); err != nil {
			return nil, err
		}
		return f, nil
	}
	return nil, fmt.Errorf("pre_tokenizer: %d steps; supported: %s", len(comps), supported)
}

// parseMerges reads model.merges: ["a", "b"] pairs, or "a b" strings.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var lists [][]string
	if err := json.Unmarshal(raw, &lists); err == nil {
		pairs := make([][2]string, len(lists))
		for i, l := range lists {
			if len(l) != 2 {
				return nil, fmt.Errorf("model.merges[%d] = %q: want two tokens", i, l)
			}
			pairs[i] = [2]string{l[0], l[1]}
		}
		return pairs, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, errors.New("model.merges: neither a list of [a, b] pairs nor a list of \"a b\" strings")
	}
	pairs := make([][2]string, len(lines))
	for i, l := range lines {
		parts := strings.Split(l, " ")
		if len(parts) != 2 {
			return nil, fmt.Errorf("model.merges[%d] = %q: want two tokens separated by one space", i, l)
		}
		pairs[i] = [2]string{parts[0], parts[1]}
	}
	return pairs, nil
}
