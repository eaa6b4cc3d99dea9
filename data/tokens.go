package data

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// tokenArray holds a token stream in 2 bytes a token when the vocabulary fits in uint16 (the
// byte and GPT-2 vocabularies do), else 4: the Go source tree is 70M tokens, and halving it
// matters on a laptop. A stream larger than memory stays on disk instead: disk reads the token
// shards of the tokens source in place, and u16 and i32 are nil.
type tokenArray struct {
	u16  []uint16
	i32  []int32
	disk *diskTokens
}

func newTokenArray(vocab, capacity int) *tokenArray {
	if vocab <= 1<<16 {
		return &tokenArray{u16: make([]uint16, 0, capacity)}
	}
	return &tokenArray{i32: make([]int32, 0, capacity)}
}

// tokenArrayOf copies ids, which must lie in [0, vocab).
func tokenArrayOf(ids []int32, vocab int) (*tokenArray, error) {
	a := newTokenArray(vocab, len(ids))
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			return nil, fmt.Errorf("token %d at position %d outside the vocabulary [0, %d)", id, i, vocab)
		}
	}
	a.append(ids)
	return a, nil
}

func (a *tokenArray) len() int64 {
	if a.disk != nil {
		return a.disk.n
	}
	if a.i32 != nil {
		return int64(len(a.i32))
	}
	return int64(len(a.u16))
}

// elemSize is the bytes a token takes in memory and in a shard.
func (a *tokenArray) elemSize() int {
	if a.disk != nil {
		return a.disk.width
	}
	if a.i32 != nil {
		return 4
	}
	return 2
}

// append adds ids, which the caller has checked against the vocabulary, to an in-memory array.
func (a *tokenArray) append(ids []int32) {
	if a.i32 != nil {
		a.i32 = append(a.i32, ids...)
		return
	}
	for _, id := range ids {
		a.u16 = append(a.u16, uint16(id))
	}
}

// read copies the len(dst) tokens starting at off into dst.
func (a *tokenArray) read(off int64, dst []int32) {
	if a.disk != nil {
		a.disk.read(off, dst)
		return
	}
	if a.i32 != nil {
		copy(dst, a.i32[off:off+int64(len(dst))])
		return
	}
	src := a.u16[off : off+int64(len(dst))]
	for i, v := range src {
		dst[i] = int32(v)
	}
}

func (a *tokenArray) int32s() []int32 {
	out := make([]int32, a.len())
	a.read(0, out)
	return out
}

// digest is the sha256 of the tokens written as little-endian uint32, whatever the storage, so
// the same ids always give the same digest.
func (a *tokenArray) digest() [32]byte {
	h := sha256.New()
	const chunk = 1 << 14
	buf := make([]byte, 4*chunk)
	ids := make([]int32, chunk)
	for off := int64(0); off < a.len(); off += chunk {
		n := min(chunk, a.len()-off)
		a.read(off, ids[:n])
		for i, id := range ids[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], uint32(id))
		}
		h.Write(buf[:4*n])
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}
