package data

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMarkovEntropyRate(t *testing.T) {
	tests := []struct {
		seed             uint64
		vocab, branching int
		n                int64
	}{
		{1, 64, 4, 1 << 21},
		{2, 16, 2, 1 << 20},
		{3, 256, 8, 1 << 21},
		{4, 2, 2, 1 << 18},
	}
	for _, tc := range tests {
		m, err := NewMarkov(tc.seed, tc.vocab, tc.branching)
		if err != nil {
			t.Fatal(err)
		}
		h := m.EntropyRate()
		if h <= 0 || h > math.Log(float64(tc.branching)) {
			t.Errorf("%+v: entropy rate %v outside (0, ln %d]", tc, h, tc.branching)
		}
		// pi is stationary and a distribution.
		piP := make([]float64, tc.vocab)
		var sum float64
		for i, p := range m.Stationary {
			sum += p
			for k, j := range m.Next[i] {
				piP[j] += p * m.Prob[i][k]
			}
		}
		for i := range piP {
			if math.Abs(piP[i]-m.Stationary[i]) > 1e-12 {
				t.Fatalf("%+v: (pi P)[%d] = %v, pi = %v", tc, i, piP[i], m.Stationary[i])
			}
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Errorf("%+v: pi sums to %v", tc, sum)
		}

		x := m.Sample(tc.seed+100, tc.n)
		// Two estimates: the sample mean of -ln P(x_t | x_{t-1}) under the true chain, unbiased,
		// with its standard error; and the plug-in conditional entropy of the empirical
		// transition counts, which knows nothing of the chain.
		var s, s2 float64
		counts := make(map[[2]int32]float64)
		from := make([]float64, tc.vocab)
		unigram := make([]float64, tc.vocab)
		for i := 1; i < len(x); i++ {
			lp := -m.LogProb(x[i-1], x[i])
			s += lp
			s2 += lp * lp
			counts[[2]int32{x[i-1], x[i]}]++
			from[x[i-1]]++
			unigram[x[i]]++
		}
		n := float64(len(x) - 1)
		mean := s / n
		se := math.Sqrt((s2/n - mean*mean) / n)
		var plugin float64
		for k, c := range counts {
			plugin -= c / n * math.Log(c/from[k[0]])
		}
		var l1 float64
		for i := range unigram {
			l1 += math.Abs(unigram[i]/n - m.Stationary[i])
		}
		checks := []struct {
			name      string
			got, want float64
			tol       float64
		}{
			{"mean -ln P", mean, h, 5*se + 1e-9},
			{"plug-in entropy", plugin, h, 0.01},
			{"L1(unigram, pi)", l1, 0, 0.03},
		}
		for _, c := range checks {
			if math.IsInf(c.got, 0) || math.Abs(c.got-c.want) > c.tol {
				t.Errorf("%+v: %s = %v, want %v within %v", tc, c.name, c.got, c.want, c.tol)
			}
		}
		if we := m.WindowEntropy(32); math.Abs(we-(m.StationaryEntropy()+31*h)) > 1e-12 || we/32 < h {
			t.Errorf("%+v: window entropy %v per token below the rate %v", tc, we/32, h)
		}
	}
}

func TestSyntheticSource(t *testing.T) {
	cfg := SourceConfig{Source: SourceSynthetic, SeqLen: 64, EvalTokens: 4096, Seed: 1, SyntheticTokens: 100000, SyntheticSeed: 5}
	a, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint() != b.Fingerprint() || a.NumTokens() != 100000 {
		t.Errorf("two opens: fingerprints %s and %s, %d tokens", a.Fingerprint(), b.Fingerprint(), a.NumTokens())
	}
	if a.Markov() == nil || a.Info().EntropyRate != a.Markov().EntropyRate() {
		t.Error("synthetic corpus does not expose its chain and entropy rate")
	}
	cfg.Seed = 2
	c, _ := Open(cfg)
	if c.Fingerprint() != a.Fingerprint() {
		t.Error("the order seed changed the synthetic corpus")
	}
	cfg.SyntheticSeed = 6
	d, _ := Open(cfg)
	if d.Fingerprint() == a.Fingerprint() {
		t.Error("another synthetic seed gave the same corpus")
	}
	got := a.Config()
	if got.Tokenizer != "byte" || got.SyntheticVocab != DefaultSyntheticVocab || got.SyntheticBranching != DefaultSyntheticBranching {
		t.Errorf("defaults not resolved: %+v", got)
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		cfg  SourceConfig
		want string
	}{
		{SourceConfig{SeqLen: 8}, "data.source is required (allowed: synthetic, files, goroot, npy, tokens)"},
		{SourceConfig{Source: "web", SeqLen: 8}, `data.source = "web" not supported (allowed: synthetic, files, goroot, npy, tokens)`},
		{SourceConfig{Source: "files", SeqLen: 8}, "data.glob is required"},
		{SourceConfig{Source: "npy", SeqLen: 8}, "data.path is required"},
		{SourceConfig{Source: "goroot"}, "data.seq_len = 0: must be positive"},
		{SourceConfig{Source: "goroot", SeqLen: 8, EvalTokens: -5}, "eval.tokens = -5"},
		{SourceConfig{Source: "synthetic", SeqLen: 8, SyntheticVocab: 300}, "data.synthetic_vocab = 300: must be in [2, 256]"},
		{SourceConfig{Source: "synthetic", SeqLen: 8, SyntheticVocab: 8, SyntheticBranching: 9}, "data.synthetic_branching = 9"},
		{SourceConfig{Source: "synthetic", SeqLen: 8, SyntheticTokens: -1}, "data.synthetic_tokens = -1"},
		{SourceConfig{Source: "goroot", SeqLen: 8, SyntheticSeed: 3}, "data.synthetic_* keys apply only"},
		{SourceConfig{Source: "goroot", SeqLen: 8, Glob: "*.txt"}, "data.glob applies only"},
		{SourceConfig{Source: "synthetic", SeqLen: 8, Path: "x"}, "data.path applies only"},
	}
	for _, tc := range tests {
		_, err := Open(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := Open(SourceConfig{Source: "synthetic", SeqLen: 8, SyntheticTokens: 100, Tokenizer: "gpt3"}); err == nil || !strings.Contains(err.Error(), `data.tokenizer: unknown tokenizer "gpt3"`) {
		t.Errorf("unknown tokenizer: err = %v", err)
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFilesSource(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"b.txt": "beta", "a.txt": "alpha", "c.md": "not matched"})
	os.Mkdir(filepath.Join(dir, "d.txt"), 0o755) // a directory the glob matches: skipped
	cfg := SourceConfig{Source: SourceFiles, Glob: filepath.Join(dir, "*.txt"), SeqLen: 2}
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok := c.Tokenizer()
	want := append(tok.Encode([]byte("alpha")), tok.EOS())
	want = append(want, tok.Encode([]byte("beta"))...)
	want = append(want, tok.EOS())
	if got := allTokens(c); !slices.Equal(got, want[:len(want)/2*2]) {
		t.Errorf("tokens %q, want %q", tok.Decode(got), tok.Decode(want))
	}
	if in := c.Info(); in.Documents != 2 || in.SourceBytes != 9 || in.Tokens != 11 {
		t.Errorf("info %+v, want 2 documents, 9 bytes, 11 tokens", in)
	}
	if _, err := Open(SourceConfig{Source: SourceFiles, Glob: filepath.Join(dir, "*.none"), SeqLen: 2}); err == nil || !strings.Contains(err.Error(), "matches no regular files") {
		t.Errorf("empty glob: err = %v", err)
	}
	if _, err := Open(SourceConfig{Source: SourceFiles, Glob: "[", SeqLen: 2}); err == nil || !strings.Contains(err.Error(), `data.glob = "["`) {
		t.Errorf("bad glob: err = %v", err)
	}
}

// allTokens reads the whole stream back through windows.
func allTokens(c *Corpus) []int32 {
	var out []int32
	buf := make([]int32, c.SeqLen())
	for w := int64(0); w < c.NumTokens()/int64(c.SeqLen()); w++ {
		c.Window(w, buf)
		out = append(out, buf...)
	}
	return out
}

func TestShardCache(t *testing.T) {
	dir, cache := t.TempDir(), filepath.Join(t.TempDir(), "tokens")
	writeFiles(t, dir, map[string]string{"a.txt": strings.Repeat("hello, world\n", 100), "b.txt": "bye"})
	cfg := SourceConfig{Source: SourceFiles, Glob: filepath.Join(dir, "*.txt"), SeqLen: 16, CacheDir: cache}
	first, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := first.Info().CachePath
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no shard written: %v", err)
	}
	cached, _, err := ReadShardFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cached, allTokensFlat(first)) {
		t.Fatal("the cached shard differs from the tokenized corpus")
	}
	second, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if second.Fingerprint() != first.Fingerprint() || !slices.Equal(allTokensFlat(second), cached) {
		t.Error("reloading from the cache changed the corpus")
	}

	// Prove the second load reads the shard: plant a different valid shard under the key.
	planted := slices.Clone(cached)
	planted[0] = 'X'
	if err := WriteShardFile(path, planted, ByteVocab); err != nil {
		t.Fatal(err)
	}
	third, _ := Open(cfg)
	if allTokensFlat(third)[0] != 'X' {
		t.Error("Open tokenized again instead of loading the cached shard")
	}
	// A damaged shard is rebuilt.
	raw, _ := os.ReadFile(path)
	os.WriteFile(path, raw[:len(raw)-3], 0o644)
	fourth, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if fourth.Fingerprint() != first.Fingerprint() {
		t.Error("a truncated cache shard was not rebuilt")
	}
	// Editing a file changes the key.
	writeFiles(t, dir, map[string]string{"b.txt": "bye!"})
	fifth, _ := Open(cfg)
	if fifth.Info().CachePath == path || fifth.Fingerprint() == first.Fingerprint() {
		t.Error("an edited file reused the old cache entry")
	}
}

func allTokensFlat(c *Corpus) []int32 { return c.tokens.int32s() }

func TestNPYSource(t *testing.T) {
	dir := t.TempDir()
	seqs := rampTokens(12 * 8)
	p2 := filepath.Join(dir, "seqs.npy")
	p1 := filepath.Join(dir, "stream.npy")
	if err := WriteNPYFile(p2, Int32Array(seqs, 12, 8)); err != nil {
		t.Fatal(err)
	}
	if err := WriteNPYFile(p1, &Array{Shape: []int{96}, DType: "uint16", Ints: Int32Array(seqs).Ints}); err != nil {
		t.Fatal(err)
	}
	c, err := Open(SourceConfig{Source: SourceNPY, Path: p2, EvalTokens: 16})
	if err != nil {
		t.Fatal(err)
	}
	if c.SeqLen() != 8 || c.NumTrainSeqs() != 10 || c.NumEvalSeqs() != 2 {
		t.Errorf("[12, 8] file: seq_len %d, %d train, %d eval; want 8, 10, 2", c.SeqLen(), c.NumTrainSeqs(), c.NumEvalSeqs())
	}
	// Every row of the file is one sequence: each training sequence is some row, exactly.
	got := make([]int32, 8)
	for i := int64(0); i < c.NumTrainSeqs(); i++ {
		c.TrainSeq(i, got)
		w := c.TrainWindow(i)
		if !slices.Equal(got, seqs[w*8:(w+1)*8]) {
			t.Fatalf("training sequence %d is not row %d", i, w)
		}
	}
	s, err := Open(SourceConfig{Source: SourceNPY, Path: p1, SeqLen: 8, EvalTokens: 16})
	if err != nil {
		t.Fatal(err)
	}
	if s.Fingerprint() != c.Fingerprint() {
		t.Error("the same tokens as a stream and as rows gave different fingerprints")
	}
	p3 := filepath.Join(dir, "cube.npy")
	WriteNPYFile(p3, Int32Array(seqs, 2, 6, 8))
	bad := filepath.Join(dir, "bad.npy")
	WriteNPYFile(bad, Int32Array([]int32{1, 2, 3, 999}))
	tests := []struct {
		cfg  SourceConfig
		want string
	}{
		{SourceConfig{Source: SourceNPY, Path: p2, SeqLen: 4}, "data.seq_len = 4 but"},
		{SourceConfig{Source: SourceNPY, Path: p1}, "data.seq_len is required for the 1-D token stream"},
		{SourceConfig{Source: SourceNPY, Path: p3, SeqLen: 8}, "want a 1-D token stream or [N, L] sequences"},
		{SourceConfig{Source: SourceNPY, Path: bad, SeqLen: 2}, "token 999 at position 3 outside the vocabulary [0, 260) of tokenizer byte"},
		{SourceConfig{Source: SourceNPY, Path: filepath.Join(dir, "missing.npy"), SeqLen: 2}, "missing.npy"},
	}
	for _, tc := range tests {
		_, err := Open(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", filepath.Base(tc.cfg.Path), err, tc.want)
		}
	}
}

func TestGorootSource(t *testing.T) {
	start := time.Now()
	root, err := GoRoot()
	if err != nil {
		t.Skip(err)
	}
	c, err := Open(SourceConfig{Source: SourceGoroot, SeqLen: 1024, EvalTokens: 1 << 20, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	in := c.Info()
	t.Logf("goroot %s: %d files, %d bytes, %d tokens (byte tokenizer), %d train and %d eval sequences of 1024, fingerprint %s, %v",
		root, in.Documents, in.SourceBytes, in.Tokens, in.TrainSeqs, in.EvalSeqs, in.Fingerprint[:16], time.Since(start).Round(time.Millisecond))
	if in.Documents < 1000 || in.Tokens < 10_000_000 {
		t.Errorf("goroot corpus has %d files and %d tokens: want a real source tree (>= 1000 files, >= 10M tokens)", in.Documents, in.Tokens)
	}
	if in.Tokens != in.SourceBytes+int64(in.Documents) {
		t.Errorf("%d tokens from %d bytes in %d files: want one token a byte plus one EOS a file", in.Tokens, in.SourceBytes, in.Documents)
	}
	// The stream starts with the first file in sorted order, with no BOS.
	first := make([]int32, 1024)
	c.Window(0, first)
	docs, _ := goSourceFiles(root)
	if !slices.IsSortedFunc(docs, func(a, b document) int { return strings.Compare(a.name, b.name) }) {
		t.Fatal("goroot files are not in sorted order")
	}
	body, _ := os.ReadFile(docs[0].path)
	n := min(len(body), 1024)
	if !slices.Equal(first[:n], c.Tokenizer().Encode(body[:n])) {
		t.Errorf("window 0 does not start with %s", docs[0].name)
	}
	for _, d := range docs {
		if strings.HasSuffix(d.name, "_test.go") || strings.Contains("/"+d.name, "/testdata/") {
			t.Fatalf("goroot corpus includes %s", d.name)
		}
	}
	ev := map[int64]bool{}
	for _, w := range c.EvalWindows() {
		ev[w] = true
	}
	for i := int64(0); i < c.NumTrainSeqs(); i += 97 {
		if ev[c.TrainWindow(i)] {
			t.Fatalf("training sequence %d reads eval window %d", i, c.TrainWindow(i))
		}
	}
}
