package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"cbs/compute"
	"cbs/internal/atomicio"
	"cbs/internal/safetensors"
)

// Checkpoint file names. A directory holding only ConfigFile and WeightsFile (as written by
// Hugging Face tools) is a valid checkpoint to start from.
const (
	ConfigFile    = "config.json"
	WeightsFile   = "model.safetensors"
	OptimizerFile = "optimizer.safetensors"
	TrainerFile   = "trainer.json"
)

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
// F64, so a resumed run continues bit-exactly.
func Save[T compute.Float](dir string, p *Params[T], opt *AdamW[T], state *TrainerState, dtype string) error {
	if err := atomicio.CleanStale(dir); err != nil {
		return err
	}
	tmp, err := atomicio.TempDir(dir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := atomicio.WriteFile(filepath.Join(tmp, ConfigFile), p.Config.JSON(), 0o644); err != nil {
		return err
	}
	if err := safetensors.Write(filepath.Join(tmp, WeightsFile), named(p, p.Data, ""), map[string]string{"format": "pt"}, dtype); err != nil {
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
		for _, f := range []string{ConfigFile, WeightsFile, OptimizerFile} {
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

// Load reads config.json and model.safetensors from dir. Weights stored as F32, F64, F16 or BF16
// are converted to T. A tied model ignores a stored lm_head.weight.
func Load[T compute.Float](dir string) (*Params[T], error) {
	c, err := LoadConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	p := NewParams[T](c)
	path := filepath.Join(dir, WeightsFile)
	f, err := safetensors.Read(path)
	if err != nil {
		return nil, err
	}
	if err := fill(p, p.Data, f, path, ""); err != nil {
		return nil, err
	}
	return p, nil
}

// fill copies the tensors of p's layout (names + suffix) from f into flat.
func fill[T compute.Float](p *Params[T], flat []T, f *safetensors.File, path, suffix string) error {
	for _, t := range p.Tensors {
		st, ok := f.Tensor(t.Name + suffix)
		if !ok {
			return fmt.Errorf("%s: missing tensor %s", path, t.Name+suffix)
		}
		if !sameShape(st.Shape, t.Shape) {
			return fmt.Errorf("%s: tensor %s has shape %v, config.json implies %v", path, t.Name+suffix, st.Shape, t.Shape)
		}
		dst := flat[t.Offset : t.Offset+t.Size]
		var zero T
		if _, is64 := any(zero).(float64); is64 {
			v, err := st.Float64()
			if err != nil {
				return fmt.Errorf("%s: %s: %w", path, t.Name+suffix, err)
			}
			for i := range dst {
				dst[i] = T(v[i])
			}
		} else {
			v, err := st.Float32()
			if err != nil {
				return fmt.Errorf("%s: %s: %w", path, t.Name+suffix, err)
			}
			for i := range dst {
				dst[i] = T(v[i])
			}
		}
	}
	return nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
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
