package data

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// rampTokens is a stream whose windows are easy to tell apart.
func rampTokens(n int) []int32 {
	t := make([]int32, n)
	for i := range t {
		t[i] = int32(i*31+i/7) % 256
	}
	return t
}

func TestSplitIsDisjointAndCovers(t *testing.T) {
	tests := []struct {
		tokens, seqLen int
		evalTokens     int64
		wantEval       int
	}{
		{1000, 10, 0, 0},
		{1000, 10, 1, 1},
		{1000, 10, 95, 10},
		{1003, 10, 500, 50}, // 3 tail tokens unused
		{100000, 7, 5000, 715},
		{20, 10, 10, 1},
		{64 * 33, 64, 64 * 32, 32},
	}
	for _, tc := range tests {
		c, err := FromTokens(SourceConfig{SeqLen: tc.seqLen, EvalTokens: tc.evalTokens, Seed: 3}, rampTokens(tc.tokens))
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		nWin := int64(tc.tokens / tc.seqLen)
		if c.NumEvalSeqs() != tc.wantEval || c.NumTrainSeqs() != nWin-int64(tc.wantEval) {
			t.Errorf("%+v: %d eval and %d train sequences, want %d and %d", tc, c.NumEvalSeqs(), c.NumTrainSeqs(), tc.wantEval, nWin-int64(tc.wantEval))
			continue
		}
		isEval := make([]bool, nWin)
		for _, w := range c.EvalWindows() {
			if isEval[w] {
				t.Fatalf("%+v: eval window %d listed twice", tc, w)
			}
			isEval[w] = true
		}
		// Two epochs: each visits every non-eval window exactly once, and no eval window.
		for e := int64(0); e < 2; e++ {
			seen := make([]bool, nWin)
			for j := int64(0); j < c.NumTrainSeqs(); j++ {
				w := c.TrainWindow(e*c.NumTrainSeqs() + j)
				if isEval[w] {
					t.Fatalf("%+v: training sequence %d reads eval window %d (token positions [%d, %d))", tc, e*c.NumTrainSeqs()+j, w, w*int64(tc.seqLen), (w+1)*int64(tc.seqLen))
				}
				if seen[w] {
					t.Fatalf("%+v: epoch %d visits window %d twice", tc, e, w)
				}
				seen[w] = true
			}
			for w := range seen {
				if !seen[w] && !isEval[w] {
					t.Fatalf("%+v: epoch %d never visits training window %d", tc, e, w)
				}
			}
		}
		// Contents: sequences are the windows they claim to be.
		want := make([]int32, tc.seqLen)
		got := make([]int32, tc.seqLen)
		stream := rampTokens(tc.tokens)
		for k, seq := range c.EvalSeqs() {
			w := c.EvalWindows()[k]
			if !slices.Equal(seq, stream[w*int64(tc.seqLen):(w+1)*int64(tc.seqLen)]) {
				t.Fatalf("%+v: eval sequence %d is not window %d", tc, k, w)
			}
		}
		for i := int64(0); i < 3*c.NumTrainSeqs(); i += 1 + c.NumTrainSeqs()/50 {
			c.TrainSeq(i, got)
			c.Window(c.TrainWindow(i), want)
			if !slices.Equal(got, want) {
				t.Fatalf("%+v: TrainSeq(%d) differs from its window", tc, i)
			}
		}
	}
}

func TestEvalSplitIsSpread(t *testing.T) {
	c, err := FromTokens(SourceConfig{SeqLen: 10, EvalTokens: 1600}, rampTokens(100000))
	if err != nil {
		t.Fatal(err)
	}
	ev := c.EvalWindows()
	// 160 eval windows of 10000, in 16 blocks of 10 with gaps of about 9840/17 = 578.
	if ev[0] < 500 || ev[len(ev)-1] > 10000-500 {
		t.Errorf("eval windows span [%d, %d], want them away from both ends of [0, 10000)", ev[0], ev[len(ev)-1])
	}
	blocks := 1
	for k := 1; k < len(ev); k++ {
		if ev[k] != ev[k-1]+1 {
			blocks++
		}
	}
	if blocks != 16 {
		t.Errorf("eval split in %d blocks, want 16", blocks)
	}
}

func TestSplitErrors(t *testing.T) {
	tests := []struct {
		cfg  SourceConfig
		n    int
		want string
	}{
		{SourceConfig{SeqLen: 10, EvalTokens: 100}, 100, "leaves no training sequences"},
		{SourceConfig{SeqLen: 10, EvalTokens: 91}, 109, "leaves no training sequences"},
		{SourceConfig{SeqLen: 10}, 9, "leaves no training sequences"},
		{SourceConfig{SeqLen: 0}, 100, "data.seq_len = 0"},
		{SourceConfig{SeqLen: 4, EvalTokens: -1}, 100, "eval.tokens = -1"},
		{SourceConfig{SeqLen: 4, Tokenizer: "nope"}, 100, `data.tokenizer: unknown tokenizer "nope"`},
	}
	for _, tc := range tests {
		_, err := FromTokens(tc.cfg, rampTokens(tc.n))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v on %d tokens: err = %v, want one containing %q", tc.cfg, tc.n, err, tc.want)
		}
	}
	if _, err := FromTokens(SourceConfig{SeqLen: 2}, []int32{1, 2, 260}); err == nil || !strings.Contains(err.Error(), "token 260 at position 2 outside the vocabulary [0, 260)") {
		t.Errorf("out-of-vocabulary token: err = %v", err)
	}
}

func TestTrainSeqIsPure(t *testing.T) {
	cfg := SourceConfig{SeqLen: 16, EvalTokens: 160, Seed: 11}
	c, err := FromTokens(cfg, rampTokens(16*1000+5))
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000 // three epochs
	ref := make([][]int32, n)
	for i := range ref {
		ref[i] = make([]int32, 16)
		c.TrainSeq(int64(i), ref[i])
	}
	// Any order, any goroutine, a separately built corpus: the same sequence for each index.
	c2, err := FromTokens(cfg, rampTokens(16*1000+5))
	if err != nil {
		t.Fatal(err)
	}
	order := rand.New(rand.NewPCG(1, 2)).Perm(n)
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := make([]int32, 16)
			for _, i := range order[g*n/4 : (g+1)*n/4] {
				c2.TrainSeq(int64(i), got)
				if !slices.Equal(got, ref[i]) {
					errs <- "differs"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if len(errs) > 0 {
		t.Fatal("TrainSeq gave a different sequence when called in another order or corpus")
	}
	// Epochs are reshuffled, and another seed gives another order over the same windows.
	if slices.Equal(orderOf(c, 0), orderOf(c, 1)) {
		t.Error("epochs 0 and 1 visit windows in the same order")
	}
	c3, _ := FromTokens(SourceConfig{SeqLen: 16, EvalTokens: 160, Seed: 12}, rampTokens(16*1000+5))
	if slices.Equal(orderOf(c, 0), orderOf(c3, 0)) {
		t.Error("seeds 11 and 12 give the same order")
	}
	if c.Fingerprint() != c3.Fingerprint() {
		t.Error("the seed changed the corpus fingerprint; it only orders the same tokens")
	}
	if c.Epoch(c.NumTrainSeqs()-1) != 0 || c.Epoch(c.NumTrainSeqs()) != 1 {
		t.Errorf("Epoch(n-1) = %d, Epoch(%d) = %d", c.Epoch(c.NumTrainSeqs()-1), c.NumTrainSeqs(), c.Epoch(c.NumTrainSeqs()))
	}
}

func orderOf(c *Corpus, epoch int64) []int64 {
	out := make([]int64, c.NumTrainSeqs())
	for j := range out {
		out[j] = c.TrainWindow(epoch*c.NumTrainSeqs() + int64(j))
	}
	return out
}

func TestCursorGroupingDoesNotMatter(t *testing.T) {
	c, err := FromTokens(SourceConfig{SeqLen: 8, EvalTokens: 80}, rampTokens(8*300))
	if err != nil {
		t.Fatal(err)
	}
	const total = 64 * 8 // sequences, past the first epoch of 290
	var streams [][]int32
	for _, batch := range []int{1, 4, 16, 64} {
		cur := c.Cursor(0)
		var all []int32
		buf := make([]int32, batch*8)
		for cur.Next < total {
			first := cur.Read(buf)
			if first != cur.Next-int64(batch) {
				t.Fatalf("batch %d: Read returned first = %d with Next = %d", batch, first, cur.Next)
			}
			all = append(all, buf...)
		}
		streams = append(streams, all)
	}
	for k := 1; k < len(streams); k++ {
		if !slices.Equal(streams[0], streams[k]) {
			t.Fatalf("grouping %d gave a different token stream from grouping 0", k)
		}
	}
	// Resuming from a saved cursor continues the same stream.
	cur := c.Cursor(100)
	buf := make([]int32, 8*10)
	cur.Read(buf)
	if !slices.Equal(buf, streams[0][100*8:110*8]) || cur.Next != 110 {
		t.Error("a cursor resumed at 100 does not continue the stream")
	}
}

func TestPermute(t *testing.T) {
	for _, n := range []int64{1, 2, 3, 5, 16, 17, 1000, 4097} {
		for e := int64(0); e < 3; e++ {
			seen := make([]bool, n)
			for j := int64(0); j < n; j++ {
				p := permute(9, e, j, n)
				if p < 0 || p >= n || seen[p] {
					t.Fatalf("n %d epoch %d: %d -> %d is not a permutation", n, e, j, p)
				}
				seen[p] = true
			}
		}
	}
	// Where element 0 lands, over many keys: about uniform.
	const n, trials = 10, 50000
	var counts [n]int
	for e := int64(0); e < trials; e++ {
		counts[permute(1, e, 0, n)]++
	}
	for v, k := range counts {
		if k < trials/n*85/100 || k > trials/n*115/100 {
			t.Errorf("element 0 landed on %d %d times in %d, want about %d", v, k, trials, trials/n)
		}
	}
}

func TestCorpusPanics(t *testing.T) {
	c, err := FromTokens(SourceConfig{SeqLen: 4, EvalTokens: 4}, rampTokens(40))
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(){
		"short dst":         func() { c.TrainSeq(0, make([]int32, 3)) },
		"negative index":    func() { c.TrainSeq(-1, make([]int32, 4)) },
		"eval out of range": func() { c.EvalSeq(1, make([]int32, 4)) },
		"window past end":   func() { c.Window(10, make([]int32, 4)) },
		"ragged read":       func() { c.Cursor(0).Read(make([]int32, 6)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}

// A replicate forked at position From reads, until the end of that epoch, exactly the sequences
// the parent had not read, in an order of its own; the token hashes of what it reads and of what
// the parent read share nothing. Replicate 0 is the stream itself.
func TestReplicaNeverRereadsTheParent(t *testing.T) {
	// Random bytes, so no two windows hold the same tokens.
	toks := make([]int32, 16*1000+5)
	g := rand.New(rand.NewPCG(7, 8))
	for i := range toks {
		toks[i] = int32(g.IntN(256))
	}
	c, err := FromTokens(SourceConfig{SeqLen: 16, EvalTokens: 160, Seed: 11}, toks)
	if err != nil {
		t.Fatal(err)
	}
	n := c.NumTrainSeqs()
	hash := func(seq []int32) string {
		h := sha256.New()
		for _, v := range seq {
			fmt.Fprintf(h, "%d,", v)
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	read := func(rep Replica, from, to int64) []string {
		cur := c.Cursor(from)
		cur.Replica = rep
		buf := make([]int32, 16)
		var out []string
		for i := from; i < to; i++ {
			cur.Read(buf)
			out = append(out, hash(buf))
		}
		return out
	}
	for _, tc := range []struct{ from int64 }{{0}, {1}, {n / 3}, {n - 1}, {n + n/2}} {
		epochEnd := (tc.from/n + 1) * n
		parent := read(Replica{}, (tc.from/n)*n, tc.from)
		base := read(Replica{}, tc.from, epochEnd)
		seen := map[string]bool{}
		for _, h := range parent {
			seen[h] = true
		}
		var orders [][]string
		for r := int64(1); r <= 3; r++ {
			got := read(Replica{Index: r, From: tc.from}, tc.from, epochEnd)
			for i, h := range got {
				if seen[h] {
					t.Fatalf("from %d, replicate %d: position %d re-reads a sequence the parent read", tc.from, r, tc.from+int64(i))
				}
			}
			if !slices.Equal(sorted(got), sorted(base)) {
				t.Fatalf("from %d, replicate %d: reads another set of sequences than replicate 0 over the rest of the epoch", tc.from, r)
			}
			orders = append(orders, got)
			// The next epoch is a whole permutation of the training windows.
			next := make(map[int64]bool)
			for i := epochEnd; i < epochEnd+n; i++ {
				next[c.ReplicaSeq(Replica{Index: r, From: tc.from}, i)] = true
			}
			if int64(len(next)) != n {
				t.Fatalf("from %d, replicate %d: the epoch after the fork visits %d of %d sequences", tc.from, r, len(next), n)
			}
		}
		if epochEnd-tc.from > 4 && (slices.Equal(orders[0], base) || slices.Equal(orders[0], orders[1])) {
			t.Errorf("from %d: replicates 0, 1 and 2 do not all read in different orders", tc.from)
		}
		if !slices.Equal(read(Replica{Index: 0, From: tc.from}, tc.from, epochEnd), base) {
			t.Errorf("from %d: replicate 0 is not the stream itself", tc.from)
		}
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
