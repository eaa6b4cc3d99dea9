package data

import "math"

// UnigramEntropy is the entropy, in nats per token, of the token frequencies of the training
// windows: the loss of the best model that ignores context, the bar any real training run
// must clear.
func (c *Corpus) UnigramEntropy() float64 {
	counts := c.trainCounts()
	n := c.nTrain * int64(c.seqLen)
	var h float64
	for _, k := range counts {
		if k > 0 {
			p := float64(k) / float64(n)
			h -= p * math.Log(p)
		}
	}
	return h
}

// trainCounts counts each token id in the training windows. A source that counted its whole
// stream (a token set) gives the counts less those of the eval windows and of the tokens after
// the last whole window, so a corpus larger than memory is not read through.
func (c *Corpus) trainCounts() []int64 {
	counts := make([]int64, c.tok.VocabSize())
	buf := make([]int32, c.seqLen)
	if all := c.src.unigram; len(all) == len(counts) {
		copy(counts, all)
		for _, w := range c.evalWin {
			c.Window(w, buf)
			for _, t := range buf {
				counts[t]--
			}
		}
		tail := make([]int32, c.tokens.len()-c.nWindows*int64(c.seqLen))
		c.tokens.read(c.nWindows*int64(c.seqLen), tail)
		for _, t := range tail {
			counts[t]--
		}
		return counts
	}
	for i := int64(0); i < c.nTrain; i++ {
		c.Window(c.trainSlot(i), buf)
		for _, t := range buf {
			counts[t]++
		}
	}
	return counts
}
