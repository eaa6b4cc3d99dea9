package data

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestShardRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		tokens []int32
		vocab  int
		width  uint32
	}{
		{"empty", []int32{}, 260, 2},
		{"byte", []int32{0, 255, 256, 257, 258, 259, 65}, 260, 2},
		{"gpt2-sized", []int32{0, 50256, 1234}, 50257, 2},
		{"full uint16", []int32{0, 65535}, 1 << 16, 2},
		{"wide", []int32{0, 70000, 1 << 20}, 1<<20 + 1, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteShard(&buf, tc.tokens, tc.vocab); err != nil {
				t.Fatal(err)
			}
			raw := buf.Bytes()
			if w := binary.LittleEndian.Uint32(raw[12:]); w != tc.width {
				t.Errorf("width %d, want %d", w, tc.width)
			}
			if len(raw) != shardHeaderSize+len(tc.tokens)*int(tc.width) {
				t.Errorf("size %d, want %d", len(raw), shardHeaderSize+len(tc.tokens)*int(tc.width))
			}
			got, vocab, err := ReadShard(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if vocab != tc.vocab || !reflect.DeepEqual(got, tc.tokens) {
				t.Errorf("read %v (vocab %d), want %v (vocab %d)", got, vocab, tc.tokens, tc.vocab)
			}
		})
	}
}

func TestShardFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.shard")
	tokens := make([]int32, 100000)
	for i := range tokens {
		tokens[i] = int32(i*7919) % 260
	}
	if err := WriteShardFile(path, tokens, 260); err != nil {
		t.Fatal(err)
	}
	got, _, err := ReadShardFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, tokens) {
		t.Fatal("shard file round trip changed the tokens")
	}
	raw, _ := os.ReadFile(path)
	raw[shardHeaderSize+1000] ^= 1
	os.WriteFile(path, raw, 0o644)
	if _, _, err := ReadShardFile(path); err == nil || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), path) {
		t.Errorf("corrupted shard: err = %v, want a checksum mismatch naming the file", err)
	}
}

func TestShardErrors(t *testing.T) {
	var good bytes.Buffer
	if err := WriteShard(&good, []int32{1, 2, 3}, 260); err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte) []byte) []byte {
		b := append([]byte(nil), good.Bytes()...)
		return f(b)
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"short header", good.Bytes()[:20], "reading the 64-byte header"},
		{"magic", edit(func(b []byte) []byte { b[0] = 'X'; return b }), "bad magic"},
		{"version", edit(func(b []byte) []byte { b[8] = 9; return b }), "version 9 not supported"},
		{"width", edit(func(b []byte) []byte { b[12] = 3; return b }), "3 bytes per token not supported"},
		{"vocab zero", edit(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[24:], 0); return b }), "vocabulary size 0"},
		{"vocab too wide", edit(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[24:], 70000); return b }), "does not fit in 2-byte tokens"},
		{"reserved", edit(func(b []byte) []byte { b[29] = 1; return b }), "reserved header bytes"},
		{"truncated", good.Bytes()[:good.Len()-1], "tokens end after"},
		{"huge count", edit(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[16:], 1<<40); return b }), "tokens end after"},
		{"trailing", append(append([]byte(nil), good.Bytes()...), 0), "data after the 3 tokens"},
		{"out of vocab", edit(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[64:], 300); return b }), "token 300 at position 0 outside"},
		{"checksum", edit(func(b []byte) []byte { b[66] = 9; return b }), "checksum mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadShard(bytes.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if err := WriteShard(&bytes.Buffer{}, []int32{260}, 260); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
		t.Errorf("writing an out-of-vocabulary token: err = %v", err)
	}
}

func FuzzReadShard(f *testing.F) {
	for _, v := range []struct {
		tokens []int32
		vocab  int
	}{{[]int32{1, 2, 3}, 260}, {[]int32{}, 5}, {[]int32{0, 70000}, 70001}} {
		var buf bytes.Buffer
		if err := WriteShard(&buf, v.tokens, v.vocab); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		tokens, vocab, err := ReadShard(bytes.NewReader(in))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteShard(&buf, tokens, vocab); err != nil {
			t.Fatalf("a shard ReadShard accepted does not write: %v", err)
		}
		if !bytes.Equal(buf.Bytes(), in) {
			t.Fatalf("accepted a shard that is not the canonical encoding of its tokens")
		}
	})
}
