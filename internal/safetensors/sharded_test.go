package safetensors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// shardTensors are six tensors of 16 to 96 bytes as F32.
func shardTensors() []Named {
	mk := func(name string, shape ...int) Named {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(len(name)) + float32(i)/8
		}
		return Named{Name: name, Shape: shape, Data: v}
	}
	return []Named{mk("f", 4), mk("a.weight", 4, 4), mk("e", 24), mk("b", 2, 3), mk("d.weight", 5), mk("c", 8)}
}

// writeShards writes shardTensors to a new directory as F32 shards of at most 64 bytes: [a] [b c]
// [d] [e] [f] (a and e are larger than 64 bytes, b + c and f are not).
func writeShards(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	files, err := WriteSharded(dir, "model", shardTensors(), map[string]string{"format": "pt"}, "F32", 64)
	if err != nil {
		t.Fatal(err)
	}
	return dir, files
}

func TestShardedRoundTrip(t *testing.T) {
	dir, files := writeShards(t)
	want := []string{
		"model-00001-of-00005.safetensors", "model-00002-of-00005.safetensors", "model-00003-of-00005.safetensors",
		"model-00004-of-00005.safetensors", "model-00005-of-00005.safetensors", "model.safetensors.index.json",
	}
	if !reflect.DeepEqual(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	s, err := OpenSharded(dir, "model")
	if err != nil {
		t.Fatal(err)
	}
	if s.Index.TotalSize != 4*(4+16+24+6+5+8) || s.DataBytes() != s.Index.TotalSize {
		t.Errorf("total_size %d, data %d, want %d", s.Index.TotalSize, s.DataBytes(), 4*63)
	}
	if got := s.Names(); !reflect.DeepEqual(got, []string{"a.weight", "b", "c", "d.weight", "e", "f"}) {
		t.Errorf("names %v", got)
	}
	wantShard := map[string]int{"a.weight": 0, "b": 1, "c": 1, "d.weight": 2, "e": 3, "f": 4}
	for _, nt := range shardTensors() {
		st, k, ok := s.Tensor(nt.Name)
		if !ok || k != wantShard[nt.Name] || !reflect.DeepEqual(st.Shape, nt.Shape) || st.DType != "F32" || st.Data != nil {
			t.Fatalf("%s: header %+v in shard %d (%v), want shard %d", nt.Name, st, k, ok, wantShard[nt.Name])
		}
		f, err := s.ReadShard(k)
		if err != nil {
			t.Fatal(err)
		}
		if f.Metadata["format"] != "pt" {
			t.Errorf("shard %d metadata %v", k, f.Metadata)
		}
		full, _ := f.Tensor(nt.Name)
		v, err := full.Float32()
		if err != nil || !reflect.DeepEqual(v, nt.Data) {
			t.Errorf("%s: read %v (%v), wrote %v", nt.Name, v, err, nt.Data)
		}
	}
	for _, sh := range s.Shards {
		if sh.DataBytes() > 64 && len(sh.Header.Names()) > 1 {
			t.Errorf("%s holds %d bytes in %d tensors, over the limit", sh.File, sh.DataBytes(), len(sh.Header.Names()))
		}
		fi, _ := os.Stat(filepath.Join(dir, sh.File))
		if sh.Size != fi.Size() {
			t.Errorf("%s: size %d, file %d", sh.File, sh.Size, fi.Size())
		}
	}
	// The index reads back, and renders the same bytes again.
	b, _ := os.ReadFile(filepath.Join(dir, IndexName("model")))
	ix, err := ParseIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	if again := EncodeIndex(ix.TotalSize, ix.WeightMap); string(again) != string(b) {
		t.Errorf("index re-encoded as\n%s\nwant\n%s", again, b)
	}
	if !strings.HasPrefix(string(b), "{\n  \"metadata\": {\n    \"total_size\": 252\n  },\n  \"weight_map\": {\n    \"a.weight\": \"model-00001-of-00005.safetensors\",") {
		t.Errorf("index layout:\n%s", b)
	}
	// A header read alone agrees with the whole file.
	for _, sh := range s.Shards {
		whole, err := Read(filepath.Join(dir, sh.File))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(whole.Names(), sh.Header.Names()) || !reflect.DeepEqual(whole.Metadata, sh.Header.Metadata) {
			t.Errorf("%s: header %v, file %v", sh.File, sh.Header.Names(), whole.Names())
		}
	}
	// One shard when everything fits, still with the index.
	one := t.TempDir()
	files, err = WriteSharded(one, "model", shardTensors(), nil, "BF16", 1<<20)
	if err != nil || !reflect.DeepEqual(files, []string{"model-00001-of-00001.safetensors", "model.safetensors.index.json"}) {
		t.Fatalf("one shard: %v, %v", files, err)
	}
	if _, err := WriteSharded(one, "model", shardTensors(), nil, "F32", 0); err == nil {
		t.Error("shard size 0 accepted")
	}
}

// TestReadHeaderTruncated: a header read alone still refuses a file whose data was cut short.
func TestReadHeaderTruncated(t *testing.T) {
	dir, _ := writeShards(t)
	path := filepath.Join(dir, "model-00001-of-00005.safetensors")
	b, _ := os.ReadFile(path)
	os.WriteFile(path, b[:len(b)-4], 0o644)
	_, errHeader := ReadHeader(path)
	_, errRead := Read(path)
	if errHeader == nil || errRead == nil || errHeader.Error() != errRead.Error() {
		t.Errorf("truncated: ReadHeader %v, Read %v; want the same error", errHeader, errRead)
	}
}

// TestShardedRefusals: an index and shards that disagree are refused, naming the file and the
// tensor.
func TestShardedRefusals(t *testing.T) {
	editIndex := func(edit func(m map[string]any)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			path := filepath.Join(dir, IndexName("model"))
			b, _ := os.ReadFile(path)
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			edit(m)
			b, _ = json.Marshal(m)
			os.WriteFile(path, b, 0o644)
		}
	}
	weightMap := func(m map[string]any) map[string]any { return m["weight_map"].(map[string]any) }
	rawIndex := func(s string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { os.WriteFile(filepath.Join(dir, IndexName("model")), []byte(s), 0o644) }
	}
	for _, tc := range []struct {
		name   string
		edit   func(t *testing.T, dir string)
		phrase string
	}{
		{"missing shard", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model-00002-of-00005.safetensors"))
		}, "shard model-00002-of-00005.safetensors is missing (the index puts 2 tensors in it, the first b)"},
		{"tensor in two shards", func(t *testing.T, dir string) {
			// Shard 4 gets a copy of b beside e; the index still puts b in shard 2.
			ts := shardTensors()
			if err := Write(filepath.Join(dir, "model-00004-of-00005.safetensors"), []Named{ts[2], ts[3]}, nil, "F32"); err != nil {
				t.Fatal(err)
			}
		}, "tensor b is in two shards, model-00002-of-00005.safetensors and model-00004-of-00005.safetensors (the index names model-00002-of-00005.safetensors)"},
		{"shard the index does not name", func(t *testing.T, dir string) {
			ts := shardTensors()
			if err := Write(filepath.Join(dir, "model-00001-of-00004.safetensors"), ts[:1], nil, "F32"); err != nil {
				t.Fatal(err)
			}
		}, "model-00001-of-00004.safetensors is a shard the index does not name"},
		{"tensor the index does not list", editIndex(func(m map[string]any) { delete(weightMap(m), "c") }),
			"shard model-00002-of-00005.safetensors holds tensor c, which the index does not list"},
		{"tensor the shard lacks", editIndex(func(m map[string]any) { weightMap(m)["g"] = "model-00005-of-00005.safetensors" }),
			"the index puts tensor g in model-00005-of-00005.safetensors, which does not hold it"},
		{"tensor in another shard", editIndex(func(m map[string]any) { weightMap(m)["c"] = "model-00001-of-00005.safetensors" }),
			"the index puts tensor c in model-00001-of-00005.safetensors, but it is in model-00002-of-00005.safetensors"},
		{"shard outside the directory", editIndex(func(m map[string]any) { weightMap(m)["f"] = "../model-00005-of-00005.safetensors" }),
			`weight_map["f"] = "../model-00005-of-00005.safetensors", want a .safetensors file name in the index's own directory`},
		{"not safetensors", editIndex(func(m map[string]any) { weightMap(m)["f"] = "pytorch_model.bin" }),
			`weight_map["f"] = "pytorch_model.bin"`},
		{"tensor named twice", rawIndex(`{"weight_map": {"a.weight": "model-00001-of-00005.safetensors", "a.weight": "model-00002-of-00005.safetensors"}}`),
			`weight_map names tensor "a.weight" twice`},
		{"no weight_map", rawIndex(`{"metadata": {"total_size": 252}}`), "no weight_map"},
		{"empty weight_map", rawIndex(`{"weight_map": {}}`), "names no tensor"},
		{"total_size negative", editIndex(func(m map[string]any) { m["metadata"] = map[string]any{"total_size": -1} }),
			"metadata.total_size = -1, want a non-negative integer"},
		{"total_size text", editIndex(func(m map[string]any) { m["metadata"] = map[string]any{"total_size": "252"} }),
			`metadata.total_size = "252"`},
		{"not JSON", rawIndex(`{"weight_map": `), "index: unexpected end of JSON input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := writeShards(t)
			tc.edit(t, dir)
			_, err := OpenSharded(dir, "model")
			if err == nil || !strings.Contains(err.Error(), tc.phrase) {
				t.Errorf("err = %v, want it to say %q", err, tc.phrase)
			}
		})
	}
	// A wrong total_size is the caller's to judge: the shards open.
	dir, _ := writeShards(t)
	editIndex(func(m map[string]any) { m["metadata"] = map[string]any{"total_size": 7} })(t, dir)
	s, err := OpenSharded(dir, "model")
	if err != nil || s.Index.TotalSize != 7 || s.DataBytes() != 252 {
		t.Errorf("total_size 7: %v", err)
	}
	// No metadata at all reads as -1.
	editIndex(func(m map[string]any) { delete(m, "metadata") })(t, dir)
	if s, err := OpenSharded(dir, "model"); err != nil || s.Index.TotalSize != -1 {
		t.Errorf("no metadata: %v", err)
	}
}
