package data

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"cbs/internal/atomicio"
)

// A shard is a pre-tokenized token stream, so a corpus is tokenized once and then loaded in the
// time it takes to read the file. Layout, all integers little-endian:
//
//	offset  size  field
//	     0     8  magic "CBSSHARD"
//	     8     4  version, 1
//	    12     4  bytes per token: 2 (uint16) or 4 (int32)
//	    16     8  token count
//	    24     4  vocabulary size; every token is in [0, vocabulary size)
//	    28     4  zero
//	    32    32  sha256 of the tokens written as little-endian uint32 (independent of the width)
//	    64        the tokens
//
// Nothing may follow the tokens. The checksum makes a truncated or corrupted cache file an error
// rather than a silently different corpus.
const (
	shardMagic      = "CBSSHARD"
	shardVersion    = 1
	shardHeaderSize = 64
)

// WriteShard writes tokens, each in [0, vocab), as a shard: uint16 if vocab <= 65536, else int32.
func WriteShard(w io.Writer, tokens []int32, vocab int) error {
	if vocab <= 0 || vocab > math.MaxInt32 {
		return fmt.Errorf("shard: vocabulary size %d outside [1, %d]", vocab, math.MaxInt32)
	}
	a, err := tokenArrayOf(tokens, vocab)
	if err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	return writeShard(w, a, vocab)
}

// ReadShard reads a shard written by WriteShard, checking its checksum and token range.
func ReadShard(r io.Reader) (tokens []int32, vocab int, err error) {
	a, vocab, _, err := readShard(r)
	if err != nil {
		return nil, 0, err
	}
	return a.int32s(), vocab, nil
}

// WriteShardFile writes a shard atomically.
func WriteShardFile(path string, tokens []int32, vocab int) error {
	return atomicio.WriteFileFunc(path, func(w io.Writer) error { return WriteShard(w, tokens, vocab) })
}

// ReadShardFile reads a shard file; errors name the file.
func ReadShardFile(path string) (tokens []int32, vocab int, err error) {
	a, vocab, _, err := readShardFile(path)
	if err != nil {
		return nil, 0, err
	}
	return a.int32s(), vocab, nil
}

func readShardFile(path string) (*tokenArray, int, [32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, [32]byte{}, err
	}
	defer f.Close()
	a, vocab, digest, err := readShard(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return nil, 0, digest, fmt.Errorf("%s: %w", path, err)
	}
	return a, vocab, digest, nil
}

func writeShard(w io.Writer, a *tokenArray, vocab int) error {
	digest := a.digest()
	var h [shardHeaderSize]byte
	copy(h[:], shardMagic)
	binary.LittleEndian.PutUint32(h[8:], shardVersion)
	binary.LittleEndian.PutUint32(h[12:], uint32(a.elemSize()))
	binary.LittleEndian.PutUint64(h[16:], uint64(a.len()))
	binary.LittleEndian.PutUint32(h[24:], uint32(vocab))
	copy(h[32:], digest[:])
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var b [4]byte
	if a.i32 != nil {
		for _, id := range a.i32 {
			binary.LittleEndian.PutUint32(b[:], uint32(id))
			bw.Write(b[:])
		}
	} else {
		for _, id := range a.u16 {
			binary.LittleEndian.PutUint16(b[:], id)
			bw.Write(b[:2])
		}
	}
	return bw.Flush()
}

// readShard reads and verifies a shard, returning its tokens, vocabulary size and digest.
func readShard(r io.Reader) (*tokenArray, int, [32]byte, error) {
	var digest [32]byte
	var h [shardHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, 0, digest, fmt.Errorf("shard: reading the %d-byte header: %w", shardHeaderSize, noEOF(err))
	}
	if string(h[:8]) != shardMagic {
		return nil, 0, digest, fmt.Errorf("shard: bad magic %q (want %q)", h[:8], shardMagic)
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != shardVersion {
		return nil, 0, digest, fmt.Errorf("shard: version %d not supported (want %d)", v, shardVersion)
	}
	size := binary.LittleEndian.Uint32(h[12:])
	count := binary.LittleEndian.Uint64(h[16:])
	vocab := binary.LittleEndian.Uint32(h[24:])
	copy(digest[:], h[32:])
	switch {
	case size != 2 && size != 4:
		return nil, 0, digest, fmt.Errorf("shard: %d bytes per token not supported (want 2 or 4)", size)
	case vocab == 0 || vocab > math.MaxInt32:
		return nil, 0, digest, fmt.Errorf("shard: vocabulary size %d outside [1, %d]", vocab, math.MaxInt32)
	case size == 2 && vocab > 1<<16:
		return nil, 0, digest, fmt.Errorf("shard: vocabulary size %d does not fit in 2-byte tokens", vocab)
	case size == 4 && vocab <= 1<<16:
		return nil, 0, digest, fmt.Errorf("shard: vocabulary size %d stored in 4-byte tokens (writers use 2)", vocab)
	case count > math.MaxInt64/4:
		return nil, 0, digest, fmt.Errorf("shard: token count %d too large", count)
	case binary.LittleEndian.Uint32(h[28:]) != 0:
		return nil, 0, digest, errors.New("shard: reserved header bytes 28-31 are not zero")
	}
	// Grow with the data actually read, never by the header's count alone: a corrupt count must
	// not allocate more than the file holds.
	a := newTokenArray(int(vocab), int(min(count, 1<<20)))
	buf := make([]byte, 1<<16)
	ids := make([]int32, len(buf)/2)
	for left := int64(count) * int64(size); left > 0; {
		chunk := buf[:min(int64(len(buf)), left)]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, 0, digest, fmt.Errorf("shard: tokens end after %d of %d: %w", a.len(), count, noEOF(err))
		}
		left -= int64(len(chunk))
		n := len(chunk) / int(size)
		for i := range n {
			var id int32
			if size == 2 {
				id = int32(binary.LittleEndian.Uint16(chunk[2*i:]))
			} else {
				id = int32(binary.LittleEndian.Uint32(chunk[4*i:]))
			}
			if id < 0 || uint32(id) >= vocab {
				return nil, 0, digest, fmt.Errorf("shard: token %d at position %d outside the vocabulary [0, %d)", id, a.len()+int64(i), vocab)
			}
			ids[i] = id
		}
		a.append(ids[:n])
	}
	var extra [1]byte
	if _, err := io.ReadFull(r, extra[:]); err == nil {
		return nil, 0, digest, fmt.Errorf("shard: data after the %d tokens the header declares", count)
	}
	if got := a.digest(); !bytes.Equal(got[:], digest[:]) {
		return nil, 0, digest, fmt.Errorf("shard: checksum mismatch: header %x, tokens %x", digest[:8], got[:8])
	}
	return a, int(vocab), digest, nil
}
