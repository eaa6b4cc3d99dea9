package data

import "math"

// UnigramEntropy is the entropy, in nats per token, of the token frequencies of the training
// windows: the loss of the best model that ignores context, the bar any real training run
// must clear.
func (c *Corpus) UnigramEntropy() float64 {
	counts := make([]int64, c.tok.VocabSize())
	buf := make([]int32, c.seqLen)
	var n int64
	for i := int64(0); i < c.nTrain; i++ {
		c.Window(c.trainSlot(i), buf)
		for _, t := range buf {
			counts[t]++
		}
		n += int64(len(buf))
	}
	var h float64
	for _, k := range counts {
		if k > 0 {
			p := float64(k) / float64(n)
			h -= p * math.Log(p)
		}
	}
	return h
}
