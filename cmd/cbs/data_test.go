package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTextCorpus writes a few dozen text files, two of them with the same bytes, under dir.
func writeTextCorpus(t *testing.T, dir string) {
	t.Helper()
	for i := range 30 {
		sub := filepath.Join(dir, fmt.Sprintf("part%d", i%2))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		text := strings.Repeat(fmt.Sprintf("line %d of file %d: the quick brown fox jumps over the lazy dog\n", i*7%13, i), 40)
		if i == 17 {
			text = strings.Repeat("line 3 of file 4: the quick brown fox jumps over the lazy dog\n", 40)
		}
		if i == 4 {
			text = strings.Repeat("line 3 of file 4: the quick brown fox jumps over the lazy dog\n", 40)
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("doc%02d.txt", i)), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDataTokenize: cbs data tokenize writes a token set with a summary on stdout and progress
// on stderr, cbs data verify accepts it, and bad flags exit 2.
func TestDataTokenize(t *testing.T) {
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus")
	writeTextCorpus(t, corpus)
	out := filepath.Join(dir, "corpus.tok")
	code, stdout, stderr := cbs(t, "data", "tokenize", "--tokenizer", "gpt2", "--out", out, "--shard-tokens", "4Ki", corpus)
	if code != 0 {
		t.Fatalf("tokenize exited %d: %s", code, stderr)
	}
	for _, want := range []string{"documents           29\n", "duplicates dropped  1\n", "tokenizer           gpt2 (50259 ids)\n", "tokens ", "shards ", "of up to 4096 tokens, uint16\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "tokenize: ") || !strings.Contains(stderr, "MB/s") {
		t.Errorf("stderr %q: want a progress line with MB/s", stderr)
	}
	code, stdout, stderr = cbs(t, "data", "verify", out)
	if code != 0 || !strings.HasSuffix(stdout, "ok\n") {
		t.Errorf("verify exited %d: %s%s", code, stdout, stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--out", out, "--shard-tokens", "0", corpus}, "--shard-tokens"},
		{[]string{"--out", out, "--tokenizer", "nope", corpus}, "--tokenizer"},
		{[]string{corpus}, "--out is required"},
	} {
		code, _, stderr := cbs(t, append([]string{"data", "tokenize"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want exit %d naming %s", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

// tinyAR trains a small AR model on the [data] table given.
const tinyAR = `
[experiment]
name = "tiny"
seed = 3
[model]
hidden_size = 32
layers = 1
heads = 4
intermediate_size = 64
[data]
%s
seq_len = 32
[schedule]
warmup = "2Ki"
[train]
budget = "8Ki"
batch = "2Ki"
micro_batch = 16
[eval]
every = "4Ki"
tokens = "4Ki"
`

// TestTrainOnTokenSet: a run on a token set gives byte-identical metrics to the same run on
// the text files it was tokenized from; a config naming another tokenizer is refused with both.
func TestTrainOnTokenSet(t *testing.T) {
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus")
	writeTextCorpus(t, corpus)
	if code, _, stderr := cbs(t, "data", "tokenize", "--out", filepath.Join(dir, "corpus.tok"), "--shard-tokens", "5000", corpus); code != 0 {
		t.Fatalf("tokenize exited %d: %s", code, stderr)
	}
	var metrics []string
	for _, table := range []string{
		`source = "files"` + "\n" + `glob = "corpus/*/*.txt"`,
		`source = "tokens"` + "\n" + `path = "corpus.tok"`,
	} {
		cfg := writeConfig(t, dir, "tiny.toml", fmt.Sprintf(tinyAR, table))
		out := filepath.Join(dir, fmt.Sprint("run", len(metrics)))
		if code, _, stderr := cbs(t, "train", "--config", cfg, "--out", out, "--threads", "1", "--quiet"); code != 0 {
			t.Fatalf("%s: train exited %d: %s", table, code, stderr)
		}
		metrics = append(metrics, fileHash(t, filepath.Join(out, "metrics.jsonl")))
	}
	if metrics[0] != metrics[1] {
		t.Error("the run on the token set has other metrics than the run on the text files")
	}
	cfg := writeConfig(t, dir, "gpt2.toml", fmt.Sprintf(tinyAR, `source = "tokens"`+"\n"+`path = "corpus.tok"`+"\n"+`tokenizer = "gpt2"`))
	code, _, stderr := cbs(t, "config", "validate", cfg)
	if code != exitUsage || !strings.Contains(stderr, `data.tokenizer = "gpt2" is tokenizer gpt2, but the token set`) || !strings.Contains(stderr, "written with tokenizer byte") {
		t.Errorf("another tokenizer: exit %d, %q", code, stderr)
	}
}
