package data

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"cbs/data/hftok"
)

// Tokenizer maps text to token ids and back. Implementations must be safe for concurrent use:
// corpora encode documents on several goroutines.
type Tokenizer interface {
	Name() string
	VocabSize() int
	Encode(text []byte) []int32
	Decode(ids []int32) string
	BOS() int32
	EOS() int32
	Mask() int32 // the MDM mask token
	Pad() int32
}

var (
	registryMu sync.Mutex
	registry   = map[string]func() (Tokenizer, error){
		"byte": func() (Tokenizer, error) { return ByteTokenizer{}, nil },
	}
)

// RegisterTokenizer makes a tokenizer available to NewTokenizer under name. Packages that
// implement a tokenizer call it from an init function, so that data need not import them (they
// import data). Registering a name twice, or a nil constructor, is a programming error and panics.
func RegisterTokenizer(name string, f func() (Tokenizer, error)) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if f == nil {
		panic("data: RegisterTokenizer " + name + " with a nil constructor")
	}
	if _, dup := registry[name]; dup {
		panic("data: RegisterTokenizer called twice for " + name)
	}
	registry[name] = f
}

// TokenizerNames lists the registered tokenizer names, sorted.
func TokenizerNames() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NewTokenizer returns the tokenizer registered under name: "byte" always, "gpt2" once package
// cbs/data/bpe is linked into the program. A name that ends in ".json", or that is no registered
// name but names an existing file, is the path of a Hugging Face tokenizer.json instead (a
// relative path is relative to the working directory), loaded by package cbs/data/hftok: a
// byte-level BPE such as Qwen2's and Qwen3's. Its Name is "hf-" and a hash of the file's
// content, so the fingerprints and cache keys of corpora follow the content, not the path.
func NewTokenizer(name string) (Tokenizer, error) {
	registryMu.Lock()
	f, ok := registry[name]
	registryMu.Unlock()
	if IsTokenizerFile(name) || !ok && isTokenizerFile(name) {
		t, err := hftok.Load(name)
		if err != nil {
			return nil, err
		}
		return t, nil
	}
	if !ok {
		hint := ""
		if name == "gpt2" {
			hint = "; gpt2 is provided by package cbs/data/bpe, which this program does not link"
		}
		return nil, fmt.Errorf("unknown tokenizer %q (allowed: %s, or the path of a tokenizer.json)%s", name, strings.Join(TokenizerNames(), ", "), hint)
	}
	t, err := f()
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", name, err)
	}
	return t, nil
}

// IsTokenizerFile reports whether a tokenizer value is certainly the path of a tokenizer.json
// file rather than a built-in name: it ends in ".json". Configs resolve such a value against
// their folder.
func IsTokenizerFile(name string) bool { return strings.HasSuffix(strings.ToLower(name), ".json") }

// isTokenizerFile reports whether name is an existing regular file.
func isTokenizerFile(name string) bool {
	st, err := os.Stat(name)
	return err == nil && st.Mode().IsRegular()
}

var _ Tokenizer = (*hftok.Tokenizer)(nil)

// The byte tokenizer's special ids follow the 256 byte values.
const (
	ByteBOS   int32 = 256
	ByteEOS   int32 = 257
	ByteMask  int32 = 258
	BytePad   int32 = 259
	ByteVocab       = 260
)

// ByteTokenizer maps each byte to its value; ids 256-259 are BOS, EOS, MASK and PAD. It needs no
// files, never fails and round-trips any input exactly, which makes it the default for tests.
type ByteTokenizer struct{}

func (ByteTokenizer) Name() string   { return "byte" }
func (ByteTokenizer) VocabSize() int { return ByteVocab }
func (ByteTokenizer) BOS() int32     { return ByteBOS }
func (ByteTokenizer) EOS() int32     { return ByteEOS }
func (ByteTokenizer) Mask() int32    { return ByteMask }
func (ByteTokenizer) Pad() int32     { return BytePad }

func (ByteTokenizer) Encode(text []byte) []int32 {
	ids := make([]int32, len(text))
	for i, b := range text {
		ids[i] = int32(b)
	}
	return ids
}

// Decode writes byte ids as bytes and special ids as <|bos|>, <|eos|>, <|mask|> and <|pad|>, so
// masked MDM inputs stay readable; an id outside the vocabulary becomes U+FFFD.
func (ByteTokenizer) Decode(ids []int32) string {
	var sb strings.Builder
	sb.Grow(len(ids))
	for _, id := range ids {
		switch {
		case id >= 0 && id < 256:
			sb.WriteByte(byte(id))
		case id == ByteBOS:
			sb.WriteString("<|bos|>")
		case id == ByteEOS:
			sb.WriteString("<|eos|>")
		case id == ByteMask:
			sb.WriteString("<|mask|>")
		case id == BytePad:
			sb.WriteString("<|pad|>")
		default:
			sb.WriteRune(utf8.RuneError)
		}
	}
	return sb.String()
}
