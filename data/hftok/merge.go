package hftok

import (
	"container/heap"
)

// BPE merges a piece the way Hugging Face tokenizers does: start from one token per byte, then
// repeatedly merge the adjacent pair with the lowest rank, the leftmost one among equal ranks,
// until no adjacent pair has a rank. Pieces up to shortPiece bytes scan the pairs at each step;
// longer ones keep a heap of candidate pairs, which costs n log n instead of n².
const shortPiece = 64

// pairKey packs two ids into a merges key.
func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// mergeShort merges piece with a scan for the best pair at each step.
func (t *Tokenizer) mergeShort(piece []byte) []int32 {
	parts := make([]int32, len(piece))
	for i, b := range piece {
		parts[i] = t.byteID[b]
	}
	for len(parts) > 1 {
		best, at := ^uint64(0), -1
		for i := 0; i+1 < len(parts); i++ {
			if m, ok := t.merges[pairKey(parts[i], parts[i+1])]; ok && m < best {
				best, at = m, i
			}
		}
		if at < 0 {
			break
		}
		parts[at] = int32(uint32(best))
		parts = append(parts[:at+1], parts[at+2:]...)
	}
	return parts
}

// mergeLong computes what mergeShort does with a heap of candidate pairs over a linked list of
// parts. A candidate names its left part's position and both ids; it is stale, and skipped, once
// either part has changed.
func (t *Tokenizer) mergeLong(piece []byte) []int32 {
	n := len(piece)
	ids := make([]int32, n) // -1 once merged into the part on its left
	next := make([]int32, n)
	prev := make([]int32, n)
	for i, b := range piece {
		ids[i], next[i], prev[i] = t.byteID[b], int32(i+1), int32(i-1)
	}
	next[n-1] = -1
	h := &pairHeap{}
	push := func(i int32) {
		j := next[i]
		if j < 0 {
			return
		}
		if m, ok := t.merges[pairKey(ids[i], ids[j])]; ok {
			heap.Push(h, pair{rank: uint32(m >> 32), merged: int32(uint32(m)), pos: i, left: ids[i], right: ids[j]})
		}
	}
	for i := range int32(n - 1) {
		push(i)
	}
	for h.Len() > 0 {
		p := heap.Pop(h).(pair)
		i := p.pos
		j := next[i]
		if ids[i] != p.left || j < 0 || ids[j] != p.right {
			continue
		}
		ids[i], ids[j] = p.merged, -1
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

type pair struct {
	rank        uint32
	merged      int32
	pos         int32
	left, right int32
}

type pairHeap []pair

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	return h[i].rank < h[j].rank || h[i].rank == h[j].rank && h[i].pos < h[j].pos
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pair)) }
func (h *pairHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}

// longPiece is the longest piece whose ids are cached: a longer one is rare and costly to keep.
const longPiece = 256
