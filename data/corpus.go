package data

import (
	"fmt"
	"math/bits"

	"cbs/internal/rng"
)

// evalBlocksMax is the most contiguous pieces the eval split is cut into.
const evalBlocksMax = 16

// Corpus is a token stream cut into windows of SeqLen tokens, split into a held-out eval set and
// a training set, with a deterministic order over the training windows.
//
// Window w holds tokens [w*SeqLen, (w+1)*SeqLen); tokens after the last whole window are unused.
// The eval split is ceil(EvalTokens/SeqLen) windows taken as up to 16 contiguous blocks spread
// evenly through the stream, and every other window is a training window. Spreading the blocks
// matters for sorted sources: the tail of the Go tree, for instance, is generated Unicode
// tables, no sample of the rest. Eval and training windows never share a token position.
//
// Training sequence i, for any i >= 0, is training window perm_e(i mod n) of epoch
// e = i / n, where n = NumTrainSeqs and perm_e is a pseudo-random permutation keyed by
// (Seed, e). Each epoch visits every training window once, and the sequence at index i depends
// only on (corpus, Seed, i): branches that consume indices 0, 1, 2, ... see the same sequences
// in the same order however they group them into batches. A run's data cursor is therefore one
// int64, the index of its next training sequence.
type Corpus struct {
	cfg      SourceConfig
	tok      Tokenizer
	tokens   *tokenArray
	seqLen   int
	nWindows int64
	nTrain   int64
	blocks   []block // eval blocks, sorted by start, disjoint
	evalWin  []int64 // window of each eval sequence, ascending
	fp       string
	src      *loaded
}

// block is a run of consecutive eval windows.
type block struct{ start, len int64 }

func newCorpus(cfg SourceConfig, tok Tokenizer, src *loaded) (*Corpus, error) {
	c := &Corpus{cfg: cfg, tok: tok, tokens: src.tokens, seqLen: cfg.SeqLen, src: src}
	c.nWindows = c.tokens.len() / int64(c.seqLen)
	nEval := (cfg.EvalTokens + int64(c.seqLen) - 1) / int64(c.seqLen)
	if nEval >= c.nWindows {
		return nil, fmt.Errorf("eval.tokens = %d (%d sequences of %d tokens) leaves no training sequences: the corpus has %d tokens, %d sequences",
			cfg.EvalTokens, nEval, c.seqLen, c.tokens.len(), c.nWindows)
	}
	c.nTrain = c.nWindows - nEval
	if nEval > 0 {
		nb := min(nEval, evalBlocksMax)
		// nb blocks of eval windows interleaved with nb+1 gaps of training windows, both as
		// even as integer division allows.
		pos := int64(0)
		for b := int64(0); b < nb; b++ {
			pos += share(c.nTrain, nb+1, b)
			l := share(nEval, nb, b)
			c.blocks = append(c.blocks, block{pos, l})
			for w := pos; w < pos+l; w++ {
				c.evalWin = append(c.evalWin, w)
			}
			pos += l
		}
	}
	if src.digest == nil {
		d := c.tokens.digest()
		src.digest = &d
	}
	c.fp = fingerprint(tok.Name(), *src.digest)
	return c, nil
}

// share is the size of part b when total is cut into parts pieces as evenly as possible.
func share(total, parts, b int64) int64 {
	hi1, lo1 := bits.Mul64(uint64(total), uint64(b+1))
	hi0, lo0 := bits.Mul64(uint64(total), uint64(b))
	q1, _ := bits.Div64(hi1, lo1, uint64(parts))
	q0, _ := bits.Div64(hi0, lo0, uint64(parts))
	return int64(q1 - q0)
}

// Tokenizer is the corpus's tokenizer.
func (c *Corpus) Tokenizer() Tokenizer { return c.tok }

// Config is the resolved configuration the corpus was built from.
func (c *Corpus) Config() SourceConfig { return c.cfg }

// SeqLen is the tokens per sequence.
func (c *Corpus) SeqLen() int { return c.seqLen }

// NumTokens is the length of the whole token stream, eval split included.
func (c *Corpus) NumTokens() int64 { return c.tokens.len() }

// NumTrainSeqs is the number of distinct training sequences: one epoch.
func (c *Corpus) NumTrainSeqs() int64 { return c.nTrain }

// NumEvalSeqs is the number of eval sequences.
func (c *Corpus) NumEvalSeqs() int { return len(c.evalWin) }

// Fingerprint is a hex sha256 of the tokenizer name and the token stream, for manifests: equal
// fingerprints mean identical tokens. The split and order depend also on SeqLen, EvalTokens and
// Seed, which a run records with its config.
func (c *Corpus) Fingerprint() string { return c.fp }

// Markov is the chain of a synthetic corpus, nil for other sources.
func (c *Corpus) Markov() *Markov { return c.src.markov }

// Epoch is the epoch that training sequence i belongs to: 0 until the stream first repeats.
func (c *Corpus) Epoch(i int64) int64 {
	if i < 0 {
		panic(fmt.Sprintf("data: Epoch of negative sequence index %d", i))
	}
	return i / c.nTrain
}

// Window copies window w of the token stream into dst, which must hold SeqLen tokens.
func (c *Corpus) Window(w int64, dst []int32) {
	if w < 0 || w >= c.nWindows {
		panic(fmt.Sprintf("data: window %d outside [0, %d)", w, c.nWindows))
	}
	c.checkDst(dst)
	c.tokens.read(w*int64(c.seqLen), dst)
}

func (c *Corpus) checkDst(dst []int32) {
	if len(dst) != c.seqLen {
		panic(fmt.Sprintf("data: destination holds %d tokens, want SeqLen = %d", len(dst), c.seqLen))
	}
}

// TrainWindow is the window that training sequence i reads.
func (c *Corpus) TrainWindow(i int64) int64 {
	if i < 0 {
		panic(fmt.Sprintf("data: negative training sequence index %d", i))
	}
	e, j := i/c.nTrain, i%c.nTrain
	return c.trainSlot(permute(c.cfg.Seed, e, j, c.nTrain))
}

// trainSlot is the j-th window, in stream order, that is not in the eval split.
func (c *Corpus) trainSlot(j int64) int64 {
	w := j
	for _, b := range c.blocks {
		if w < b.start {
			break
		}
		w += b.len
	}
	return w
}

// TrainSeq copies training sequence i (an absolute index in the stream, any i >= 0) into dst,
// which must hold SeqLen tokens.
func (c *Corpus) TrainSeq(i int64, dst []int32) {
	c.checkDst(dst)
	c.tokens.read(c.TrainWindow(i)*int64(c.seqLen), dst)
}

// EvalWindows lists the window of each eval sequence, in order.
func (c *Corpus) EvalWindows() []int64 { return append([]int64(nil), c.evalWin...) }

// EvalSeq copies eval sequence k into dst, which must hold SeqLen tokens.
func (c *Corpus) EvalSeq(k int, dst []int32) {
	if k < 0 || k >= len(c.evalWin) {
		panic(fmt.Sprintf("data: eval sequence %d outside [0, %d)", k, len(c.evalWin)))
	}
	c.Window(c.evalWin[k], dst)
}

// EvalSeqs returns a fresh copy of the eval set: NumEvalSeqs sequences of SeqLen tokens, the
// same at every call. Pair sequence k with EvalMask(seed, k, ...) for frozen MDM masks.
func (c *Corpus) EvalSeqs() [][]int32 {
	out := make([][]int32, len(c.evalWin))
	flat := make([]int32, len(c.evalWin)*c.seqLen)
	for k := range out {
		out[k] = flat[k*c.seqLen : (k+1)*c.seqLen : (k+1)*c.seqLen]
		c.EvalSeq(k, out[k])
	}
	return out
}

// Cursor returns a reader of the training stream starting at sequence next.
func (c *Corpus) Cursor(next int64) *Cursor {
	if next < 0 {
		panic(fmt.Sprintf("data: cursor at negative sequence index %d", next))
	}
	return &Cursor{Corpus: c, Next: next}
}

// Cursor reads training sequences in stream order, or in a replica's order. Its whole state is
// Next, the position of the next sequence it will read, and the Replica it reads: a checkpoint
// saves both, and a resumed or forked run continues with exactly the sequences the original
// would have read.
type Cursor struct {
	Corpus  *Corpus
	Next    int64
	Replica Replica
}

// Replica is a seed replicate of a branch: the same tokens from the fork on, in another order.
// Index 0 reads the stream as it is. Index r > 0 permutes, with a key of its own, the training
// sequences the parent had not yet reached in its epoch at the fork (positions From to the
// epoch's end) and every later epoch whole. A replicate therefore never re-reads what the
// parent read in the fork's epoch, and sees the same set of sequences as replicate 0 over that
// epoch, only in another order.
type Replica struct {
	Index int64
	From  int64
}

// ReplicaSeq is the stream index that position i of replica rep reads.
func (c *Corpus) ReplicaSeq(rep Replica, i int64) int64 {
	if i < 0 || rep.From < 0 || rep.Index < 0 {
		panic(fmt.Sprintf("data: ReplicaSeq(%+v, %d) with a negative index", rep, i))
	}
	if rep.Index == 0 || i < rep.From {
		return i
	}
	n := c.nTrain
	key := rng.Key(c.cfg.Seed, "replica-order", uint64(rep.Index)).Key
	e, j := i/n, i%n
	if e == rep.From/n {
		j0 := rep.From % n
		return e*n + j0 + permute(key, e, j-j0, n-j0)
	}
	return e*n + permute(key, e, j, n)
}

// Read fills dst, a whole number of sequences (len(dst) a multiple of SeqLen), with consecutive
// training sequences, advances Next past them and returns the position of the first, which keys
// the sequences' MDM masks (TrainMask(seed, first+b, ...)).
func (cur *Cursor) Read(dst []int32) (first int64) {
	L := cur.Corpus.seqLen
	if len(dst)%L != 0 {
		panic(fmt.Sprintf("data: Cursor.Read into %d tokens, not a multiple of SeqLen = %d", len(dst), L))
	}
	first = cur.Next
	for b := 0; b < len(dst)/L; b++ {
		cur.Corpus.TrainSeq(cur.Corpus.ReplicaSeq(cur.Replica, first+int64(b)), dst[b*L:(b+1)*L])
	}
	cur.Next = first + int64(len(dst)/L)
	return first
}

// Info summarises a corpus for manifests and logs.
type Info struct {
	Source      string `json:"source"`
	Tokenizer   string `json:"tokenizer"`
	Fingerprint string `json:"fingerprint"`
	Tokens      int64  `json:"tokens"`
	SeqLen      int    `json:"seq_len"`
	TrainSeqs   int64  `json:"train_seqs"`
	EvalSeqs    int    `json:"eval_seqs"`
	Documents   int    `json:"documents,omitempty"`
	// DuplicatesDropped is how many files a text source left out because an earlier file, in
	// name order, has the same bytes; Documents counts what remains.
	DuplicatesDropped int     `json:"duplicates_dropped,omitempty"`
	SourceBytes       int64   `json:"source_bytes,omitempty"`
	Root              string  `json:"root,omitempty"`       // the Go root, or the npy file
	CachePath         string  `json:"cache_path,omitempty"` // the shard the tokens came from or went to
	EntropyRate       float64 `json:"entropy_rate,omitempty"`
}

// Info describes the corpus.
func (c *Corpus) Info() Info {
	in := Info{
		Source: c.cfg.Source, Tokenizer: c.tok.Name(), Fingerprint: c.fp, Tokens: c.tokens.len(),
		SeqLen: c.seqLen, TrainSeqs: c.nTrain, EvalSeqs: len(c.evalWin),
		Documents: c.src.documents, DuplicatesDropped: c.src.duplicates, SourceBytes: c.src.bytes, Root: c.src.root, CachePath: c.src.cachePath,
	}
	if c.src.markov != nil {
		in.EntropyRate = c.src.markov.EntropyRate()
	}
	return in
}

// permute is a pseudo-random permutation of [0, n), keyed by (seed, epoch), evaluated at j
// without materialising it: a balanced Feistel network on the smallest even number of bits
// covering n, cycle-walked back into range. It costs O(1) memory whatever n is, and needs no
// cache, so concurrent branches at different epochs do not contend.
func permute(seed uint64, epoch, j, n int64) int64 {
	if n == 1 {
		return 0
	}
	k := bits.Len64(uint64(n - 1))
	k += k & 1
	half := uint(k / 2)
	mask := uint64(1)<<half - 1
	s := rng.Key(seed, "train-order", uint64(epoch))
	var keys [feistelRounds]uint64
	for r := range keys {
		keys[r] = s.Uint64()
	}
	x := uint64(j)
	for {
		l, r := x>>half, x&mask
		for _, key := range keys {
			l, r = r, l^(splitmix(r^key)&mask)
		}
		x = l<<half | r
		if x < uint64(n) {
			return int64(x)
		}
	}
}

const feistelRounds = 6

func splitmix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
