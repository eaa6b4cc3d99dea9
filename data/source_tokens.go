package data

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// diskTokens is a token set's stream read in place from its shard files: reading a window
// reads the bytes that hold it, with one positioned read (pread) per shard it spans, and the
// process keeps no copy of the stream, so the memory a corpus holds does not grow with it.
//
// The files are not mapped into memory. For random windows a mapping does worse: a page fault
// maps as much of the page cache around the window as the kernel holds in one folio (up to
// 2 MiB on recent Linux kernels), and those pages count in the resident set size, which then
// grows with the reads up to the size of the set, while a positioned read copies only the
// window.
type diskTokens struct {
	n      int64
	width  int
	vocab  int
	starts []int64 // first position of each shard, then n
	files  []*os.File
	bufs   sync.Pool // *[]byte
}

// read copies the len(dst) tokens starting at off into dst, across shard boundaries. A read that
// fails (a shard truncated since it was opened) or meets a token outside the vocabulary panics,
// naming the file: the corpus promised these tokens when it opened.
func (m *diskTokens) read(off int64, dst []int32) {
	if off < 0 || off+int64(len(dst)) > m.n {
		panic(fmt.Sprintf("data: reading tokens [%d, %d) of a stream of %d", off, off+int64(len(dst)), m.n))
	}
	bp, _ := m.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer m.bufs.Put(bp)
	k := sort.Search(len(m.files), func(i int) bool { return m.starts[i+1] > off })
	for len(dst) > 0 {
		local := off - m.starts[k]
		n := int(min(int64(len(dst)), m.starts[k+1]-off))
		if cap(*bp) < n*m.width {
			*bp = make([]byte, n*m.width)
		}
		src := (*bp)[:n*m.width]
		if _, err := m.files[k].ReadAt(src, tokenHeaderSize+local*int64(m.width)); err != nil {
			panic(fmt.Sprintf("data: reading tokens [%d, %d) of %s: %v", local, local+int64(n), m.files[k].Name(), err))
		}
		bad := false
		if m.width == 2 {
			for i := range n {
				id := binary.LittleEndian.Uint16(src[2*i:])
				bad = bad || int(id) >= m.vocab
				dst[i] = int32(id)
			}
		} else {
			for i := range n {
				id := binary.LittleEndian.Uint32(src[4*i:])
				bad = bad || id >= uint32(m.vocab)
				dst[i] = int32(id)
			}
		}
		if bad {
			for i := range n {
				if dst[i] < 0 || int(dst[i]) >= m.vocab {
					panic(fmt.Sprintf("data: %s: token %d at position %d is outside the vocabulary [0, %d): the shard is corrupt (cbs data verify checks a token set)",
						m.files[k].Name(), uint32(dst[i]), local+int64(i), m.vocab))
				}
			}
		}
		dst, off = dst[n:], off+int64(n)
		k++
	}
}

// openTokenSet opens the shards idx lists in dir after checking each against the index: its
// size, header, tokenizer and hash. It reads the headers only; VerifyTokens reads every token.
// The files stay open for the life of the corpus.
func openTokenSet(dir string, idx *TokenIndex) (*diskTokens, error) {
	m := &diskTokens{width: widthOf(idx.VocabSize), vocab: idx.VocabSize, starts: []int64{0}}
	for i, s := range idx.Shards {
		f, err := openShard(filepath.Join(dir, s.File), i, m.n, s, idx, m.width)
		if err != nil {
			for _, f := range m.files {
				f.Close()
			}
			return nil, err
		}
		m.files = append(m.files, f)
		m.n += s.Tokens
		m.starts = append(m.starts, m.n)
	}
	return m, nil
}

// openShard opens shard number i, which should start at position first, and checks it.
func openShard(path string, i int, first int64, s TokenShard, idx *TokenIndex, width int) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := checkShard(f, i, first, s, idx, width); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

func checkShard(f *os.File, i int, first int64, s TokenShard, idx *TokenIndex, width int) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var head [tokenHeaderSize]byte
	if _, err := f.ReadAt(head[:], 0); err != nil {
		return fmt.Errorf("reading the %d-byte header: %w", tokenHeaderSize, noEOF(err))
	}
	h, err := decodeShardHeader(head[:])
	if err != nil {
		return err
	}
	if err := h.matches(i, first, s, idx, width); err != nil {
		return err
	}
	if want := tokenHeaderSize + s.Tokens*int64(width); st.Size() != want {
		return fmt.Errorf("%d bytes, want %d (a %d-byte header and %d tokens of %d bytes)", st.Size(), want, tokenHeaderSize, s.Tokens, width)
	}
	return nil
}

// matches checks a shard header against its entry in the index.
func (h *shardHeader) matches(i int, first int64, s TokenShard, idx *TokenIndex, width int) error {
	switch {
	case h.width != width:
		return fmt.Errorf("%d bytes per token, the index's dtype %s has %d", h.width, idx.DType, width)
	case h.number != i || h.first != first:
		return fmt.Errorf("header says shard %d from position %d, the index lists it as shard %d from position %d", h.number, h.first, i, first)
	case h.count != s.Tokens:
		return fmt.Errorf("header says %d tokens, the index %d", h.count, s.Tokens)
	case h.vocab != idx.VocabSize:
		return fmt.Errorf("vocabulary size %d, the index's %d", h.vocab, idx.VocabSize)
	case h.tokenizer != idx.Tokenizer || hex.EncodeToString(h.tokHash[:]) != idx.TokenizerSHA256:
		return fmt.Errorf("tokenizer %s (hash %x), the index's %s (hash %.16s)", h.tokenizer, h.tokHash[:8], idx.Tokenizer, idx.TokenizerSHA256)
	case hex.EncodeToString(h.sha256[:]) != s.SHA256:
		return fmt.Errorf("sha256 %x in the header, %.16s in the index", h.sha256[:8], s.SHA256)
	}
	return nil
}

// tokenizerOfSet resolves data.tokenizer for the tokens source: the tokenizer the set in dir was
// written with when cfg leaves it out, else cfg's own, which must be the same tokenizer.
func tokenizerOfSet(cfg SourceConfig) (string, error) {
	idx, err := ReadTokenIndex(cfg.Path)
	if err != nil {
		return "", fmt.Errorf("data.path: %w", err)
	}
	name := cfg.Tokenizer
	if name == "" {
		if _, err := NewTokenizer(idx.Tokenizer); err != nil {
			return "", fmt.Errorf("data.tokenizer is required: the token set %s was written with tokenizer %s (given as %q), which only its tokenizer.json provides; set data.tokenizer to that file",
				cfg.Path, idx.Tokenizer, idx.TokenizerGiven)
		}
		name = idx.Tokenizer
	}
	tok, err := NewTokenizer(name)
	if err != nil {
		return "", fmt.Errorf("data.tokenizer: %w", err)
	}
	if err := checkSetTokenizer(name, cfg.Path, tok, idx); err != nil {
		return "", err
	}
	return name, nil
}

// loadTokens opens the token set in cfg.Path, which must have been written with tok.
func loadTokens(cfg SourceConfig, tok Tokenizer) (*loaded, error) {
	idx, err := ReadTokenIndex(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("data.path: %w", err)
	}
	if err := checkSetTokenizer(cfg.Tokenizer, cfg.Path, tok, idx); err != nil {
		return nil, err
	}
	m, err := openTokenSet(cfg.Path, idx)
	if err != nil {
		return nil, fmt.Errorf("data.path: %w", err)
	}
	digest, _ := hexDigest(idx.SHA256)
	return &loaded{
		tokens: &tokenArray{disk: m}, digest: &digest, unigram: idx.UnigramCounts,
		documents: idx.Documents, duplicates: idx.DuplicatesDropped, bytes: idx.SourceBytes, root: cfg.Path,
	}, nil
}

// checkSetTokenizer refuses a token set in dir written with another tokenizer than tok, which
// data.tokenizer = given named.
func checkSetTokenizer(given, dir string, tok Tokenizer, idx *TokenIndex) error {
	if tok.Name() != idx.Tokenizer {
		return fmt.Errorf("data.tokenizer = %q is tokenizer %s, but the token set %s was written with tokenizer %s (given as %q): set data.tokenizer to that one, or leave it out",
			given, tok.Name(), dir, idx.Tokenizer, idx.TokenizerGiven)
	}
	th := tokenizerHash(tok)
	if hex.EncodeToString(th[:]) != idx.TokenizerSHA256 || tok.VocabSize() != idx.VocabSize {
		return fmt.Errorf("data.tokenizer = %q is tokenizer %s with %d ids (hash %x), but the token set %s was written with a tokenizer of that name with %d ids (hash %.16s): its ids stand for other text; tokenize the corpus again",
			given, tok.Name(), tok.VocabSize(), th[:8], dir, idx.VocabSize, idx.TokenizerSHA256)
	}
	return nil
}

// VerifyTokens reads every token of the token set in dir and checks it against the index: each
// shard's hash, the stream's hash, the token range and the unigram counts. Opening a token set as
// a corpus checks only the headers and sizes, so a corpus of many GB opens at once; this is the
// full check. progress, if not nil, is called with the bytes read so far and the total.
func VerifyTokens(dir string, progress func(done, total int64)) (*TokenIndex, error) {
	idx, err := ReadTokenIndex(dir)
	if err != nil {
		return nil, err
	}
	v := &tokenVerifier{idx: idx, width: widthOf(idx.VocabSize), stream: sha256.New(), counts: make([]int64, idx.VocabSize),
		buf: make([]byte, 1<<20), progress: progress}
	for _, s := range idx.Shards {
		v.total += tokenHeaderSize + s.Tokens*int64(v.width)
	}
	var first int64
	for i, s := range idx.Shards {
		path := filepath.Join(dir, s.File)
		if err := v.verifyShard(path, i, first, s); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		v.done += tokenHeaderSize
		first += s.Tokens
	}
	if progress != nil {
		progress(v.total, v.total)
	}
	if got := hex.EncodeToString(v.stream.Sum(nil)); got != idx.SHA256 {
		return nil, fmt.Errorf("%s: the stream's sha256 is %.16s, the index says %.16s", dir, got, idx.SHA256)
	}
	if idx.UnigramCounts != nil {
		for id, k := range v.counts {
			if k != idx.UnigramCounts[id] {
				return nil, fmt.Errorf("%s: token %d occurs %d times, the index's unigram_counts say %d", dir, id, k, idx.UnigramCounts[id])
			}
		}
	}
	return idx, nil
}

// tokenVerifier reads a token set's shards in order for VerifyTokens, hashing the stream (as
// little-endian uint32 ids, whatever the width on disk) and counting each id.
type tokenVerifier struct {
	idx         *TokenIndex
	width       int // bytes per token on disk
	stream      hash.Hash
	counts      []int64
	buf, wide   []byte // a chunk as read; its ids widened to uint32
	done, total int64  // bytes read so far, and in all
	progress    func(done, total int64)
}

// verifyShard checks shard i, whose first token is token first of the stream, at path: its
// size, its header, the range of its ids and its hash.
func (v *tokenVerifier) verifyShard(path string, i int, first int64, s TokenShard) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if want := tokenHeaderSize + s.Tokens*int64(v.width); st.Size() != want {
		return fmt.Errorf("%d bytes, want %d", st.Size(), want)
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var head [tokenHeaderSize]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return noEOF(err)
	}
	h, err := decodeShardHeader(head[:])
	if err != nil {
		return err
	}
	if err := h.matches(i, first, s, v.idx, v.width); err != nil {
		return err
	}
	shard := sha256.New()
	for pos, left := int64(0), s.Tokens*int64(v.width); left > 0; {
		chunk := v.buf[:min(int64(len(v.buf)), left)]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return noEOF(err)
		}
		shard.Write(chunk)
		if err := v.addChunk(chunk, pos); err != nil {
			return err
		}
		pos += int64(len(chunk) / v.width)
		left -= int64(len(chunk))
		v.done += int64(len(chunk))
		if v.progress != nil {
			v.progress(v.done, v.total)
		}
	}
	if got := hex.EncodeToString(shard.Sum(nil)); got != s.SHA256 {
		return fmt.Errorf("sha256 of the tokens %.16s, the index says %.16s", got, s.SHA256)
	}
	return nil
}

// addChunk checks that the ids of chunk, the first at position pos of its shard, are in the
// vocabulary, counts them and adds them to the stream's hash.
func (v *tokenVerifier) addChunk(chunk []byte, pos int64) error {
	v.wide = v.wide[:0]
	for j := 0; j < len(chunk); j += v.width {
		var id uint32
		if v.width == 2 {
			id = uint32(binary.LittleEndian.Uint16(chunk[j:]))
		} else {
			id = binary.LittleEndian.Uint32(chunk[j:])
		}
		if id >= uint32(v.idx.VocabSize) {
			return fmt.Errorf("token %d at position %d outside the vocabulary [0, %d)", id, pos+int64(j/v.width), v.idx.VocabSize)
		}
		v.counts[id]++
		v.wide = binary.LittleEndian.AppendUint32(v.wide, id)
	}
	v.stream.Write(v.wide)
	return nil
}
