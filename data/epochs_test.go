package data

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRepeatWarning(t *testing.T) {
	tests := []struct {
		train, budget int64
		want          string
	}{
		{73200, 256 << 10, "data: the training split holds 73.2K tokens; a 256Ki budget reads it 3.6 times (epochs). Add documents or lower the budget."},
		{1 << 20, 1 << 20, ""},
		{1 << 20, 1<<20 - 1, ""},
		{0, 1 << 20, ""},
		{1000, 1020, "data: the training split holds 1K tokens; a 1020 budget reads it 1.02 times (epochs). Add documents or lower the budget."},
		{999, 2 << 30, "data: the training split holds 999 tokens; a 2Gi budget reads it 2149633 times (epochs). Add documents or lower the budget."},
		{71_400_000, 100_000_000, "data: the training split holds 71.4M tokens; a 100M budget reads it 1.4 times (epochs). Add documents or lower the budget."},
	}
	for _, tc := range tests {
		if got := RepeatWarning(tc.train, tc.budget); got != tc.want {
			t.Errorf("RepeatWarning(%d, %d) = %q\nwant %q", tc.train, tc.budget, got, tc.want)
		}
	}
}

// TestTrainTokensMatchesOpen: the measure a plan takes without opening a corpus is the corpus's
// own, for every way TrainTokens gets it.
func TestTrainTokensMatchesOpen(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.txt": strings.Repeat("alpha beta\n", 40), "b.txt": "gamma", "c.txt": strings.Repeat("alpha beta\n", 40)})
	npy := filepath.Join(dir, "seqs.npy")
	if err := WriteNPYFile(npy, Int32Array(rampTokens(12*8), 12, 8)); err != nil {
		t.Fatal(err)
	}
	cfgs := []SourceConfig{
		{Source: SourceSynthetic, SeqLen: 16, SyntheticTokens: 5000, EvalTokens: 100},
		{Source: SourceFiles, Glob: filepath.Join(dir, "*.txt"), SeqLen: 7, EvalTokens: 30},
		{Source: SourceFiles, Glob: filepath.Join(dir, "*.txt"), SeqLen: 7, EvalTokens: 30, CacheDir: filepath.Join(dir, "cache")},
		{Source: SourceNPY, Path: npy, EvalTokens: 16},
	}
	if !testing.Short() {
		if _, err := GoRoot(); err == nil {
			cfgs = append(cfgs, SourceConfig{Source: SourceGoroot, SeqLen: 128, EvalTokens: 16 << 10})
		}
	}
	for _, cfg := range cfgs {
		c, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := TrainTokens(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if want := c.NumTrainSeqs() * int64(c.SeqLen()); got != want || c.TrainTokens() != want {
			t.Errorf("%s: TrainTokens %d, corpus %d, want %d training sequences x %d", cfg.Source, got, c.TrainTokens(), c.NumTrainSeqs(), c.SeqLen())
		}
	}
	if _, err := TrainTokens(SourceConfig{Source: SourceSynthetic, SeqLen: 16, SyntheticTokens: 64, EvalTokens: 64}); err == nil {
		t.Error("an eval split of the whole corpus: no error")
	}
	if _, err := TrainTokens(SourceConfig{Source: SourceFiles, Glob: filepath.Join(dir, "*.none"), SeqLen: 4}); err == nil {
		t.Error("a glob that matches nothing: no error")
	}
	// A plan measures; only training writes the cache.
	untouched := filepath.Join(dir, "untouched")
	if _, err := TrainTokens(SourceConfig{Source: SourceFiles, Glob: filepath.Join(dir, "*.txt"), SeqLen: 7, CacheDir: untouched}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(untouched); !os.IsNotExist(err) {
		t.Errorf("TrainTokens of the byte tokenizer wrote to the cache directory (stat: %v)", err)
	}
}
