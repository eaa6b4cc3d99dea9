package bytelevel

import (
	"sync"
	"testing"
)

// TestRunes: the alphabet gives every byte its own printable rune.
func TestRunes(t *testing.T) {
	seen := map[rune]bool{}
	for b, r := range Runes {
		if seen[r] {
			t.Fatalf("byte %d maps to %U, taken already", b, r)
		}
		seen[r] = true
		if r <= ' ' || r == 0x7f || (0x80 <= r && r <= 0xa0) || r == 0xad {
			t.Errorf("byte %d maps to the unprintable %U", b, r)
		}
	}
	if Runes['A'] != 'A' || Runes[' '] != 0x120 || Runes['\n'] != 0x10a {
		t.Errorf("A, space, newline map to %U %U %U; want U+0041 U+0120 U+010A", Runes['A'], Runes[' '], Runes['\n'])
	}
}

// TestCache: what was put is found again, from many goroutines, across publications; past Max
// the cache starts over with what came last.
func TestCache(t *testing.T) {
	c := &Cache{Max: 1000, MinPublish: 8}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				key := []byte{byte(g), byte(i)}
				c.Put(key, []int32{int32(g), int32(i)})
				if ids, ok := c.Get(key); !ok || ids[0] != int32(g) || ids[1] != int32(i) {
					t.Errorf("piece %v: got %v %v right after Put", key, ids, ok)
				}
			}
		}()
	}
	wg.Wait()
	small := &Cache{Max: 20, MinPublish: 4}
	for i := range 40 {
		small.Put([]byte{byte(i)}, []int32{int32(i)})
	}
	if _, ok := small.Get([]byte{0}); ok {
		t.Error("past Max, the first piece is still cached")
	}
	if ids, ok := small.Get([]byte{39}); !ok || ids[0] != 39 {
		t.Error("past Max, the last piece is not cached")
	}
	c.Reset()
	if _, ok := c.Get([]byte{0, 0}); ok {
		t.Error("Reset left a piece")
	}
}
