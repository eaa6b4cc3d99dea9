package bytelevel

import "container/heap"

// PairKey packs two adjacent ids into a key of a merge table. A merge table maps PairKey(a, b)
// to rank<<32 | the id of the merged token; a lower rank merges first.
func PairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// shortPiece is the longest piece merged by scanning; a longer one (a run of thousands of
// letters or digits) keeps a heap of candidate pairs, which costs n log n instead of n².
const shortPiece = 64

// Merge applies byte-level BPE to piece: one token per byte (byteID), then repeatedly the
// adjacent pair with the lowest rank in merges, its leftmost occurrence first, until no adjacent
// pair has a rank.
func Merge(piece []byte, byteID *[256]int32, merges map[uint64]uint64) []int32 {
	if len(piece) <= shortPiece {
		return MergeScan(piece, byteID, merges)
	}
	return MergeHeap(piece, byteID, merges)
}

// MergeScan is Merge by scanning for the best pair and merging every occurrence of it, left to
// right, in one pass; Merge uses it for short pieces. Tokenizers test it against MergeHeap on
// their own tables.
func MergeScan(piece []byte, byteID *[256]int32, merges map[uint64]uint64) []int32 {
	parts := make([]int32, len(piece))
	for i, b := range piece {
		parts[i] = byteID[b]
	}
	for len(parts) > 1 {
		best, at := ^uint64(0), -1
		for i := 0; i+1 < len(parts); i++ {
			if m, ok := merges[PairKey(parts[i], parts[i+1])]; ok && m < best {
				best, at = m, i
			}
		}
		if at < 0 {
			break
		}
		a, b, merged := parts[at], parts[at+1], int32(uint32(best))
		w := at
		for i := at; i < len(parts); w++ {
			if i+1 < len(parts) && parts[i] == a && parts[i+1] == b {
				parts[w] = merged
				i += 2
			} else {
				parts[w] = parts[i]
				i++
			}
		}
		parts = parts[:w]
	}
	return parts
}

// MergeHeap computes what MergeScan does with a heap of candidate pairs over a linked list of
// parts. Candidates pop in (rank, position) order, which merges every occurrence of the best
// pair left to right before any pair of a higher rank: a merge only creates pairs with a merged
// token, whose ranks are higher than that of the pair that made it. A candidate is stale, and
// skipped, once either of its parts has changed.
func MergeHeap(piece []byte, byteID *[256]int32, merges map[uint64]uint64) []int32 {
	n := len(piece)
	ids := make([]int32, n) // -1 once merged into the part on its left
	next := make([]int32, n)
	prev := make([]int32, n)
	for i, b := range piece {
		ids[i], next[i], prev[i] = byteID[b], int32(i+1), int32(i-1)
	}
	next[n-1] = -1
	h := &candidates{}
	push := func(i int32) {
		j := next[i]
		if j < 0 {
			return
		}
		if m, ok := merges[PairKey(ids[i], ids[j])]; ok {
			heap.Push(h, candidate{rank: uint32(m >> 32), merged: int32(uint32(m)), pos: i, left: ids[i], right: ids[j]})
		}
	}
	for i := range int32(n - 1) {
		push(i)
	}
	for h.Len() > 0 {
		c := heap.Pop(h).(candidate)
		i := c.pos
		j := next[i]
		if ids[i] != c.left || j < 0 || ids[j] != c.right {
			continue
		}
		ids[i], ids[j] = c.merged, -1
		next[i] = next[j]
		if next[j] >= 0 {
			prev[next[j]] = i
		}
		if prev[i] >= 0 {
			push(prev[i])
		}
		push(i)
	}
	var out []int32
	for i := int32(0); i >= 0; i = next[i] {
		out = append(out, ids[i])
	}
	return out
}

type candidate struct {
	rank        uint32
	merged      int32
	pos         int32
	left, right int32
}

type candidates []candidate

func (h candidates) Len() int { return len(h) }
func (h candidates) Less(i, j int) bool {
	return h[i].rank < h[j].rank || h[i].rank == h[j].rank && h[i].pos < h[j].pos
}
func (h candidates) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *candidates) Push(x any)   { *h = append(*h, x.(candidate)) }
func (h *candidates) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// BPE is a byte-level BPE vocabulary as a tokenizer encodes with it: the id of every byte, the
// merge table, and the cache of the pieces already merged.
type BPE struct {
	ByteID [256]int32
	// Merges maps PairKey(left, right) to rank<<32 | merged id, so that comparing values
	// compares ranks.
	Merges map[uint64]uint64
	Cache  Cache
	// LongPiece is the longest piece whose ids are cached: a longer one is rare, and would bloat
	// the cache.
	LongPiece int
}

// AppendPiece appends the ids of piece (non-empty) to out.
func (b *BPE) AppendPiece(out []int32, piece []byte) []int32 {
	if len(piece) == 1 {
		return append(out, b.ByteID[piece[0]])
	}
	if len(piece) > b.LongPiece {
		return append(out, Merge(piece, &b.ByteID, b.Merges)...)
	}
	if ids, ok := b.Cache.Get(piece); ok {
		return append(out, ids...)
	}
	ids := Merge(piece, &b.ByteID, b.Merges)
	b.Cache.Put(piece, ids)
	return append(out, ids...)
}
