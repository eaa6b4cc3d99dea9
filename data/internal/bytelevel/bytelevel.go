// Package bytelevel holds what every byte-level BPE tokenizer shares: the byte alphabet that
// makes every token printable text, and a cache of the ids of pieces already merged.
package bytelevel

import (
	"sync"
	"sync/atomic"
)

// Runes is GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for code
// points from U+0100 up, so every token of a vocabulary file is printable text.
var Runes = func() (m [256]rune) {
	n := 0
	for b := range 256 {
		if '!' <= b && b <= '~' || 0xa1 <= b && b <= 0xac || 0xae <= b && b <= 0xff {
			m[b] = rune(b)
		} else {
			m[b] = rune(256 + n)
			n++
		}
	}
	return m
}()

// Cache maps pieces to their ids. Encoding looks up nearly every piece in it, from many
// goroutines, so hits read an immutable map without locking; misses go to a locked map that is
// published, merged with the current one, each time it grows by a quarter of the published size
// (and at least MinPublish), which keeps the copying linear in the number of pieces cached. Past
// Max pieces it starts over, which bounds its memory. The zero Cache is not usable: set both.
type Cache struct {
	Max, MinPublish int

	published atomic.Pointer[map[string][]int32]
	mu        sync.Mutex
	pending   map[string][]int32
}

// Get returns the ids cached for piece.
func (c *Cache) Get(piece []byte) ([]int32, bool) {
	if m := c.published.Load(); m != nil {
		if ids, ok := (*m)[string(piece)]; ok {
			return ids, true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ids, ok := c.pending[string(piece)]; ok {
		return ids, true
	}
	// A publication between the first look and the lock moved the piece out of pending.
	if m := c.published.Load(); m != nil {
		ids, ok := (*m)[string(piece)]
		return ids, ok
	}
	return nil, false
}

// Put caches the ids of piece.
func (c *Cache) Put(piece []byte, ids []int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		c.pending = make(map[string][]int32)
	}
	c.pending[string(piece)] = ids
	var pub map[string][]int32
	if m := c.published.Load(); m != nil {
		pub = *m
	}
	if len(c.pending) < max(c.MinPublish, len(pub)/4) {
		return
	}
	merged := c.pending
	if len(pub)+len(c.pending) <= c.Max {
		merged = make(map[string][]int32, len(pub)+len(c.pending))
		for k, v := range pub {
			merged[k] = v
		}
		for k, v := range c.pending {
			merged[k] = v
		}
	}
	c.published.Store(&merged)
	c.pending = make(map[string][]int32)
}

// Reset empties the cache, for benchmarks of the cold path.
func (c *Cache) Reset() {
	c.mu.Lock()
	c.published.Store(nil)
	c.pending = nil
	c.mu.Unlock()
}
