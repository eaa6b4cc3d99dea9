package data

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// wideTokenizer has more ids than uint16 holds, so its token sets are stored as uint32.
type wideTokenizer struct{ ByteTokenizer }

const wideVocab = 70001

func (wideTokenizer) Name() string   { return "test-wide" }
func (wideTokenizer) VocabSize() int { return wideVocab }

func init() {
	RegisterTokenizer("test-wide", func() (Tokenizer, error) { return wideTokenizer{}, nil })
}

// writeTokenSet writes tokens as a token set in a new folder under dir, handing them to the
// writer in uneven pieces, and returns the folder.
func writeTokenSet(t testing.TB, dir, tokenizer string, tokens []int32, shardTokens int64) string {
	t.Helper()
	out := filepath.Join(dir, fmt.Sprintf("set-%s-%d", tokenizer, shardTokens))
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	tok, err := NewTokenizer(tokenizer)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newTokenWriter(out, tok, tokenizer, shardTokens)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for rest := tokens; len(rest) > 0; {
		n := min(len(rest), 1+r.IntN(3*int(shardTokens)))
		if err := w.write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if _, err := w.finish(TokenIndex{}); err != nil {
		t.Fatal(err)
	}
	return out
}

func randomTokens(n, vocab int, seed uint64) []int32 {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(r.IntN(vocab))
	}
	return out
}

// TestTokenSetCorpusMatchesMemory: a corpus read from token shards, whatever the shard size
// (smaller than a window, not a multiple of it, a multiple), serves exactly the training, eval
// and replica sequences, fingerprint and statistics of the same tokens loaded from an npy file.
func TestTokenSetCorpusMatchesMemory(t *testing.T) {
	tests := []struct {
		tokenizer   string
		vocab       int
		n           int
		shardTokens int64
		seqLen      int
		evalTokens  int64
	}{
		{"byte", ByteVocab, 5003, 7, 16, 700},
		{"byte", ByteVocab, 20000, 1000, 64, 64 * 20},
		{"byte", ByteVocab, 64 * 100, 64 * 10, 64, 64},
		{"byte", ByteVocab, 3000, 1 << 20, 33, 0},
		{"test-wide", wideVocab, 9001, 500, 24, 24 * 30},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s-%d-%d-%d", tc.tokenizer, tc.n, tc.shardTokens, tc.seqLen), func(t *testing.T) {
			dir := t.TempDir()
			tokens := randomTokens(tc.n, tc.vocab, uint64(tc.n))
			set := writeTokenSet(t, dir, tc.tokenizer, tokens, tc.shardTokens)
			npy := filepath.Join(dir, "tokens.npy")
			if err := WriteNPYFile(npy, Int32Array(tokens)); err != nil {
				t.Fatal(err)
			}
			cfg := SourceConfig{Tokenizer: tc.tokenizer, SeqLen: tc.seqLen, EvalTokens: tc.evalTokens, Seed: 5}
			fromSet, fromNPY := cfg, cfg
			fromSet.Source, fromSet.Path = SourceTokens, set
			fromNPY.Source, fromNPY.Path = SourceNPY, npy
			a, err := Open(fromSet)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Open(fromNPY)
			if err != nil {
				t.Fatal(err)
			}
			if a.tokens.disk == nil {
				t.Fatal("the tokens source holds its tokens in memory")
			}
			if want := int64(tc.n+int(tc.shardTokens)-1) / tc.shardTokens; int64(len(a.tokens.disk.files)) != want {
				t.Errorf("%d shards, want %d", len(a.tokens.disk.files), want)
			}
			sameCorpus(t, a, b)

			// Any range of the stream, across any number of shard boundaries, from several
			// goroutines at once.
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(3, uint64(g)))
					for range 500 {
						off := r.Int64N(int64(tc.n))
						l := r.IntN(min(tc.n-int(off), 3*int(tc.shardTokens)) + 1)
						got := make([]int32, l)
						a.tokens.read(off, got)
						if !slices.Equal(got, tokens[off:off+int64(l)]) {
							t.Errorf("tokens [%d, %d) differ", off, off+int64(l))
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// sameCorpus checks that a and b serve identical data.
func sameCorpus(t *testing.T, a, b *Corpus) {
	t.Helper()
	if a.NumTokens() != b.NumTokens() || a.NumTrainSeqs() != b.NumTrainSeqs() || a.NumEvalSeqs() != b.NumEvalSeqs() || a.SeqLen() != b.SeqLen() {
		t.Fatalf("shapes differ: tokens %d/%d, train %d/%d, eval %d/%d", a.NumTokens(), b.NumTokens(), a.NumTrainSeqs(), b.NumTrainSeqs(), a.NumEvalSeqs(), b.NumEvalSeqs())
	}
	if a.Fingerprint() != b.Fingerprint() {
		t.Errorf("fingerprint %s, want %s", a.Fingerprint(), b.Fingerprint())
	}
	if !slices.Equal(a.EvalWindows(), b.EvalWindows()) {
		t.Errorf("eval windows differ")
	}
	if !slices.EqualFunc(a.EvalSeqs(), b.EvalSeqs(), slices.Equal) {
		t.Errorf("eval sequences differ")
	}
	L := a.SeqLen()
	x, y := make([]int32, L), make([]int32, L)
	for i := range 3 * a.NumTrainSeqs() {
		a.TrainSeq(i, x)
		b.TrainSeq(i, y)
		if !slices.Equal(x, y) {
			t.Fatalf("training sequence %d differs", i)
		}
	}
	rep := Replica{Index: 2, From: a.NumTrainSeqs()/3 + 1}
	ca, cb := a.Cursor(rep.From), b.Cursor(rep.From)
	ca.Replica, cb.Replica = rep, rep
	bx, by := make([]int32, 5*L), make([]int32, 5*L)
	for range 2 * a.NumTrainSeqs() / 5 {
		if fa, fb := ca.Read(bx), cb.Read(by); fa != fb || !slices.Equal(bx, by) {
			t.Fatalf("replica read at %d differs", fa)
		}
	}
	if ha, hb := a.UnigramEntropy(), b.UnigramEntropy(); ha != hb {
		t.Errorf("unigram entropy %v, want %v", ha, hb)
	}
	if a.TrainTokens() != b.TrainTokens() {
		t.Errorf("train tokens %d, want %d", a.TrainTokens(), b.TrainTokens())
	}
}

// TestTokenizeMatchesFilesSource: `cbs data tokenize` over a folder yields the stream the files
// source gives for the same files: sorted, duplicates dropped, EOS after each document.
func TestTokenizeMatchesFilesSource(t *testing.T) {
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus")
	r := rand.New(rand.NewPCG(9, 9))
	var total int64
	for i := range 40 {
		sub := filepath.Join(corpus, fmt.Sprintf("d%d", i%3))
		os.MkdirAll(sub, 0o755)
		text := []byte(strings.Repeat(fmt.Sprintf("document %d says %d. ", i, r.IntN(1000)), 1+r.IntN(200)))
		if i%7 == 3 {
			text = []byte("the same text in several files\n")
		}
		os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%02d.txt", i)), text, 0o644)
		total += int64(len(text))
	}
	// Hidden files and folders are not walked.
	os.MkdirAll(filepath.Join(corpus, ".git"), 0o755)
	os.WriteFile(filepath.Join(corpus, ".git", "HEAD"), []byte("ref: main\n"), 0o644)
	os.WriteFile(filepath.Join(corpus, "d0", ".hidden.txt"), []byte("hidden\n"), 0o644)

	out := filepath.Join(dir, "tokens")
	var lastDone, lastTotal int64
	idx, err := Tokenize(context.Background(), []string{corpus}, out, TokenizeOptions{
		Tokenizer: "byte", ShardTokens: 1000, Progress: func(done, total int64) { lastDone, lastTotal = done, total },
	})
	if err != nil {
		t.Fatal(err)
	}
	if lastDone != total || lastTotal != total {
		t.Errorf("progress ended at %d of %d bytes, want %d of %d", lastDone, lastTotal, total, total)
	}
	cfg := SourceConfig{SeqLen: 32, EvalTokens: 32 * 10, Seed: 2}
	fromSet, fromFiles := cfg, cfg
	fromSet.Source, fromSet.Path = SourceTokens, out // data.tokenizer from the shards
	fromFiles.Source, fromFiles.Glob = SourceFiles, filepath.Join(corpus, "d*", "f*.txt")
	a, err := Open(fromSet)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(fromFiles)
	if err != nil {
		t.Fatal(err)
	}
	if a.Config().Tokenizer != "byte" {
		t.Errorf("tokenizer %q, want byte, from the shards", a.Config().Tokenizer)
	}
	sameCorpus(t, a, b)
	ia, ib := a.Info(), b.Info()
	if ia.Documents != ib.Documents || ia.DuplicatesDropped != ib.DuplicatesDropped || ia.SourceBytes != ib.SourceBytes {
		t.Errorf("tokens source: %d documents, %d duplicates, %d bytes; files source: %d, %d, %d",
			ia.Documents, ia.DuplicatesDropped, ia.SourceBytes, ib.Documents, ib.DuplicatesDropped, ib.SourceBytes)
	}
	if idx.Documents != 35 || idx.DuplicatesDropped != 5 || idx.Tokens != a.NumTokens() || len(idx.Shards) != int((idx.Tokens+999)/1000) {
		t.Errorf("index: %d documents, %d duplicates, %d tokens, %d shards", idx.Documents, idx.DuplicatesDropped, idx.Tokens, len(idx.Shards))
	}
	if _, err := VerifyTokens(out, nil); err != nil {
		t.Errorf("verify: %v", err)
	}

	// Globs and files name the same documents; a file given twice counts once.
	again := filepath.Join(dir, "again")
	if _, err := Tokenize(context.Background(), []string{filepath.Join(corpus, "d0"), filepath.Join(corpus, "d[12]"), filepath.Join(corpus, "d1", "f01.txt")}, again, TokenizeOptions{Tokenizer: "byte"}); err != nil {
		t.Fatal(err)
	}
	fromSet.Path = again
	if c, err := Open(fromSet); err != nil || c.Fingerprint() != a.Fingerprint() {
		t.Errorf("globs and files: %v, fingerprint differs: %v", err, err == nil)
	}
}

// TestTokenizeAtomic: an interrupted run leaves the previous set as it was and nothing a reader
// accepts; a folder holding other files is refused, not replaced.
func TestTokenizeAtomic(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	os.MkdirAll(in, 0o755)
	for i := range 5 {
		os.WriteFile(filepath.Join(in, fmt.Sprintf("%d.txt", i)), []byte(strings.Repeat(fmt.Sprint(i), 5000)), 0o644)
	}
	out := filepath.Join(dir, "out")
	first, err := Tokenize(context.Background(), []string{filepath.Join(in, "[01].txt")}, out, TokenizeOptions{Tokenizer: "byte", ShardTokens: 3000})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err = Tokenize(ctx, []string{in}, out, TokenizeOptions{Tokenizer: "byte", ShardTokens: 3000, Progress: func(int64, int64) {
		if calls++; calls == 3 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v, want context.Canceled", err)
	}
	idx, err := VerifyTokens(out, nil)
	if err != nil || idx.SHA256 != first.SHA256 {
		t.Fatalf("after an interrupted run: %v; the set should be the first one", err)
	}
	if m, _ := filepath.Glob(out + ".tmp-*"); len(m) != 0 {
		t.Errorf("left behind %v", m)
	}
	// A writer stopped after its shards and before its index leaves nothing Open accepts.
	half := filepath.Join(dir, "half")
	os.MkdirAll(half, 0o755)
	w, _ := newTokenWriter(half, ByteTokenizer{}, "byte", 100)
	w.write(rampTokens(250))
	w.abort()
	if _, err := Open(SourceConfig{Source: SourceTokens, Path: half, SeqLen: 10}); err == nil || !strings.Contains(err.Error(), "holds no index.json") {
		t.Errorf("a set without its index: %v", err)
	}

	second, err := Tokenize(context.Background(), []string{in}, out, TokenizeOptions{Tokenizer: "byte", ShardTokens: 3000})
	if err != nil {
		t.Fatal(err)
	}
	if second.Documents != 5 || second.SHA256 == first.SHA256 {
		t.Errorf("the replacing set: %+v", second)
	}
	os.WriteFile(filepath.Join(out, "notes.txt"), []byte("mine"), 0o644)
	if _, err := Tokenize(context.Background(), []string{in}, out, TokenizeOptions{Tokenizer: "byte"}); err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("a set with a foreign file: %v", err)
	}
	if _, err := Tokenize(context.Background(), []string{in}, in, TokenizeOptions{Tokenizer: "byte"}); err == nil || !strings.Contains(err.Error(), "not a token set") {
		t.Errorf("a folder of other files: %v", err)
	}
	if _, err := Tokenize(context.Background(), []string{filepath.Join(dir, "missing*")}, filepath.Join(dir, "x"), TokenizeOptions{Tokenizer: "byte"}); err == nil {
		t.Error("an input matching nothing was accepted")
	}
}

// TestTokenSetRefusals: the tokenizer must match, and a damaged set is an error that names the
// file, at Open where the headers and sizes tell, else at VerifyTokens, else when read.
func TestTokenSetRefusals(t *testing.T) {
	dir := t.TempDir()
	tokens := randomTokens(4000, ByteVocab, 1)
	set := writeTokenSet(t, dir, "byte", tokens, 1500)
	cfg := SourceConfig{Source: SourceTokens, Path: set, SeqLen: 16}

	c := cfg
	c.Tokenizer = "test-wide"
	if _, err := Open(c); err == nil || !strings.Contains(err.Error(), `data.tokenizer = "test-wide" is tokenizer test-wide, but the token set`) || !strings.Contains(err.Error(), "written with tokenizer byte") {
		t.Errorf("another tokenizer: %v", err)
	}
	c.Tokenizer = "byte"
	if _, err := Open(c); err != nil {
		t.Errorf("the same tokenizer named: %v", err)
	}
	if r, err := cfg.Resolve(); err != nil || r.Tokenizer != "byte" {
		t.Errorf("Resolve: tokenizer %q, %v; want byte from the shards", r.Tokenizer, err)
	}
	if _, err := (SourceConfig{Source: SourceTokens, SeqLen: 4}).Resolve(); err == nil || !strings.Contains(err.Error(), "data.path is required") {
		t.Errorf("no path: %v", err)
	}
	// A tokenizer.json cannot be rebuilt from its name: a set written with one needs it named.
	tiny := filepath.Join("hftok", "testdata", "tiny.json")
	text := filepath.Join(dir, "text.txt")
	os.WriteFile(text, []byte("hello world, hello tokens\n"), 0o644)
	hf := filepath.Join(dir, "hf")
	if _, err := Tokenize(context.Background(), []string{text}, hf, TokenizeOptions{Tokenizer: tiny}); err != nil {
		t.Fatal(err)
	}
	c = SourceConfig{Source: SourceTokens, Path: hf, SeqLen: 2}
	if _, err := Open(c); err == nil || !strings.Contains(err.Error(), "set data.tokenizer to that file") || !strings.Contains(err.Error(), tiny) {
		t.Errorf("a tokenizer.json set without data.tokenizer: %v", err)
	}
	c.Tokenizer = tiny
	if _, err := Open(c); err != nil {
		t.Errorf("a tokenizer.json set with its file: %v", err)
	}

	damage := func(t *testing.T, name string, f func(b []byte) []byte) string {
		t.Helper()
		bad := filepath.Join(t.TempDir(), "bad")
		os.MkdirAll(bad, 0o755)
		entries, _ := os.ReadDir(set)
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(set, e.Name()))
			if e.Name() == name {
				b = f(slices.Clone(b))
			}
			os.WriteFile(filepath.Join(bad, e.Name()), b, 0o644)
		}
		return bad
	}
	for _, tc := range []struct {
		name, file string
		f          func([]byte) []byte
		want       string
	}{
		{"truncated", "shard-000001.tok", func(b []byte) []byte { return b[:len(b)-2] }, "shard-000001.tok: 3254 bytes, want 3256"},
		{"zero header", "shard-000000.tok", func(b []byte) []byte { clear(b[:tokenHeaderSize]); return b }, "shard-000000.tok: bad magic"},
		{"swapped", "shard-000002.tok", func(b []byte) []byte { b[32] = 1; return b }, "header says shard 1"},
		{"index", "index.json", func(b []byte) []byte {
			return []byte(strings.Replace(string(b), `"tokens": 4000`, `"tokens": 4001`, 1))
		}, "the shards hold 4000 tokens, the index says 4001"},
	} {
		bad := damage(t, tc.file, tc.f)
		c := cfg
		c.Path = bad
		if _, err := Open(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}

	// A changed token passes the cheap checks at Open; VerifyTokens finds it, and a token
	// outside the vocabulary stops the read that meets it.
	bad := damage(t, "shard-000001.tok", func(b []byte) []byte {
		b[tokenHeaderSize+2*10], b[tokenHeaderSize+2*10+1] = 0xff, 0xff
		return b
	})
	c = cfg
	c.Path = bad
	corpus, err := Open(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyTokens(bad, nil); err == nil || !strings.Contains(err.Error(), "token 65535 at position 10 outside the vocabulary") {
		t.Errorf("verify: %v", err)
	}
	func() {
		defer func() {
			if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "shard-000001.tok: token 65535 at position 10") {
				t.Errorf("reading the bad token: panic %v", p)
			}
		}()
		corpus.tokens.read(1500, make([]int32, 16))
	}()
}
