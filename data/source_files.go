package data

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"cbs/internal/atomicio"
)

// document is one text file of a text source.
type document struct {
	name string // as recorded in the input digest: relative to the Go root's src, or the path
	path string
	data []byte
}

// Text sources (files, goroot) join their documents in sorted order, each followed by the EOS
// token and none preceded by BOS: doc1 EOS doc2 EOS ... docN EOS. Windows cut across document
// boundaries; EOS tells the model where one ends.

func loadFiles(cfg SourceConfig, tok Tokenizer) (*loaded, error) {
	docs, err := globFiles(cfg.Glob)
	if err != nil {
		return nil, err
	}
	return loadText(cfg, tok, docs, "")
}

// globFiles lists the regular files, or links to them, that glob matches.
func globFiles(glob string) ([]document, error) {
	matches, err := filepath.Glob(glob)
	if err != nil {
		return nil, fmt.Errorf("data.glob = %q: %w", glob, err)
	}
	var docs []document
	for _, m := range matches {
		st, err := os.Stat(m)
		if err != nil {
			return nil, err
		}
		if st.Mode().IsRegular() {
			docs = append(docs, document{name: filepath.ToSlash(m), path: m})
		}
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("data.glob = %q matches no regular files", glob)
	}
	return docs, nil
}

// GoRoot finds the Go toolchain whose source tree the goroot source reads: $GOROOT, else
// `go env GOROOT`, else the toolchain this binary was built with.
func GoRoot() (string, error) {
	if r := os.Getenv("GOROOT"); r != "" {
		return r, nil
	}
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		if r := strings.TrimSpace(string(out)); r != "" {
			return r, nil
		}
	}
	//lint:ignore SA1019 the last resort when no go command is installed; empty under -trimpath.
	if r := runtime.GOROOT(); r != "" {
		return r, nil
	}
	return "", errors.New("cannot find the Go root: set GOROOT, put the go command on PATH or set data.path")
}

// goSourceFiles lists root/src's non-test .go files outside testdata directories, sorted by
// their slash-separated path relative to src.
func goSourceFiles(root string) ([]document, error) {
	src := filepath.Join(root, "src")
	var docs []document
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if name == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		docs = append(docs, document{name: filepath.ToSlash(rel), path: path})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("goroot source %s: %w", src, err)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("goroot source %s holds no .go files", src)
	}
	sortDocuments(docs)
	return docs, nil
}

// sortDocuments orders documents by name, byte-wise: the order of the stream, independent of
// the file system's listing order and of the locale.
func sortDocuments(docs []document) {
	sort.Slice(docs, func(i, j int) bool { return docs[i].name < docs[j].name })
}

func loadGoroot(cfg SourceConfig, tok Tokenizer) (*loaded, error) {
	root, err := gorootOf(cfg)
	if err != nil {
		return nil, err
	}
	docs, err := goSourceFiles(root)
	if err != nil {
		return nil, err
	}
	return loadText(cfg, tok, docs, root)
}

func gorootOf(cfg SourceConfig) (string, error) {
	if cfg.Path != "" {
		return cfg.Path, nil
	}
	return GoRoot()
}

// textInput is the documents of a text source, read and deduplicated.
type textInput struct {
	docs       []document // distinct contents, in stream order
	duplicates int        // documents dropped because an earlier one has the same bytes
	bytes      int64      // of docs
	digest     []byte     // of the names and contents of docs: the cache key's input
}

// readDocuments reads docs in sorted order and keeps the first of each distinct content. The
// same text twice would let the eval split hold text that training also reads (a symlink such
// as GPL -> GPL-3, a vendored copy of a package, a generated file repeated per platform); once,
// it sits at one position of the stream, and eval and training windows share no position.
// Keeping the first in name order makes the choice the same on every machine.
func readDocuments(docs []document) (*textInput, error) {
	var kept []document
	in, err := scanDocuments(docs, func(d document, duplicate bool) error {
		if !duplicate {
			kept = append(kept, d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	in.docs = kept
	return in, nil
}

// scanDocuments is readDocuments one document at a time, for inputs larger than memory: it
// sorts docs, reads them in order and calls fn with each, its bytes in d.data, and whether an
// earlier document has the same bytes. The textInput it returns has no docs.
func scanDocuments(docs []document, fn func(d document, duplicate bool) error) (*textInput, error) {
	sortDocuments(docs)
	in := &textInput{}
	seen := make(map[[sha256.Size]byte]bool, len(docs))
	// The input digest covers names and contents, so renaming, reordering or editing a file
	// changes the cache key.
	h := sha256.New()
	for i := range docs {
		b, err := os.ReadFile(docs[i].path)
		if err != nil {
			return nil, err
		}
		d := docs[i]
		d.data = b
		sum := sha256.Sum256(b)
		if seen[sum] {
			in.duplicates++
			if err := fn(d, true); err != nil {
				return nil, err
			}
			continue
		}
		seen[sum] = true
		in.bytes += int64(len(b))
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
		h.Write([]byte(d.name + "\x00"))
		h.Write(n[:])
		h.Write(b)
		if err := fn(d, false); err != nil {
			return nil, err
		}
	}
	in.digest = h.Sum(nil)
	return in, nil
}

// shardPath is where the cache keeps the tokens of in under tok.
func shardPath(cfg SourceConfig, tok Tokenizer, in *textInput) string {
	key := sha256.New()
	key.Write([]byte("cbs-shard-v1\x00" + cfg.Source + "\x00" + tok.Name() + "\x00"))
	key.Write(in.digest)
	return filepath.Join(cfg.CacheDir, fmt.Sprintf("%s-%s-%s.shard", cfg.Source, tok.Name(), hex.EncodeToString(key.Sum(nil))[:24]))
}

// loadText reads docs, then takes the tokens from the cache when a shard for the same content
// and tokenizer is there, else tokenizes and (with a cache directory) writes the shard.
func loadText(cfg SourceConfig, tok Tokenizer, docs []document, root string) (*loaded, error) {
	in, err := readDocuments(docs)
	if err != nil {
		return nil, err
	}
	docs = in.docs
	out := &loaded{documents: len(docs), duplicates: in.duplicates, bytes: in.bytes, root: root}
	var cachePath string
	if cfg.CacheDir != "" {
		cachePath = shardPath(cfg, tok, in)
		out.cachePath = cachePath
		// A missing or damaged shard is rebuilt: it is a cache, and the digest check in
		// readShard guarantees a shard that loads is exactly what was written.
		if a, vocab, digest, err := readShardFile(cachePath); err == nil && vocab == tok.VocabSize() {
			out.tokens, out.digest = a, &digest
			return out, nil
		}
	}
	a, err := encodeDocuments(tok, docs)
	if err != nil {
		return nil, err
	}
	out.tokens = a
	if cachePath != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
			return nil, fmt.Errorf("data.cache_dir: %w", err)
		}
		if err := writeShardFileArray(cachePath, a, tok.VocabSize()); err != nil {
			return nil, fmt.Errorf("data.cache_dir: %w", err)
		}
	}
	return out, nil
}

// encodeDocuments tokenizes docs on all CPUs and joins them in order with an EOS after each
// (see docEncoder). It drops each document's text once encoded.
func encodeDocuments(tok Tokenizer, docs []document) (*tokenArray, error) {
	var total int
	for _, d := range docs {
		total += len(d.data)
	}
	a := newTokenArray(tok.VocabSize(), total+len(docs)) // exact for bytes, a guess for subwords
	enc := newDocEncoder(tok, func(ids []int32) error {
		a.append(ids)
		return nil
	})
	for i := range docs {
		if err := enc.add(docs[i]); err != nil {
			return nil, err
		}
		docs[i].data = nil
	}
	if err := enc.flush(); err != nil {
		return nil, err
	}
	return a, nil
}

// docEncoder tokenizes documents on all CPUs, in batches so that only a batch's text and int32
// encodings are alive at once, and hands out each document's ids, checked against the
// vocabulary, followed by the EOS token, in the order the documents were added.
type docEncoder struct {
	tok     Tokenizer
	out     func(ids []int32) error
	workers int
	batch   []document
	bytes   int
}

// docBatchBytes caps the text of one batch, so a few huge documents do not all sit in memory.
const docBatchBytes = 64 << 20

func newDocEncoder(tok Tokenizer, out func(ids []int32) error) *docEncoder {
	w := runtime.GOMAXPROCS(0)
	return &docEncoder{tok: tok, out: out, workers: w, batch: make([]document, 0, 4*w)}
}

// add queues d, encoding the batch once it is full.
func (e *docEncoder) add(d document) error {
	e.batch = append(e.batch, d)
	e.bytes += len(d.data)
	if len(e.batch) == cap(e.batch) || e.bytes >= docBatchBytes {
		return e.flush()
	}
	return nil
}

// flush encodes the queued documents and hands out their ids.
func (e *docEncoder) flush() error {
	docs := e.batch
	enc := make([][]int32, len(docs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range e.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				enc[i] = e.tok.Encode(docs[i].data)
			}
		}()
	}
	for i := range docs {
		next <- i
	}
	close(next)
	wg.Wait()
	vocab, eos := e.tok.VocabSize(), []int32{e.tok.EOS()}
	for i, ids := range enc {
		for k, id := range ids {
			if id < 0 || int(id) >= vocab {
				return fmt.Errorf("%s: tokenizer %s gave id %d at token %d, outside its vocabulary [0, %d)", docs[i].path, e.tok.Name(), id, k, vocab)
			}
		}
		if err := e.out(ids); err != nil {
			return err
		}
		if err := e.out(eos); err != nil {
			return err
		}
		enc[i] = nil
	}
	clear(e.batch)
	e.batch, e.bytes = e.batch[:0], 0
	return nil
}

func writeShardFileArray(path string, a *tokenArray, vocab int) error {
	return atomicio.WriteFileFunc(path, func(w io.Writer) error { return writeShard(w, a, vocab) })
}
