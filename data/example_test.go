package data_test

import (
	"fmt"

	"cbs/data"
)

// A branch reads its batches through a cursor and keys each sequence's mask by its absolute
// index, so a branch with a batch twice as large sees the same (sequence, mask) pairs.
func Example() {
	c, err := data.Open(data.SourceConfig{
		Source: "synthetic", SeqLen: 32, EvalTokens: 1024, Seed: 1,
		SyntheticTokens: 1 << 16, SyntheticVocab: 16, SyntheticBranching: 3,
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d train and %d eval sequences of %d tokens\n", c.NumTrainSeqs(), c.NumEvalSeqs(), c.SeqLen())
	fmt.Printf("entropy rate %.4f nats/token\n", c.Markov().EntropyRate())

	const batch = 4
	cur := c.Cursor(0) // a fork would start at its parent's cursor
	tokens := make([]int32, batch*c.SeqLen())
	masks := make([]bool, batch*c.SeqLen())
	p := make([]float64, batch)
	first := cur.Read(tokens)
	data.MDMBatchMasks(1, data.PurposeTrainMask, first, data.DefaultMaskEps, c.SeqLen(), masks, p)
	fmt.Printf("read sequences %d..%d; the cursor to save is %d\n", first, cur.Next-1, cur.Next)
	// Output:
	// 2016 train and 32 eval sequences of 32 tokens
	// entropy rate 0.8925 nats/token
	// read sequences 0..3; the cursor to save is 4
}
