package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"cbs/internal/atomicio"
)

// Sharded files follow Hugging Face's layout for large checkpoints: the tensors of PREFIX are
// split over PREFIX-0000k-of-0000n.safetensors, each a complete safetensors file, and
// PREFIX.safetensors.index.json maps every tensor to the file holding it:
//
//	{"metadata": {"total_size": N}, "weight_map": {name: file, ...}}
//
// total_size is the bytes of tensor data in all shards (headers not counted).

// IndexName is the index file of the sharded tensors called prefix: prefix.safetensors.index.json.
func IndexName(prefix string) string { return prefix + ".safetensors.index.json" }

// ShardName is the k-th (from 1) of n shard files of prefix: prefix-0000k-of-0000n.safetensors.
func ShardName(prefix string, k, n int) string {
	return fmt.Sprintf("%s-%05d-of-%05d.safetensors", prefix, k, n)
}

// shardPattern matches every shard file name of prefix, whatever the count.
func shardPattern(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-[0-9]+-of-[0-9]+\.safetensors$`)
}

// Index is a parsed index file.
type Index struct {
	// TotalSize is metadata.total_size, or -1 when the index gives none.
	TotalSize int64
	// WeightMap maps every tensor name to the shard file that holds it.
	WeightMap map[string]string
}

// Shards returns the shard files the index names, sorted, each once.
func (ix *Index) Shards() []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range ix.WeightMap {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// ParseIndex parses an index file. It is strict: the JSON must be an object with a weight_map
// object of strings, naming each tensor once, each file a plain .safetensors file name (no
// folder, so an index cannot point outside its directory); metadata.total_size, when present,
// a non-negative integer. Other keys are ignored.
func ParseIndex(b []byte) (*Index, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if top == nil {
		return nil, errors.New("index: want a JSON object")
	}
	ix := &Index{TotalSize: -1}
	if raw, ok := top["metadata"]; ok && string(bytes.TrimSpace(raw)) != "null" {
		var meta map[string]json.RawMessage
		if err := json.Unmarshal(raw, &meta); err != nil {
			return nil, fmt.Errorf("index: metadata: want an object: %w", err)
		}
		if ts, ok := meta["total_size"]; ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(ts)), 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("index: metadata.total_size = %s, want a non-negative integer", bytes.TrimSpace(ts))
			}
			ix.TotalSize = n
		}
	}
	raw, ok := top["weight_map"]
	if !ok {
		return nil, errors.New("index: no weight_map")
	}
	// Walk the object by tokens: a name given twice would otherwise silently keep its last file.
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("index: weight_map: want an object of tensor name to file name")
	}
	ix.WeightMap = map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("index: weight_map: %w", err)
		}
		name := tok.(string)
		var file string
		if err := dec.Decode(&file); err != nil {
			return nil, fmt.Errorf("index: weight_map[%q]: want a file name: %w", name, err)
		}
		if prev, dup := ix.WeightMap[name]; dup {
			return nil, fmt.Errorf("index: weight_map names tensor %q twice (%s and %s)", name, prev, file)
		}
		if file == "" || file != filepath.Base(file) || strings.ContainsAny(file, `/\`) || !strings.HasSuffix(file, ".safetensors") || file == ".safetensors" {
			return nil, fmt.Errorf("index: weight_map[%q] = %q, want a .safetensors file name in the index's own directory", name, file)
		}
		ix.WeightMap[name] = file
	}
	if len(ix.WeightMap) == 0 {
		return nil, errors.New("index: weight_map names no tensor")
	}
	return ix, nil
}

// ReadIndex reads and parses the index file at path.
func ReadIndex(path string) (*Index, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ix, err := ParseIndex(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ix, nil
}

// EncodeIndex renders an index file: {"metadata": {"total_size": N}, "weight_map": {...}},
// indented by two spaces, names sorted, as the PyTorch reference and Hugging Face write it.
func EncodeIndex(totalSize int64, weightMap map[string]string) []byte {
	type metadata struct {
		TotalSize int64 `json:"total_size"`
	}
	v := struct {
		Metadata  metadata          `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{metadata{totalSize}, weightMap}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // a struct of an integer and strings always encodes
	return buf.Bytes()
}

// Shard is one shard file of a sharded set, its header read.
type Shard struct {
	File   string // file name, in the index's directory
	Header *File  // dtypes and shapes; the tensors' Data are nil
	Size   int64  // bytes of the file
}

// DataBytes is the bytes of tensor data the shard holds.
func (s Shard) DataBytes() int64 {
	var n int64
	for _, name := range s.Header.names {
		n += s.Header.tensors[name].NBytes()
	}
	return n
}

// Sharded is a set of shards and their index, with every shard's header read and checked
// against the index. Data is read a shard at a time (ReadShard), so a checkpoint larger than
// memory can be copied into its destination one shard after another.
type Sharded struct {
	Dir   string
	Index *Index
	// IndexFile is the index's file name in Dir.
	IndexFile string
	// Shards are the files the index names, in name order.
	Shards  []Shard
	shardOf map[string]int
}

// OpenSharded reads the index of prefix in dir and the header of every shard it names, and
// checks that they agree: every shard the index names exists; every tensor the index lists is
// in the shard it names and in no other; every tensor of a shard is listed; and dir holds no
// shard file of prefix the index does not name (what an earlier save with another shard count
// leaves behind). metadata.total_size is not checked: tools disagree on it (some count the
// headers); compare it with DataBytes.
func OpenSharded(dir, prefix string) (*Sharded, error) {
	indexPath := filepath.Join(dir, IndexName(prefix))
	ix, err := ReadIndex(indexPath)
	if err != nil {
		return nil, err
	}
	s := &Sharded{Dir: dir, Index: ix, IndexFile: IndexName(prefix), shardOf: map[string]int{}}
	listed := map[string][]string{} // shard file -> the tensors the index puts in it
	for name, file := range ix.WeightMap {
		listed[file] = append(listed[file], name)
	}
	for _, file := range ix.Shards() {
		path := filepath.Join(dir, file)
		h, err := ReadHeader(path)
		if errors.Is(err, fs.ErrNotExist) {
			names := listed[file]
			sort.Strings(names)
			return nil, fmt.Errorf("%s: shard %s is missing (the index puts %d tensors in it, the first %s)", indexPath, file, len(names), names[0])
		}
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		s.Shards = append(s.Shards, Shard{File: file, Header: h, Size: fi.Size()})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	pat := shardPattern(prefix)
	for _, e := range entries {
		if pat.MatchString(e.Name()) && listed[e.Name()] == nil {
			return nil, fmt.Errorf("%s: %s is a shard the index does not name (left from another save?): remove it, or fix the index", indexPath, e.Name())
		}
	}
	for i, sh := range s.Shards {
		for _, name := range sh.Header.names {
			want, ok := ix.WeightMap[name]
			if !ok {
				return nil, fmt.Errorf("%s: shard %s holds tensor %s, which the index does not list", indexPath, sh.File, name)
			}
			if prev, dup := s.shardOf[name]; dup {
				return nil, fmt.Errorf("%s: tensor %s is in two shards, %s and %s (the index names %s)", indexPath, name, s.Shards[prev].File, sh.File, want)
			}
			s.shardOf[name] = i
		}
	}
	names := make([]string, 0, len(ix.WeightMap))
	for name := range ix.WeightMap {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		want := ix.WeightMap[name]
		i, ok := s.shardOf[name]
		if !ok {
			return nil, fmt.Errorf("%s: the index puts tensor %s in %s, which does not hold it", indexPath, name, want)
		}
		if got := s.Shards[i].File; got != want {
			return nil, fmt.Errorf("%s: the index puts tensor %s in %s, but it is in %s", indexPath, name, want, got)
		}
	}
	return s, nil
}

// Names returns every tensor name, sorted.
func (s *Sharded) Names() []string {
	out := make([]string, 0, len(s.shardOf))
	for name := range s.shardOf {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Tensor returns the header entry of tensor name (Data nil) and the index of its shard in Shards.
func (s *Sharded) Tensor(name string) (Tensor, int, bool) {
	i, ok := s.shardOf[name]
	if !ok {
		return Tensor{}, -1, false
	}
	t, _ := s.Shards[i].Header.Tensor(name)
	return t, i, true
}

// DataBytes is the bytes of tensor data in all shards: what metadata.total_size should be.
func (s *Sharded) DataBytes() int64 {
	var n int64
	for _, sh := range s.Shards {
		n += sh.DataBytes()
	}
	return n
}

// ReadShard reads shard i whole and checks it still holds the tensors its header did.
func (s *Sharded) ReadShard(i int) (*File, error) {
	sh := s.Shards[i]
	path := filepath.Join(s.Dir, sh.File)
	f, err := Read(path)
	if err != nil {
		return nil, err
	}
	if !slices.Equal(f.names, sh.Header.names) {
		return nil, fmt.Errorf("%s: changed while being read", path)
	}
	return f, nil
}

// WriteSharded writes tensors to dir as shards of prefix with their index, each tensor stored as
// dtype (see Write) and every shard carrying metadata. Tensors go in name order into shards of
// at most maxBytes of data each: a new shard begins when the next tensor would pass maxBytes, so
// a tensor larger than maxBytes has a shard of its own. This is the PyTorch reference's rule, so
// the same tensors give the same files. It returns the names of the files written, the shards
// in order and then the index. Each file is written atomically; the set is not (write it into a
// directory that is renamed into place when complete).
func WriteSharded(dir, prefix string, tensors []Named, metadata map[string]string, dtype string, maxBytes int64) ([]string, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("safetensors: shard size %d, want a positive number of bytes", maxBytes)
	}
	if dtype == "" {
		dtype = "F32"
	}
	// Check everything before the first file is written.
	if _, _, err := header(tensors, metadata, dtype); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, IndexName(prefix)), err)
	}
	order := make([]int, len(tensors))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return tensors[order[a]].Name < tensors[order[b]].Name })
	size := int64(dtypeSize[dtype])
	var shards [][]Named
	var cur []Named
	var used, total int64
	for _, i := range order {
		t := tensors[i]
		n, _ := byteCount(t.Shape, int(size)) // checked by header
		nbytes := int64(n)
		if len(cur) > 0 && used+nbytes > maxBytes {
			shards, cur, used = append(shards, cur), nil, 0
		}
		cur, used, total = append(cur, t), used+nbytes, total+nbytes
	}
	shards = append(shards, cur)
	weightMap := map[string]string{}
	var files []string
	for k, shard := range shards {
		file := ShardName(prefix, k+1, len(shards))
		if err := Write(filepath.Join(dir, file), shard, metadata, dtype); err != nil {
			return nil, err
		}
		for _, t := range shard {
			weightMap[t.Name] = file
		}
		files = append(files, file)
	}
	if err := atomicio.WriteFile(filepath.Join(dir, IndexName(prefix)), EncodeIndex(total, weightMap), 0o644); err != nil {
		return nil, err
	}
	return append(files, IndexName(prefix)), nil
}
