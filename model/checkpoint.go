package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"cbs/compute"
	"cbs/internal/atomicio"
	"cbs/internal/safetensors"
)

// Checkpoint file names. A directory holding only ConfigFile and WeightsFile (as written by
// Hugging Face tools) is a valid checkpoint to start from; so is one holding ConfigFile and, in
// place of WeightsFile, IndexFile with the shards it names, as Hugging Face publishes large
// models: model-0000k-of-0000n.safetensors, each a safetensors file of some of the tensors.
const (
	ConfigFile    = "config.json"
	WeightsFile   = "model.safetensors"
	IndexFile     = "model.safetensors.index.json"
	OptimizerFile = "optimizer.safetensors"
	TrainerFile   = "trainer.json"
)

// weightsPrefix names the shards: weightsPrefix-0000k-of-0000n.safetensors.
const weightsPrefix = "model"

// DefaultShardBytes is Hugging Face's default limit on the tensor data of one shard
// (max_shard_size "5GB"), for SaveOptions.ShardBytes.
const DefaultShardBytes = 5_000_000_000

// SaveOptions says how SaveWith stores the weights. The zero value is how cbs's own checkpoints
// are written: one float32 model.safetensors.
type SaveOptions struct {
	// DType is the weights' storage type: "F32" (the default when ""), "F64" or "BF16" (rounded
	// to nearest even). config.json's torch_dtype says which.
	DType string
	// ShardBytes, when positive, writes the weights as shards of at most this many bytes of
	// tensor data each (a tensor larger than that has a shard of its own), tensors in name
	// order, with IndexFile: Hugging Face's layout. Zero writes one WeightsFile.
	ShardBytes int64
}

// torchDType is config.json's torch_dtype for weights stored as a safetensors dtype.
var torchDType = map[string]string{"": "float32", "F32": "float32", "F64": "float64", "BF16": "bfloat16"}

// TrainerState is what a run needs, beyond weights and moments, to continue exactly where it
// stopped. Every random choice in cbs is a pure function of (seed, purpose, index), so the data
// cursor is the whole of the random state.
type TrainerState struct {
	Objective  string `json:"objective"`
	Step       int    `json:"step"`
	TokensSeen int64  `json:"tokens_seen"`
	// DataCursor is the index of the next training sequence in the token stream.
	DataCursor int64 `json:"data_cursor"`
	// ForkCursor is the parent's data cursor when the run forked from a checkpoint: where a seed
	// replicate's own order of the stream begins.
	ForkCursor int64  `json:"fork_cursor,omitempty"`
	Seed       uint64 `json:"seed"`
	// StreamHash is a running FNV-1a hash of every training token consumed, in order: two runs
	// saw the same token stream exactly when their hashes agree.
	StreamHash string `json:"stream_hash,omitempty"`
	// ConfigFingerprint identifies the run configuration that produced the checkpoint.
	ConfigFingerprint string `json:"config_fingerprint,omitempty"`
	// Schedule records the LR schedule the run followed.
	Schedule json.RawMessage `json:"schedule,omitempty"`
	// BatchTokens is the run's global batch in tokens and LR its base LR at the last step taken
	// (peak LR x schedule factor, before the per-group multipliers): what a sweep branching from
	// this checkpoint takes as its reference batch and base LR when its config names none.
	BatchTokens int64   `json:"batch_tokens,omitempty"`
	LR          float64 `json:"lr,omitempty"`
	// Stats are the trainer's running statistics, so a resumed run continues them exactly.
	Stats RunningStats `json:"extra,omitzero"`
	// Files maps every other file of the checkpoint to its sha256.
	Files map[string]string `json:"files"`
}

// RunningStats are the smoothed statistics a trainer carries from step to step. They have
// fields, not names looked up in a map, so a misspelt one fails to compile instead of resuming
// from zero. The JSON names, in their order, are those of the "extra" object of every
// trainer.json cbs has written (a map's keys, sorted): earlier checkpoints resume exactly, and a
// checkpoint's bytes do not depend on which version of cbs wrote it.
type RunningStats struct {
	// GNSEMAWeight, GNSGradSqEMA and GNSTraceEMA are the gradient-noise-scale EMAs (|G|^2 and
	// tr(Sigma)) and their weight, for bias correction.
	GNSEMAWeight float64 `json:"gns_ema_weight"`
	GNSGradSqEMA float64 `json:"gns_grad_sq_ema"`
	GNSTraceEMA  float64 `json:"gns_trace_ema"`
	// LossEMA and LossEMAWeight are the EMA of the training loss and its weight, LossEMAMin the
	// lowest bias-corrected value once warm: the divergence test's memory.
	LossEMA       float64 `json:"loss_ema"`
	LossEMAMin    float64 `json:"loss_ema_min"`
	LossEMAWeight float64 `json:"loss_ema_weight"`
	// WallS is the training wall time so far, in seconds.
	WallS float64 `json:"wall_s"`
}

// Save writes a checkpoint directory atomically: everything goes to a temporary directory that
// is renamed over dir, so dir always holds a complete checkpoint. opt and state may be nil.
// dtype is the weights' storage type, "F32" (default), "F64" or "BF16"; moments are always F32 or
// F64, so a resumed run continues bit-exactly. The weights are one WeightsFile; SaveWith can
// also shard them.
func Save[T compute.Float](dir string, p *Params[T], opt *AdamW[T], state *TrainerState, dtype string) error {
	return SaveWith(dir, p, opt, state, SaveOptions{DType: dtype})
}

// SaveWith is Save with the weights stored as o says. Sharded or not, the optimizer state is one
// OptimizerFile, and trainer.json lists the sha256 of every file, shards and index included.
func SaveWith[T compute.Float](dir string, p *Params[T], opt *AdamW[T], state *TrainerState, o SaveOptions) error {
	if o.ShardBytes < 0 {
		return fmt.Errorf("checkpoint %s: shard size %d bytes, want > 0 (or 0 for one %s)", dir, o.ShardBytes, WeightsFile)
	}
	if err := atomicio.CleanStale(dir); err != nil {
		return err
	}
	tmp, err := atomicio.TempDir(dir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tdt, ok := torchDType[o.DType]
	if !ok {
		tdt = "float32" // the weights' writer refuses the dtype below
	}
	if err := atomicio.WriteFile(filepath.Join(tmp, ConfigFile), p.Config.jsonFor(tdt), 0o644); err != nil {
		return err
	}
	weightFiles := []string{WeightsFile}
	if o.ShardBytes > 0 {
		if weightFiles, err = safetensors.WriteSharded(tmp, weightsPrefix, named(p, p.Data, ""), map[string]string{"format": "pt"}, o.DType, o.ShardBytes); err != nil {
			return err
		}
	} else if err := safetensors.Write(filepath.Join(tmp, WeightsFile), named(p, p.Data, ""), map[string]string{"format": "pt"}, o.DType); err != nil {
		return err
	}
	momentType := "F32"
	var zero T
	if _, ok := any(zero).(float64); ok {
		momentType = "F64"
	}
	if opt != nil {
		tensors := append(named(p, opt.M, ".exp_avg"), named(p, opt.V, ".exp_avg_sq")...)
		if opt.EWA != nil {
			tensors = append(tensors, named(p, opt.EWA, ewaSuffix)...)
		}
		c := opt.Cfg
		meta := map[string]string{
			"step": strconv.Itoa(opt.Step), "beta1": fmtFloat(c.Beta1), "beta2": fmtFloat(c.Beta2),
			"eps": fmtFloat(c.Eps), "weight_decay": fmtFloat(c.WeightDecay), "clip": fmtFloat(c.Clip),
		}
		if err := safetensors.Write(filepath.Join(tmp, OptimizerFile), tensors, meta, momentType); err != nil {
			return err
		}
	}
	if state != nil {
		s := *state
		s.Files = map[string]string{}
		files := append(append([]string{ConfigFile}, weightFiles...), OptimizerFile)
		for _, f := range files {
			sum, err := FileSHA256(filepath.Join(tmp, f))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			s.Files[f] = sum
		}
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return err
		}
		if err := atomicio.WriteFile(filepath.Join(tmp, TrainerFile), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return atomicio.CommitDir(tmp, dir)
}

// ewaSuffix names the weight average's tensors in the optimizer file.
const ewaSuffix = ".ewa"

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func named[T compute.Float](p *Params[T], flat []T, suffix string) []safetensors.Named {
	out := make([]safetensors.Named, len(p.Tensors))
	for i, t := range p.Tensors {
		out[i] = safetensors.Named{Name: t.Name + suffix, Shape: t.Shape, Data: flat[t.Offset : t.Offset+t.Size]}
	}
	return out
}

// FileSHA256 is the hex sha256 of a file: how trainer.json and manifests identify checkpoint files.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WeightsSHA256 names the weights of checkpoint dir by their content: the sha256 of
// model.safetensors, or for shards the sha256 of one "file=sha256" line per weight file (the
// index, then the shards in order). A file's hash comes from trainer.json when it records one,
// so a large checkpoint is not read again.
func WeightsSHA256(dir string) (string, error) {
	files, err := WeightFiles(dir)
	if err != nil {
		return "", err
	}
	var recorded map[string]string
	if st, err := LoadTrainerState(dir); err == nil && st != nil {
		recorded = st.Files
	}
	sum := func(name string) (string, error) {
		if h := recorded[name]; h != "" {
			return h, nil
		}
		return FileSHA256(filepath.Join(dir, name))
	}
	if len(files) == 1 {
		return sum(files[0])
	}
	h := sha256.New()
	for _, f := range files {
		fh, err := sum(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s=%s\n", f, fh)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Load reads config.json and the weights from dir: model.safetensors, or the shards
// model.safetensors.index.json names (checked as safetensors.OpenSharded does, and read one at a
// time). Weights stored as F32, F64, F16 or BF16 are converted to T. A tied model ignores a
// stored lm_head.weight. A directory with both model.safetensors and the index is refused: tools
// disagree on which of the two to read.
func Load[T compute.Float](dir string) (*Params[T], error) {
	p, _, err := LoadNotes[T](dir)
	return p, err
}

// LoadNotes is Load, also returning notes for the user: the config's (LoadConfigNotes), the
// stored tensors the model does not use, weights stored in another type than T, and an index
// whose metadata.total_size disagrees with its shards (which Hugging Face does not check either).
func LoadNotes[T compute.Float](dir string) (*Params[T], []string, error) {
	c, notes, err := LoadConfigNotes(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, nil, err
	}
	p := NewParams[T](c)
	isSharded, err := shardedWeights(dir)
	if err != nil {
		return nil, nil, err
	}
	if !isSharded {
		path := filepath.Join(dir, WeightsFile)
		f, err := safetensors.Read(path)
		if err != nil {
			return nil, nil, err
		}
		if err := fill(p, p.Data, f, path, ""); err != nil {
			return nil, nil, err
		}
		stored := map[string]safetensors.Tensor{}
		for _, name := range f.Names() {
			stored[name], _ = f.Tensor(name)
		}
		return p, append(notes, weightNotes(p, stored, "")...), nil
	}
	s, err := safetensors.OpenSharded(dir, weightsPrefix)
	if err != nil {
		return nil, nil, err
	}
	indexPath := filepath.Join(dir, IndexFile)
	// Every tensor is found, with its shape, in the headers before any data is read.
	byShard := make([][]int, len(s.Shards))
	for i, t := range p.Tensors {
		st, k, ok := s.Tensor(t.Name)
		if !ok {
			return nil, nil, fmt.Errorf("%s: missing tensor %s", indexPath, t.Name)
		}
		if !slices.Equal(st.Shape, t.Shape) {
			return nil, nil, fmt.Errorf("%s: tensor %s has shape %v, config.json implies %v", filepath.Join(dir, s.Shards[k].File), t.Name, st.Shape, t.Shape)
		}
		byShard[k] = append(byShard[k], i)
	}
	for k, idx := range byShard {
		if len(idx) == 0 {
			continue
		}
		f, err := s.ReadShard(k)
		if err != nil {
			return nil, nil, err
		}
		path := filepath.Join(dir, s.Shards[k].File)
		for _, i := range idx {
			t := p.Tensors[i]
			st, _ := f.Tensor(t.Name)
			if err := convert(p.Data[t.Offset:t.Offset+t.Size], st); err != nil {
				return nil, nil, fmt.Errorf("%s: %s: %w", path, t.Name, err)
			}
		}
	}
	stored := map[string]safetensors.Tensor{}
	for _, name := range s.Names() {
		stored[name], _, _ = s.Tensor(name)
	}
	notes = append(notes, weightNotes(p, stored, fmt.Sprintf(" in %d shards", len(s.Shards)))...)
	if ts, data := s.Index.TotalSize, s.DataBytes(); ts >= 0 && ts != data {
		notes = append(notes, fmt.Sprintf("%s: metadata.total_size = %d, but the shards hold %d bytes of tensor data (loaded all the same)", IndexFile, ts, data))
	}
	return p, notes, nil
}

// shardedWeights reports whether dir's weights are shards with an index rather than one
// WeightsFile, and refuses a directory that has both. A directory with neither reads as
// unsharded, so that the missing WeightsFile is what the error names.
func shardedWeights(dir string) (bool, error) {
	_, errIndex := os.Stat(filepath.Join(dir, IndexFile))
	_, errOne := os.Stat(filepath.Join(dir, WeightsFile))
	switch {
	case errIndex == nil && errOne == nil:
		return false, fmt.Errorf("%s holds both %s and %s: keep one (tools disagree on which to read)", dir, WeightsFile, IndexFile)
	case errIndex == nil:
		return true, nil
	case !errors.Is(errIndex, os.ErrNotExist):
		return false, errIndex
	}
	return false, nil
}

// WeightFiles lists the files of dir that hold its weights: WeightsFile, or IndexFile and the
// shards it names (their presence is not checked). A directory with both is refused.
func WeightFiles(dir string) ([]string, error) {
	isSharded, err := shardedWeights(dir)
	if err != nil || !isSharded {
		return []string{WeightsFile}, err
	}
	ix, err := safetensors.ReadIndex(filepath.Join(dir, IndexFile))
	if err != nil {
		return nil, err
	}
	return append([]string{IndexFile}, ix.Shards()...), nil
}

// StoredWeights is the table of contents of a checkpoint's weights, read from the headers of
// its files alone (so it is quick for any size): which file holds each tensor, in which dtype
// and shape. For shards the index has been checked as safetensors.OpenSharded checks it.
type StoredWeights struct {
	// Index is IndexFile for sharded weights, "" for one WeightsFile.
	Index string
	// IndexTensors is how many tensors the index lists (0 when not sharded).
	IndexTensors int
	// TotalSize is the index's metadata.total_size; -1 when it gives none, or not sharded.
	TotalSize int64
	// Files are the files holding the tensors, in name order.
	Files   []StoredFile
	tensors map[string]storedTensor
}

// StoredFile is one file of StoredWeights.
type StoredFile struct {
	Name      string         `json:"file"`
	Size      int64          `json:"bytes"`      // the file's size
	DataBytes int64          `json:"data_bytes"` // its tensor data
	Tensors   int            `json:"tensors"`
	DTypes    map[string]int `json:"dtypes"` // how many tensors of each dtype
}

type storedTensor struct {
	t    safetensors.Tensor
	file string
}

// ReadStoredWeights reads the table of contents of dir's weights (WeightsFile, or IndexFile and
// its shards).
func ReadStoredWeights(dir string) (*StoredWeights, error) {
	isSharded, err := shardedWeights(dir)
	if err != nil {
		return nil, err
	}
	w := &StoredWeights{TotalSize: -1, tensors: map[string]storedTensor{}}
	add := func(name string, h *safetensors.File, size int64) {
		sf := StoredFile{Name: name, Size: size, DTypes: map[string]int{}}
		for _, n := range h.Names() {
			t, _ := h.Tensor(n)
			w.tensors[n] = storedTensor{t, name}
			sf.Tensors++
			sf.DataBytes += t.NBytes()
			sf.DTypes[t.DType]++
		}
		w.Files = append(w.Files, sf)
	}
	if !isSharded {
		path := filepath.Join(dir, WeightsFile)
		h, err := safetensors.ReadHeader(path)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		add(WeightsFile, h, fi.Size())
		return w, nil
	}
	s, err := safetensors.OpenSharded(dir, weightsPrefix)
	if err != nil {
		return nil, err
	}
	w.Index, w.IndexTensors, w.TotalSize = IndexFile, len(s.Index.WeightMap), s.Index.TotalSize
	for _, sh := range s.Shards {
		add(sh.File, sh.Header, sh.Size)
	}
	return w, nil
}

// Tensor returns the stored tensor called name (its Data nil) and the file holding it.
func (w *StoredWeights) Tensor(name string) (safetensors.Tensor, string, bool) {
	st, ok := w.tensors[name]
	return st.t, st.file, ok
}

// Names returns every stored tensor's name, sorted.
func (w *StoredWeights) Names() []string { return slices.Sorted(maps.Keys(w.tensors)) }

// DataBytes is the bytes of tensor data in all the files.
func (w *StoredWeights) DataBytes() int64 {
	var n int64
	for _, f := range w.Files {
		n += f.DataBytes
	}
	return n
}

// weightNotes describes what of the stored tensors the model does not use, and their storage
// type when it is not T's. where says where they were found (" in 3 shards").
func weightNotes[T compute.Float](p *Params[T], stored map[string]safetensors.Tensor, where string) []string {
	var notes []string
	used := map[string]bool{}
	dtypes := map[string]bool{}
	for _, t := range p.Tensors {
		used[t.Name] = true
		dtypes[stored[t.Name].DType] = true
	}
	var unused []string
	for name := range stored {
		if !used[name] {
			unused = append(unused, name)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		const show = 5
		more := ""
		if len(unused) > show {
			more = fmt.Sprintf(" and %d more", len(unused)-show)
			unused = unused[:show]
		}
		why := ""
		if p.Config.TieWordEmbeddings && slices.Contains(unused, "lm_head.weight") {
			why = "; the head is tied to the embedding"
		}
		notes = append(notes, fmt.Sprintf("weights: ignored %s%s, which the model does not use%s", strings.Join(unused, ", "), more, why))
	}
	own := "F32"
	var zero T
	if _, is64 := any(zero).(float64); is64 {
		own = "F64"
	}
	if len(dtypes) != 1 || !dtypes[own] {
		names := slices.Sorted(maps.Keys(dtypes))
		notes = append(notes, fmt.Sprintf("weights: stored as %s%s, held as %s", strings.Join(names, " and "), where, own))
	}
	return notes
}

// fill copies the tensors of p's layout (names + suffix) from f into flat.
func fill[T compute.Float](p *Params[T], flat []T, f *safetensors.File, path, suffix string) error {
	for _, t := range p.Tensors {
		st, ok := f.Tensor(t.Name + suffix)
		if !ok {
			return fmt.Errorf("%s: missing tensor %s", path, t.Name+suffix)
		}
		if !slices.Equal(st.Shape, t.Shape) {
			return fmt.Errorf("%s: tensor %s has shape %v, config.json implies %v", path, t.Name+suffix, st.Shape, t.Shape)
		}
		if err := convert(flat[t.Offset:t.Offset+t.Size], st); err != nil {
			return fmt.Errorf("%s: %s: %w", path, t.Name+suffix, err)
		}
	}
	return nil
}

// convert copies st into dst, converting its values to T.
func convert[T compute.Float](dst []T, st safetensors.Tensor) error {
	var zero T
	if _, is64 := any(zero).(float64); is64 {
		v, err := st.Float64()
		if err != nil {
			return err
		}
		for i := range dst {
			dst[i] = T(v[i])
		}
		return nil
	}
	v, err := st.Float32()
	if err != nil {
		return err
	}
	for i := range dst {
		dst[i] = T(v[i])
	}
	return nil
}

// LoadOptimizer reads dir/optimizer.safetensors into AdamW state for p with hyperparameters cfg.
// It returns (nil, nil) when the checkpoint has no optimizer state.
func LoadOptimizer[T compute.Float](dir string, p *Params[T], cfg OptimConfig) (*AdamW[T], error) {
	path := filepath.Join(dir, OptimizerFile)
	f, err := safetensors.Read(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	opt := NewAdamW[T](cfg, len(p.Data))
	if err := fill(p, opt.M, f, path, ".exp_avg"); err != nil {
		return nil, err
	}
	if err := fill(p, opt.V, f, path, ".exp_avg_sq"); err != nil {
		return nil, err
	}
	if _, ok := f.Tensor(p.Tensors[0].Name + ewaSuffix); ok {
		opt.EWA = make([]T, len(p.Data))
		if err := fill(p, opt.EWA, f, path, ewaSuffix); err != nil {
			return nil, err
		}
	}
	if s, ok := f.Metadata["step"]; ok {
		if opt.Step, err = strconv.Atoi(s); err != nil || opt.Step < 0 {
			return nil, fmt.Errorf("%s: metadata step = %q, want a non-negative integer", path, s)
		}
	}
	return opt, nil
}

// LoadTrainerState reads dir/trainer.json and checks the sha256 of every file it lists, so a
// checkpoint damaged after it was written is refused rather than silently resumed from.
// It returns (nil, nil) when the checkpoint has no trainer state.
func LoadTrainerState(dir string) (*TrainerState, error) {
	path := filepath.Join(dir, TrainerFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s TrainerState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	names := make([]string, 0, len(s.Files))
	for n := range s.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sum, err := FileSHA256(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("%s lists %s: %w", path, n, err)
		}
		if sum != s.Files[n] {
			return nil, fmt.Errorf("%s: sha256 of %s is %s, trainer.json recorded %s: the checkpoint is damaged", dir, n, sum, s.Files[n])
		}
	}
	return &s, nil
}
