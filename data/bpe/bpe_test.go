package bpe

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"cbs/data"

	"cbs/data/internal/bytelevel"
)

func gpt2(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := GPT2()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestEmbeddedFiles checks that the embedded files are GPT-2's, as NOTICE states.
func TestEmbeddedFiles(t *testing.T) {
	for name, want := range map[string]string{
		"encoder.json.gz": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
		"vocab.bpe.gz":    "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
	} {
		b, err := readGz(name)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s: sha256 %s, want %s", name, got, want)
		}
	}
}

// TestGolden compares with ids from the JavaScript reference (testdata/golden.js).
func TestGolden(t *testing.T) {
	tok := gpt2(t)
	b, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Text string
		IDs  []int32
	}
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 400 {
		t.Fatalf("golden.json holds %d cases, want at least 400", len(cases))
	}
	failed := 0
	for _, c := range cases {
		got := tok.Encode([]byte(c.Text))
		if !reflect.DeepEqual(got, c.IDs) && !(len(got) == 0 && len(c.IDs) == 0) {
			if failed++; failed <= 10 {
				t.Errorf("Encode(%.80q)\n got %v\nwant %v", c.Text, head(got), head(c.IDs))
			}
		}
		if dec := tok.Decode(c.IDs); dec != c.Text {
			t.Errorf("Decode(ids of %.80q) = %.80q", c.Text, dec)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d golden cases differ", failed, len(cases))
	}
}

func head(ids []int32) []int32 {
	if len(ids) > 40 {
		return ids[:40]
	}
	return ids
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"I'm don't", []string{"I", "'m", " don", "'t"}},
		{"we'll they've you're", []string{"we", "'ll", " they", "'ve", " you", "'re"}},
		{"DON'T", []string{"DON", "'", "T"}},
		{"'''s", []string{"'''", "s"}},
		{" 's", []string{" '", "s"}},
		{"a  b", []string{"a", " ", " b"}},
		{"a   \n", []string{"a", "   \n"}},
		{"a\n\nb", []string{"a", "\n", "\n", "b"}},
		{"\t\tx", []string{"\t", "\t", "x"}},
		{"x \t y", []string{"x", " \t", " y"}},
		{"  ", []string{"  "}},
		{"abc123 456", []string{"abc", "123", " 456"}},
		{"x²+½", []string{"x", "²", "+", "½"}},
		{"e\u0301!", []string{"e", "\u0301!"}},
		{"a\u3000\u3000b", []string{"a", "\u3000", "\u3000", "b"}},
		{"a\x85b", []string{"a", "\x85", "b"}},
		{"\xff\xfeab\xff", []string{"\xff\xfe", "ab", "\xff"}},
		{" \xffz", []string{" \xff", "z"}},
	} {
		var got []string
		for s := []byte(tc.in); len(s) > 0; {
			n := nextPiece(s)
			got = append(got, string(s[:n]))
			s = s[n:]
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("split %q = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSpecial(t *testing.T) {
	tok := gpt2(t)
	if tok.Name() != "gpt2" || tok.VocabSize() != 50259 {
		t.Errorf("name %q vocab %d, want gpt2 50259", tok.Name(), tok.VocabSize())
	}
	if tok.BOS() != 50256 || tok.EOS() != 50256 || tok.Mask() != 50257 || tok.Pad() != 50258 {
		t.Errorf("BOS %d EOS %d MASK %d PAD %d", tok.BOS(), tok.EOS(), tok.Mask(), tok.Pad())
	}
	got := tok.Decode([]int32{15496, tok.EOS(), tok.Mask(), tok.Pad(), -1, 50259, 995})
	if want := "Hello<|endoftext|><|mask|><|pad|>\ufffd\ufffd world"; got != want {
		t.Errorf("Decode = %q, want %q", got, want)
	}
	if b, ok := tok.TokenBytes(220); !ok || string(b) != " " {
		t.Errorf("TokenBytes(220) = %q, %v", b, ok)
	}
	if _, ok := tok.TokenBytes(50259); ok {
		t.Error("TokenBytes(50259) reports a token")
	}
	for _, id := range tok.Encode([]byte("<|endoftext|><|mask|>")) {
		if id >= 50256 {
			t.Errorf("special id %d produced from text", id)
		}
	}
	// Every byte is a token of its own, and every id below 50256 decodes to distinct bytes.
	seen := map[string]int32{}
	for id := int32(0); id < 50257; id++ {
		b, _ := tok.TokenBytes(id)
		if prev, dup := seen[string(b)]; dup {
			t.Fatalf("ids %d and %d both decode to %q", prev, id, b)
		}
		seen[string(b)] = id
	}
}

func TestRegistered(t *testing.T) {
	tok, err := data.NewTokenizer("gpt2")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Name() != "gpt2" || tok.VocabSize() != 50259 {
		t.Errorf("registered tokenizer is %q with %d ids", tok.Name(), tok.VocabSize())
	}
}

// randomBytes draws strings mixing ASCII, multi-byte UTF-8, whitespace and invalid bytes.
func randomBytes(r *rand.Rand, n int) []byte {
	pool := []string{"a", "Z", "q", " ", " ", "  ", "\t", "\n", "'", "'s", "0", "7", ".", ",", "é", "日",
		"😀", "\u3000", "\u00a0", "\xff", "\xc3", "\xe6\x97", "\x80", "\xed\xa0\x80", "\x00", "the", "ing"}
	var b []byte
	for len(b) < n {
		if r.IntN(4) == 0 {
			b = append(b, byte(r.IntN(256)))
		} else {
			b = append(b, pool[r.IntN(len(pool))]...)
		}
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	tok := gpt2(t)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		b := randomBytes(r, r.IntN(200))
		if i%100 == 0 {
			b = append(b, bytes.Repeat([]byte("ab"), 500)...) // long piece
		}
		ids := tok.Encode(b)
		if got := tok.Decode(ids); got != string(b) {
			t.Fatalf("Decode(Encode(%q)) = %q", b, got)
		}
		for _, id := range ids {
			if id < 0 || id >= 50256 {
				t.Fatalf("Encode(%q) produced id %d", b, id)
			}
		}
	}
}

// TestMergeLong checks that the heap-based merge agrees with the direct one.
func TestMergeLong(t *testing.T) {
	tok := gpt2(t)
	r := rand.New(rand.NewPCG(3, 4))
	alphabets := []string{"ab", "abc ", "aaaa", "0123456789", "the quick brown fox", "ééé日本", "\xff\x00a"}
	for i := range 500 {
		alpha := alphabets[i%len(alphabets)]
		piece := make([]byte, 2+r.IntN(300))
		for j := range piece {
			piece[j] = alpha[r.IntN(len(alpha))]
		}
		if got, want := bytelevel.MergeHeap(piece, &tok.bpe.ByteID, tok.bpe.Merges), bytelevel.MergeScan(piece, &tok.bpe.ByteID, tok.bpe.Merges); !reflect.DeepEqual(got, want) {
			t.Fatalf("MergeHeap(%q) = %v, MergeScan gives %v", piece, got, want)
		}
	}
	// A long run costs n log n, not n²: this would take minutes with the direct merge.
	long := bytes.Repeat([]byte("abcdefghij"), 20000)
	ids := tok.Encode(long)
	if tok.Decode(ids) != string(long) {
		t.Fatal("long piece does not round-trip")
	}
}

func TestConcurrent(t *testing.T) {
	tok := gpt2(t)
	text := []byte(strings.Repeat("The cat's whiskers, naïvely 12345 twitched.\n", 50))
	want := tok.Encode(text)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for range 50 {
				tok.Encode(randomBytes(r, 100))
				if got := tok.Encode(text); !reflect.DeepEqual(got, want) {
					t.Error("concurrent Encode differs")
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzRoundTrip(f *testing.F) {
	tok := gpt2(f)
	f.Add([]byte("hello world"))
	f.Add([]byte("\xff\xfe 's  \t\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got := tok.Decode(tok.Encode(b)); got != string(b) {
			t.Fatalf("Decode(Encode(%q)) = %q", b, got)
		}
		if utf8.Valid(b) {
			// Pieces never split a character of valid text.
			for s := b; len(s) > 0; {
				n := nextPiece(s)
				if !utf8.Valid(s[:n]) {
					t.Fatalf("piece %q of valid text is not valid UTF-8", s[:n])
				}
				s = s[n:]
			}
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	tok := gpt2(b)
	src, err := os.ReadFile("bpe.go")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("warm", func(b *testing.B) {
		tok.Encode(src)
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			tok.Encode(src)
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			tok.bpe.Cache.Reset()
			tok.Encode(src)
		}
	})
}

func BenchmarkLoad(b *testing.B) {
	for b.Loop() {
		if _, err := load(); err != nil {
			b.Fatal(err)
		}
	}
}
