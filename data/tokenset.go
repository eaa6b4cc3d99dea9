package data

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// A token set is a token stream stored as numbered shard files in one folder, with an index: what
// `cbs data tokenize` writes and the tokens source reads in place (see diskTokens), so that a
// corpus larger than memory trains with flat memory. docs/data.md describes the format; in short:
//
//   - index.json names the format, the tokenizer (name, hash and vocabulary size), the dtype,
//     the total token count, the sha256 of the whole stream, what the text source held
//     (documents, duplicates dropped, bytes), the shards in stream order with their token counts
//     and hashes, and the count of every token id in the stream.
//
//   - Each shard is a 256-byte header followed by its tokens, little-endian uint16 when the
//     vocabulary has at most 65536 ids, else uint32. The header, all integers little-endian:
//
//     offset  size  field
//     0     8  magic "CBSTOKEN"
//     8     4  format version, 1
//     12     4  bytes per token: 2 (uint16) or 4 (uint32)
//     16     8  token count
//     24     8  position of the shard's first token in the stream
//     32     4  shard number, from 0
//     36     4  vocabulary size; every token is in [0, vocabulary size)
//     40    32  sha256 of the token bytes that follow the header, as stored
//     72    32  tokenizer hash (see tokenizerHash)
//     104     1  length of the tokenizer name, at most 151
//     105   151  the tokenizer name, then zeros
//     256        the tokens; nothing follows them
//
// The stream hash in the index is the sha256 of the tokens written as little-endian uint32,
// whatever the dtype: the digest a Corpus fingerprints, so a token set and the same tokens held
// in memory have the same Fingerprint.
const (
	tokenSetFormat    = "cbs-tokens"
	tokenSetVersion   = 1
	tokenSetMagic     = "CBSTOKEN"
	tokenHeaderSize   = 256
	tokenNameOffset   = 105
	tokenNameMax      = tokenHeaderSize - tokenNameOffset
	TokenIndexFile    = "index.json"
	tokenShardPattern = "shard-%06d.tok"
	// DefaultShardTokens is the tokens per shard file that `cbs data tokenize` writes by default.
	DefaultShardTokens = 64 << 20
)

// TokenIndex is the index.json of a token set.
type TokenIndex struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	Tokenizer string `json:"tokenizer"`
	// TokenizerSHA256 is tokenizerHash of the tokenizer, in hex.
	TokenizerSHA256 string `json:"tokenizer_sha256"`
	// TokenizerGiven is what named the tokenizer when the set was written: a built-in name or
	// the path of a tokenizer.json.
	TokenizerGiven string `json:"tokenizer_given,omitempty"`
	VocabSize      int    `json:"vocab_size"`
	DType          string `json:"dtype"`
	Tokens         int64  `json:"tokens"`
	// SHA256 is the sha256 of the whole stream written as little-endian uint32, in hex.
	SHA256            string `json:"sha256"`
	Documents         int    `json:"documents,omitempty"`
	DuplicatesDropped int    `json:"duplicates_dropped,omitempty"`
	SourceBytes       int64  `json:"source_bytes,omitempty"`
	// InputSHA256 is the sha256 of the names and contents of the documents kept, as the cache of
	// the files source keys them, in hex.
	InputSHA256 string       `json:"input_sha256,omitempty"`
	Shards      []TokenShard `json:"shards"`
	// UnigramCounts is the number of times each token id occurs in the stream, VocabSize
	// entries; a corpus derives the unigram entropy of its training split from them without
	// reading the stream.
	UnigramCounts []int64 `json:"unigram_counts,omitempty"`
}

// TokenShard is one shard file of a token set.
type TokenShard struct {
	File   string `json:"file"`
	Tokens int64  `json:"tokens"`
	// SHA256 is the sha256 of the shard's token bytes as stored, in hex.
	SHA256 string `json:"sha256"`
}

// ReadTokenIndex reads and checks the index of the token set in dir.
func ReadTokenIndex(dir string) (*TokenIndex, error) {
	path := filepath.Join(dir, TokenIndexFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return nil, serr
		}
		return nil, fmt.Errorf("%s holds no %s: not a token set, or `cbs data tokenize` did not finish writing it", dir, TokenIndexFile)
	}
	if err != nil {
		return nil, err
	}
	var idx TokenIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := idx.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &idx, nil
}

// check verifies that the index is self-consistent.
func (x *TokenIndex) check() error {
	if x.Format != tokenSetFormat {
		return fmt.Errorf("format %q, want %q", x.Format, tokenSetFormat)
	}
	if x.Version != tokenSetVersion {
		return fmt.Errorf("version %d not supported (want %d)", x.Version, tokenSetVersion)
	}
	if x.VocabSize <= 0 || x.VocabSize > math.MaxInt32 {
		return fmt.Errorf("vocab_size %d outside [1, %d]", x.VocabSize, math.MaxInt32)
	}
	if want := dtypeOf(x.VocabSize); x.DType != want {
		return fmt.Errorf("dtype %q for vocab_size %d, want %q", x.DType, x.VocabSize, want)
	}
	if x.Tokenizer == "" || len(x.Tokenizer) > tokenNameMax {
		return fmt.Errorf("tokenizer name %q: want 1 to %d bytes", x.Tokenizer, tokenNameMax)
	}
	if _, err := hexDigest(x.TokenizerSHA256); err != nil {
		return fmt.Errorf("tokenizer_sha256: %w", err)
	}
	if _, err := hexDigest(x.SHA256); err != nil {
		return fmt.Errorf("sha256: %w", err)
	}
	var n int64
	for i, s := range x.Shards {
		if s.File != fmt.Sprintf(tokenShardPattern, i) {
			return fmt.Errorf("shard %d is %q, want %q", i, s.File, fmt.Sprintf(tokenShardPattern, i))
		}
		if s.Tokens <= 0 || s.Tokens > math.MaxInt64/4-n {
			return fmt.Errorf("shard %s: token count %d", s.File, s.Tokens)
		}
		if _, err := hexDigest(s.SHA256); err != nil {
			return fmt.Errorf("shard %s: sha256: %w", s.File, err)
		}
		n += s.Tokens
	}
	if n != x.Tokens {
		return fmt.Errorf("the shards hold %d tokens, the index says %d", n, x.Tokens)
	}
	if x.UnigramCounts != nil {
		if len(x.UnigramCounts) != x.VocabSize {
			return fmt.Errorf("unigram_counts has %d entries, want vocab_size = %d", len(x.UnigramCounts), x.VocabSize)
		}
		var sum int64
		for id, k := range x.UnigramCounts {
			if k < 0 || k > x.Tokens-sum {
				return fmt.Errorf("unigram_counts[%d] = %d does not fit in %d tokens", id, k, x.Tokens)
			}
			sum += k
		}
		if sum != x.Tokens {
			return fmt.Errorf("unigram_counts sum to %d, want tokens = %d", sum, x.Tokens)
		}
	}
	return nil
}

func hexDigest(s string) ([32]byte, error) {
	var d [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(d) {
		return d, fmt.Errorf("%q is not a hex sha256", s)
	}
	copy(d[:], b)
	return d, nil
}

// dtypeOf is the dtype of a token set with vocab ids.
func dtypeOf(vocab int) string {
	if vocab <= 1<<16 {
		return "uint16"
	}
	return "uint32"
}

func widthOf(vocab int) int {
	if vocab <= 1<<16 {
		return 2
	}
	return 4
}

// tokenizerHash identifies what a tokenizer's ids mean: a sha256 of its name, vocabulary size,
// special ids and the bytes every id stands for. Two tokenizers with the same hash decode every
// id alike; the name (for a tokenizer.json, a hash of the file) covers how text is encoded.
func tokenizerHash(tok Tokenizer) [32]byte {
	h := sha256.New()
	var b [4]byte
	put := func(v uint32) {
		binary.LittleEndian.PutUint32(b[:], v)
		h.Write(b[:])
	}
	h.Write([]byte("cbs-tokenizer-v1\x00" + tok.Name() + "\x00"))
	put(uint32(tok.VocabSize()))
	for _, id := range []int32{tok.BOS(), tok.EOS(), tok.Mask(), tok.Pad()} {
		put(uint32(id))
	}
	tb, hasBytes := tok.(interface{ TokenBytes(int32) ([]byte, bool) })
	for id := range int32(tok.VocabSize()) {
		var text []byte
		if hasBytes {
			t, ok := tb.TokenBytes(id)
			if !ok {
				put(math.MaxUint32)
				continue
			}
			text = t
		} else {
			text = []byte(tok.Decode([]int32{id}))
		}
		put(uint32(len(text)))
		h.Write(text)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// shardHeader is the fixed header of a shard file.
type shardHeader struct {
	width     int
	count     int64
	first     int64
	number    int
	vocab     int
	sha256    [32]byte
	tokHash   [32]byte
	tokenizer string
}

func (h *shardHeader) encode() []byte {
	b := make([]byte, tokenHeaderSize)
	copy(b, tokenSetMagic)
	le := binary.LittleEndian
	le.PutUint32(b[8:], tokenSetVersion)
	le.PutUint32(b[12:], uint32(h.width))
	le.PutUint64(b[16:], uint64(h.count))
	le.PutUint64(b[24:], uint64(h.first))
	le.PutUint32(b[32:], uint32(h.number))
	le.PutUint32(b[36:], uint32(h.vocab))
	copy(b[40:], h.sha256[:])
	copy(b[72:], h.tokHash[:])
	b[104] = byte(len(h.tokenizer))
	copy(b[tokenNameOffset:], h.tokenizer)
	return b
}

func decodeShardHeader(b []byte) (*shardHeader, error) {
	if len(b) < tokenHeaderSize {
		return nil, fmt.Errorf("%d bytes, shorter than the %d-byte header", len(b), tokenHeaderSize)
	}
	if string(b[:8]) != tokenSetMagic {
		return nil, fmt.Errorf("bad magic %q (want %q)", b[:8], tokenSetMagic)
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[8:]); v != tokenSetVersion {
		return nil, fmt.Errorf("version %d not supported (want %d)", v, tokenSetVersion)
	}
	h := &shardHeader{
		width: int(le.Uint32(b[12:])), number: int(le.Uint32(b[32:])), vocab: int(le.Uint32(b[36:])),
	}
	count, first := le.Uint64(b[16:]), le.Uint64(b[24:])
	if count > math.MaxInt64/4 || first > math.MaxInt64/4 {
		return nil, fmt.Errorf("token count %d or first position %d too large", count, first)
	}
	h.count, h.first = int64(count), int64(first)
	copy(h.sha256[:], b[40:72])
	copy(h.tokHash[:], b[72:104])
	n := int(b[104])
	if n == 0 || n > tokenNameMax {
		return nil, fmt.Errorf("tokenizer name length %d outside [1, %d]", n, tokenNameMax)
	}
	h.tokenizer = string(b[tokenNameOffset : tokenNameOffset+n])
	for _, c := range b[tokenNameOffset+n : tokenHeaderSize] {
		if c != 0 {
			return nil, errors.New("header bytes after the tokenizer name are not zero")
		}
	}
	return h, nil
}

// tokenWriter writes a token stream as a token set in dir, a folder of its own: shard files of
// shardTokens tokens (the last one shorter), then, in finish, the index. A shard's header, with
// its count and hash, is written when the shard is complete, so a shard cut short by a crash
// has no valid header; the index is written last. Nothing is synced: Tokenize syncs the whole
// folder when it renames it into place.
type tokenWriter struct {
	dir         string
	idx         TokenIndex
	tokHash     [32]byte
	width       int
	shardTokens int64

	f      *os.File
	bw     *bufio.Writer
	count  int64     // tokens in the open shard
	shardH hash.Hash // of the open shard's bytes
	stream hash.Hash // of the stream as little-endian uint32
	buf    []byte
	wide   []byte
	counts []int64
}

func newTokenWriter(dir string, tok Tokenizer, given string, shardTokens int64) (*tokenWriter, error) {
	if shardTokens <= 0 {
		return nil, fmt.Errorf("shard size %d tokens: must be positive", shardTokens)
	}
	if len(tok.Name()) == 0 || len(tok.Name()) > tokenNameMax {
		return nil, fmt.Errorf("tokenizer name %q: a token set holds names of 1 to %d bytes", tok.Name(), tokenNameMax)
	}
	th := tokenizerHash(tok)
	vocab := tok.VocabSize()
	return &tokenWriter{
		dir: dir,
		idx: TokenIndex{
			Format: tokenSetFormat, Version: tokenSetVersion, Tokenizer: tok.Name(), TokenizerSHA256: hex.EncodeToString(th[:]),
			TokenizerGiven: given, VocabSize: vocab, DType: dtypeOf(vocab), Shards: []TokenShard{},
		},
		tokHash: th, width: widthOf(vocab), shardTokens: shardTokens,
		stream: sha256.New(), counts: make([]int64, vocab),
	}, nil
}

// write appends ids, each of which must be in the vocabulary, to the stream.
func (w *tokenWriter) write(ids []int32) error {
	vocab := int32(w.idx.VocabSize)
	for _, id := range ids {
		if id < 0 || id >= vocab {
			return fmt.Errorf("token %d at position %d outside the vocabulary [0, %d)", id, w.idx.Tokens, vocab)
		}
	}
	for len(ids) > 0 {
		if w.f == nil {
			if err := w.openShard(); err != nil {
				return err
			}
		}
		n := int(min(int64(len(ids)), w.shardTokens-w.count))
		chunk := ids[:n]
		w.buf = w.buf[:0]
		w.wide = w.wide[:0]
		for _, id := range chunk {
			w.counts[id]++
			if w.width == 2 {
				w.buf = binary.LittleEndian.AppendUint16(w.buf, uint16(id))
			} else {
				w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(id))
			}
			w.wide = binary.LittleEndian.AppendUint32(w.wide, uint32(id))
		}
		w.shardH.Write(w.buf)
		w.stream.Write(w.wide)
		if _, err := w.bw.Write(w.buf); err != nil {
			return err
		}
		w.count += int64(n)
		w.idx.Tokens += int64(n)
		ids = ids[n:]
		if w.count == w.shardTokens {
			if err := w.closeShard(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *tokenWriter) openShard() error {
	name := fmt.Sprintf(tokenShardPattern, len(w.idx.Shards))
	f, err := os.OpenFile(filepath.Join(w.dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	w.f, w.count, w.shardH = f, 0, sha256.New()
	w.bw = bufio.NewWriterSize(f, 1<<20)
	// Zeros until the shard is complete: no reader accepts a header without the magic.
	_, err = w.bw.Write(make([]byte, tokenHeaderSize))
	return err
}

func (w *tokenWriter) closeShard() error {
	name := fmt.Sprintf(tokenShardPattern, len(w.idx.Shards))
	h := shardHeader{
		width: w.width, count: w.count, first: w.idx.Tokens - w.count, number: len(w.idx.Shards),
		vocab: w.idx.VocabSize, tokHash: w.tokHash, tokenizer: w.idx.Tokenizer,
	}
	w.shardH.Sum(h.sha256[:0])
	err := w.bw.Flush()
	if err == nil {
		_, err = w.f.WriteAt(h.encode(), 0)
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f, w.bw = nil, nil
	if err != nil {
		return fmt.Errorf("shard %s: %w", name, err)
	}
	w.idx.Shards = append(w.idx.Shards, TokenShard{File: name, Tokens: h.count, SHA256: hex.EncodeToString(h.sha256[:])})
	return nil
}

// abort closes the open shard, if any; the caller removes the folder.
func (w *tokenWriter) abort() {
	if w.f != nil {
		w.f.Close()
		w.f, w.bw = nil, nil
	}
}

// finish completes the last shard and writes the index, with meta's text-source fields.
func (w *tokenWriter) finish(meta TokenIndex) (*TokenIndex, error) {
	if w.f != nil {
		if err := w.closeShard(); err != nil {
			return nil, err
		}
	}
	idx := w.idx
	idx.SHA256 = hex.EncodeToString(w.stream.Sum(nil))
	idx.Documents, idx.DuplicatesDropped = meta.Documents, meta.DuplicatesDropped
	idx.SourceBytes, idx.InputSHA256 = meta.SourceBytes, meta.InputSHA256
	idx.UnigramCounts = w.counts
	b, err := idx.marshal()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(w.dir, TokenIndexFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &idx, nil
}

// marshal writes the index as indented JSON with the unigram counts on one line.
func (x *TokenIndex) marshal() ([]byte, error) {
	head := *x
	head.UnigramCounts = nil
	b, err := json.MarshalIndent(head, "", "  ")
	if err != nil {
		return nil, err
	}
	if x.UnigramCounts == nil {
		return append(b, '\n'), nil
	}
	counts, err := json.Marshal(x.UnigramCounts)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte("\n}"))
	var sb strings.Builder
	sb.Write(b)
	sb.WriteString(",\n  \"unigram_counts\": ")
	sb.Write(counts)
	sb.WriteString("\n}\n")
	return []byte(sb.String()), nil
}
