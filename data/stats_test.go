package data

import (
	"math"
	"testing"
)

// TestUnigramEntropy: on the synthetic chain, token frequencies follow the stationary
// distribution, so the unigram entropy approaches its entropy.
func TestUnigramEntropy(t *testing.T) {
	c, err := Open(SourceConfig{Source: SourceSynthetic, SeqLen: 64, SyntheticTokens: 1 << 20, EvalTokens: 4096})
	if err != nil {
		t.Fatal(err)
	}
	got, want := c.UnigramEntropy(), c.Markov().StationaryEntropy()
	if math.Abs(got-want) > 0.01 {
		t.Errorf("unigram entropy %.4f, stationary entropy %.4f", got, want)
	}
	if h := c.Markov().EntropyRate(); h >= got {
		t.Errorf("entropy rate %.4f should be below the unigram entropy %.4f", h, got)
	}
}
