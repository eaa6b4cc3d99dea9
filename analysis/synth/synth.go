// Package synth writes synthetic run directories whose true critical batch size is known, for
// testing the estimators and the figures end to end without a trainer.
//
// After s steps, a branch with batch B has made the progress of x = s / (1 + Bcrit/B) steps of a
// branch free of gradient noise, and its loss is Progress(x) + BatchEffect(B).
// Steps to any target therefore follow S(B) = S_min (1 + Bcrit/B) exactly (McCandlish et al.),
// and BatchEffect can add a final-loss-versus-batch curve such as A B^-alpha.
package synth

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"cbs/internal/rng"
)

// Spec describes a synthetic sweep.
type Spec struct {
	Batches    []int64 // global batch sizes in tokens
	Replicates int     // seed replicates per batch size (at least 1)
	Budget     int64   // tokens per branch; a multiple of every batch size
	EvalEvery  int64   // eval marks; a multiple of every batch size
	Shards     int     // eval shards per mark; 0 writes eval_loss only
	SeqLen     int64

	Bcrit       float64                     // true critical batch, tokens
	Progress    func(x float64) float64     // loss after x batch-free steps; nil: 2 + 3 (1 + x/20)^-0.5
	BatchEffect func(batch float64) float64 // added to every loss of a branch; nil: 0

	EvalNoise      float64 // SD of each shard's independent noise at each mark
	ShardSpread    float64 // SD of the fixed per-shard offset, shared by every branch
	ReplicateNoise float64 // SD of a per-replicate offset
	TrainNoise     float64 // SD of the per-step train loss noise
	NoEval         bool    // write no eval lines

	GNS     bool    // write gns_small_sq, gns_big_sq and the two batch sizes
	BSimple float64 // true tr(Sigma)/|G|^2, tokens, when GNS is set
	// MicroBatch is the micro-batch in tokens, a multiple of SeqLen (0: SeqLen). A branch whose
	// batch is one micro-batch writes no gradient-noise fields, as the trainer does: it has no
	// smaller batch's gradient to compare with.
	MicroBatch int64

	Seed  uint64
	State string // state.json state for every branch; "" writes "done"
}

// DefaultProgress is the loss curve used when Spec.Progress is nil.
func DefaultProgress(x float64) float64 { return 2 + 3*math.Pow(1+x/20, -0.5) }

// ID names a branch directory the way the results format's example does: b0064Ki-r0.
func ID(batch int64, rep int) string {
	name := fmt.Sprintf("%d", batch)
	if batch%1024 == 0 {
		name = fmt.Sprintf("%04dKi", batch/1024)
	}
	return fmt.Sprintf("b%s-r%d", name, rep)
}

// Write creates dir/branches/<id>/{branch.json,state.json,metrics.jsonl} for every branch.
func Write(dir string, s Spec) error {
	s.fillDefaults()
	shardOffset := make([]float64, s.Shards)
	so := rng.Key(s.Seed, "synth-shard", 0)
	for i := range shardOffset {
		shardOffset[i] = s.ShardSpread * so.NormFloat64()
	}
	for bi, batch := range s.Batches {
		if s.Budget%batch != 0 || (s.EvalEvery > 0 && s.EvalEvery%batch != 0) {
			return fmt.Errorf("synth: budget %d and eval_every %d must be multiples of batch %d", s.Budget, s.EvalEvery, batch)
		}
		if s.MicroBatch%s.SeqLen != 0 || batch%s.MicroBatch != 0 {
			return fmt.Errorf("synth: batch %d must be a multiple of the micro-batch %d, and that of seq_len %d", batch, s.MicroBatch, s.SeqLen)
		}
		for rep := 0; rep < s.Replicates; rep++ {
			if err := s.writeBranch(dir, bi, batch, rep, shardOffset); err != nil {
				return err
			}
		}
	}
	return nil
}

// fillDefaults sets the fields left zero to the defaults the Spec's comments give.
func (s *Spec) fillDefaults() {
	if s.Replicates < 1 {
		s.Replicates = 1
	}
	if s.SeqLen == 0 {
		s.SeqLen = 64
	}
	if s.MicroBatch == 0 {
		s.MicroBatch = s.SeqLen
	}
	if s.Progress == nil {
		s.Progress = DefaultProgress
	}
	if s.State == "" {
		s.State = "done"
	}
}

// writeBranch writes replicate rep of the bi-th batch size: its branch.json, state.json and
// metrics.jsonl, the noise drawn from a stream of its own.
func (s *Spec) writeBranch(dir string, bi int, batch int64, rep int, shardOffset []float64) error {
	id := ID(batch, rep)
	bdir := filepath.Join(dir, "branches", id)
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return err
	}
	steps := s.Budget / batch
	spec := map[string]any{
		"id": id, "batch_tokens": batch, "batch_seqs": batch / s.SeqLen, "seq_len": s.SeqLen,
		"micro_batch": s.MicroBatch / s.SeqLen, "accum": batch / s.MicroBatch, "budget_tokens": s.Budget, "steps": steps,
		"replicate": rep, "seed": int64(s.Seed) + int64(rep), "objective": "mdm", "lr_scale": 1.0,
		"lr_peak": map[string]float64{"default": 1e-3}, "eval_every_tokens": s.EvalEvery,
	}
	if err := writeJSON(filepath.Join(bdir, "branch.json"), spec); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(bdir, "state.json"), map[string]any{"state": s.State, "step": steps}); err != nil {
		return err
	}
	noise := rng.Key(s.Seed, "synth-noise", uint64(bi*1000+rep))
	repOffset := s.ReplicateNoise * noise.NormFloat64()
	var b strings.Builder
	effect := 0.0
	if s.BatchEffect != nil {
		effect = s.BatchEffect(float64(batch))
	}
	for step := int64(1); step <= steps; step++ {
		tokens := step * batch
		x := float64(step) / (1 + s.Bcrit/float64(batch))
		l := s.Progress(x) + effect + repOffset
		writeLine(&b, s.trainLine(step, batch, x, l, &noise))
		if !s.NoEval && s.EvalEvery > 0 && tokens%s.EvalEvery == 0 {
			writeLine(&b, s.evalLine(step, tokens, l, shardOffset, &noise))
		}
	}
	return os.WriteFile(filepath.Join(bdir, "metrics.jsonl"), []byte(b.String()), 0o644)
}

// trainLine is the metrics line of a training step at batch-free progress x and true loss l,
// with the gradient-noise fields when the Spec asks for them and the batch has a smaller one.
func (s *Spec) trainLine(step, batch int64, x, l float64, noise *rng.Stream) map[string]any {
	line := map[string]any{"tokens": step * batch, "step": step, "lr": 1e-3, "train_loss": l + s.TrainNoise*noise.NormFloat64(), "grad_norm": 1.0}
	if s.GNS && batch > s.MicroBatch {
		g2 := 1 / (1 + x/50)
		tr := s.BSimple * g2
		bs := s.MicroBatch
		line["gns_b_small"], line["gns_b_big"] = bs, batch
		line["gns_small_sq"] = (g2 + tr/float64(bs)) * (1 + 0.3*noise.NormFloat64())
		line["gns_big_sq"] = (g2 + tr/float64(batch)) * (1 + 0.05*noise.NormFloat64())
	}
	return line
}

// evalLine is the metrics line of an eval at true loss l: per-shard losses, each with its
// shard's fixed offset and noise, and their mean; or the mean alone when there are no shards.
func (s *Spec) evalLine(step, tokens int64, l float64, shardOffset []float64, noise *rng.Stream) map[string]any {
	ev := map[string]any{"tokens": tokens, "step": step}
	var mean float64
	if s.Shards > 0 {
		shards := make([]float64, s.Shards)
		for i := range shards {
			shards[i] = l + shardOffset[i] + s.EvalNoise*noise.NormFloat64()
			mean += shards[i] / float64(s.Shards)
		}
		ev["eval_shards"] = shards
	} else {
		mean = l + s.EvalNoise*noise.NormFloat64()
	}
	ev["eval_loss"] = mean
	return ev
}

func writeLine(b *strings.Builder, v map[string]any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic("synth: " + err.Error())
	}
	b.Write(data)
	b.WriteByte('\n')
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
