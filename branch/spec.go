package branch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"cbs/internal/atomicio"

	"cbs/data"
	"cbs/model"
	"cbs/runfmt"
)

// ModelInit describes a freshly initialised model (when a run has no parent checkpoint). The
// vocabulary size and mask token come from the tokenizer.
type ModelInit struct {
	Hidden     int     `json:"hidden_size" toml:"hidden_size" default:"required" doc:"The model width."`
	Layers     int     `json:"layers" toml:"layers" default:"required" doc:"Transformer blocks."`
	Heads      int     `json:"heads" toml:"heads" default:"required" doc:"Query heads."`
	KVHeads    int     `json:"kv_heads" toml:"kv_heads" default:"heads" doc:"Key/value heads (grouped-query attention); divides heads."`
	HeadDim    int     `json:"head_dim" toml:"head_dim" default:"hidden_size / heads" doc:"Width of one head."`
	FF         int     `json:"intermediate_size" toml:"intermediate_size" default:"required" doc:"Width of the SwiGLU MLP."`
	Tie        bool    `json:"tie_word_embeddings" toml:"tie_word_embeddings" default:"false" doc:"The output head reuses the token embedding."`
	InitStd    float64 `json:"init_std" toml:"init_std" default:"0.02" doc:"Standard deviation of the normal initial weights."`
	RopeTheta  float64 `json:"rope_theta" toml:"rope_theta" default:"10000" doc:"Base of the rotary position embedding."`
	RMSNormEps float64 `json:"rms_norm_eps" toml:"rms_norm_eps" default:"1e-6" doc:"Epsilon of every RMSNorm."`
}

// Optim is the optimizer as a config states it.
type Optim struct {
	LR             float64            `json:"lr" toml:"lr" doc:"Peak learning rate of AdamW (of a sweep's reference batch; sweeps default to the parent's last LR when its trainer.json records one)."`
	Betas          [2]float64         `json:"betas" toml:"betas" doc:"AdamW's beta1 and beta2."`
	Eps            float64            `json:"eps" toml:"eps" doc:"AdamW's epsilon."`
	WeightDecay    float64            `json:"weight_decay" toml:"weight_decay" doc:"Decoupled weight decay (multiplied by the LR)."`
	Clip           float64            `json:"clip" toml:"clip" doc:"Clip the global gradient norm to this; 0: no clipping."`
	Groups         map[string]float64 `json:"groups,omitempty" toml:"groups" default:"1 for every group" doc:"LR multiplier per parameter group, as a table: [optimizer.groups] attention = 4. Groups: attention, mlp, embedding, head, norms, and router in a Qwen3-MoE model."`
	DecayNorms     bool               `json:"decay_norms" toml:"decay_norms" default:"false" doc:"Apply weight decay to the RMSNorm weights too."`
	DecayEmbedding bool               `json:"decay_embedding" toml:"decay_embedding" doc:"Apply weight decay to the token embedding."`
}

// ModelOptim converts to the model's optimizer config.
func (o Optim) ModelOptim() model.OptimConfig {
	return model.OptimConfig{LR: o.LR, Beta1: o.Betas[0], Beta2: o.Betas[1], Eps: o.Eps,
		WeightDecay: o.WeightDecay, Clip: o.Clip, LRMult: o.Groups, DecayNorms: o.DecayNorms,
		DecayEmbedding: o.DecayEmbedding}
}

// Spec is one fully resolved training run: everything that determines its numbers, plus where
// and how fast to run it. cbs train --config builds one; a sweep expands into one per branch.
type Spec struct {
	ID string `json:"id"`
	// Seed keys the training masks and t; replicates differ in it and in Replicate, which
	// reorders the tokens after the fork (data.Replica). Data.Seed, the stream's order, is the
	// parent's in every replicate.
	Seed uint64 `json:"seed"`
	// InitSeed draws a fresh model's weights (shared by every branch of a sweep).
	InitSeed  uint64     `json:"init_seed"`
	Objective string     `json:"objective"`
	MaskEps   float64    `json:"mask_eps"`
	Init      *ModelInit `json:"init,omitempty"`
	// Parent is a checkpoint directory to start from (instead of Init).
	Parent string `json:"parent,omitempty"`
	// OptimizerState is keep (continue the parent's AdamW moments) or reset.
	OptimizerState string            `json:"optimizer_state,omitempty"`
	Data           data.SourceConfig `json:"data"`
	Optim          Optim             `json:"optimizer"`
	Schedule       Schedule          `json:"schedule"`
	Budget         Tokens            `json:"budget_tokens"`
	BatchTokens    Tokens            `json:"batch_tokens"`
	MicroBatch     int               `json:"micro_batch"`
	// LRScale multiplies every group's peak LR (the sweep's LR scaling rule).
	LRScale   float64 `json:"lr_scale"`
	EvalEvery Tokens  `json:"eval_every_tokens"`
	// EvalEWA, when > 0, is the time constant in tokens of an exponential moving average of the
	// weights that eval measures instead of the weights themselves: at a constant LR the
	// weights jitter around where the loss has got to, and the average sees through that.
	EvalEWA         Tokens `json:"eval_ewa_tokens,omitempty"`
	EvalSeed        uint64 `json:"eval_seed"`
	CheckpointEvery Tokens `json:"checkpoint_every_tokens"`
	Replicate       int    `json:"replicate"`

	// Threads and Device change how fast a run goes, never its numbers.
	Threads int    `json:"threads"`
	Device  string `json:"device"`
	// Precision is that of the matrix products' operands ("" for the device's default). It
	// changes how the numbers round, as the device does, and like the device it is left out
	// of the fingerprint: a run may resume at another precision, and segments.jsonl records
	// where it did.
	Precision string `json:"precision,omitempty"`
}

// SeqLen is the tokens per sequence.
func (s *Spec) SeqLen() int { return s.Data.SeqLen }

// BatchSeqs is the global batch in sequences.
func (s *Spec) BatchSeqs() int { return int(s.BatchTokens) / s.SeqLen() }

// Accum is the number of micro-batches per step.
func (s *Spec) Accum() int { return s.BatchSeqs() / s.MicroBatch }

// Steps is budget / batch.
func (s *Spec) Steps() int { return int(s.Budget / s.BatchTokens) }

// Validate checks the arithmetic that ties budget, batch, micro-batch and eval marks together,
// naming the config key that is wrong.
func (s *Spec) Validate() error {
	L := Tokens(s.SeqLen())
	switch {
	case s.Objective != model.AR && s.Objective != model.MDM:
		return fmt.Errorf("objective.name = %q, want \"ar\" or \"mdm\"", s.Objective)
	case s.Objective == model.MDM && !(s.MaskEps > 0 && s.MaskEps < 1):
		return fmt.Errorf("objective.mask_eps = %g, want 0 < eps < 1", s.MaskEps)
	case L <= 1:
		return fmt.Errorf("data.seq_len = %d, want >= 2", L)
	case s.Budget <= 0:
		return fmt.Errorf("budget = %d, want a positive number of tokens", s.Budget)
	case s.MicroBatch <= 0:
		return fmt.Errorf("micro_batch = %d, want a positive number of sequences", s.MicroBatch)
	case s.BatchTokens <= 0 || s.BatchTokens%L != 0:
		return fmt.Errorf("batch = %d tokens is not a positive whole number of sequences of data.seq_len = %d tokens", s.BatchTokens, L)
	case s.BatchTokens%(L*Tokens(s.MicroBatch)) != 0:
		return fmt.Errorf("batch = %d tokens (%d sequences) is not a whole number of micro-batches of micro_batch = %d sequences",
			s.BatchTokens, s.BatchTokens/L, s.MicroBatch)
	case s.Budget%s.BatchTokens != 0:
		return fmt.Errorf("budget = %v (%d tokens) is not a multiple of the batch, %d tokens", s.Budget, s.Budget, s.BatchTokens)
	case s.EvalEvery < 0 || (s.EvalEvery > 0 && s.EvalEvery%s.BatchTokens != 0):
		return fmt.Errorf("eval.every = %d tokens is not a multiple of the batch, %d tokens (eval marks must fall on step boundaries in every branch)", s.EvalEvery, s.BatchTokens)
	case s.CheckpointEvery < 0 || (s.CheckpointEvery > 0 && s.CheckpointEvery%s.BatchTokens != 0):
		return fmt.Errorf("checkpoint_every = %d tokens is not a multiple of the batch, %d tokens", s.CheckpointEvery, s.BatchTokens)
	case s.EvalEWA < 0:
		return fmt.Errorf("eval.weight_average = %d tokens, want >= 0 (0: evaluate the weights themselves)", s.EvalEWA)
	case s.LRScale <= 0:
		return fmt.Errorf("lr_scale = %g, want > 0", s.LRScale)
	case s.Init == nil && s.Parent == "":
		return fmt.Errorf("parent: give parent.checkpoint or a [model] table to initialise from")
	case s.Parent != "" && s.OptimizerState != "keep" && s.OptimizerState != "reset":
		return fmt.Errorf("parent.optimizer_state = %q, want \"keep\" or \"reset\"", s.OptimizerState)
	}
	if err := s.validateInit(); err != nil {
		return err
	}
	sch := s.Schedule
	sch.Total = s.Budget
	if err := sch.Validate(); err != nil {
		return err
	}
	return s.Optim.ModelOptim().Validate()
}

// Fingerprint identifies what determines the run's numbers: the spec without its ID, threads,
// device and precision. A checkpoint is resumed only by a spec with the same fingerprint.
func (s *Spec) Fingerprint() string {
	c := *s
	c.ID, c.Threads, c.Device, c.Precision, c.CheckpointEvery = "", 0, "", "", 0
	// Where the parent and the token cache live does not change a number; what the parent holds does.
	c.Data.CacheDir = ""
	if c.Parent != "" {
		c.Parent = CheckpointIdentity(c.Parent)
	}
	b, _ := json.Marshal(c)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// LoadSpec reads dir/branch.json, the resolved spec a sweep wrote for one branch.
func LoadSpec(dir string) (*Spec, error) {
	path := filepath.Join(dir, runfmt.SpecFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, &ConfigError{fmt.Errorf("%s: %w", path, err)}
	}
	if err := s.Validate(); err != nil {
		return nil, &ConfigError{fmt.Errorf("%s: %w", path, err)}
	}
	return &s, nil
}

// WriteSpec writes dir/branch.json: the spec, with the branch record its readers take
// (Record) merged in.
func WriteSpec(dir string, s *Spec) error {
	b, err := runfmt.EncodeBranch(s.Record(), s)
	if err != nil {
		return err
	}
	return atomicio.WriteFile(filepath.Join(dir, runfmt.SpecFile), b, 0o644)
}

// Record is what branch.json says of the branch to its readers: its shape and the arithmetic
// derived from the spec, so that a reader (the analysis, a report, a person) needs no copy of
// this package.
func (s *Spec) Record() runfmt.Branch {
	r := runfmt.Branch{
		ID: s.ID, Seed: int64(s.Seed), Objective: s.Objective, BudgetTokens: int64(s.Budget),
		BatchTokens: int64(s.BatchTokens), MicroBatch: int64(s.MicroBatch), LRScale: s.LRScale,
		EvalEveryTokens: int64(s.EvalEvery), Replicate: s.Replicate,
		SeqLen: int64(s.SeqLen()), BatchSeqs: int64(s.BatchSeqs()), Accum: int64(s.Accum()), Steps: int64(s.Steps()),
		LRPeak: map[string]float64{},
	}
	oc := s.Optim.ModelOptim()
	for _, g := range model.Groups {
		r.LRPeak[g] = s.Optim.LR * s.LRScale * oc.Mult(g)
	}
	return r
}

// initKeys names the config.json keys that model.Config.Validate reports in the terms of a
// config's [model] table, or of what decides them.
var initKeys = strings.NewReplacer(
	"num_hidden_layers", "model.layers", "num_attention_heads", "model.heads",
	"num_key_value_heads", "model.kv_heads", "hidden_size", "model.hidden_size",
	"intermediate_size", "model.intermediate_size", "head_dim", "model.head_dim",
	"rms_norm_eps", "model.rms_norm_eps", "rope_theta", "model.rope_theta",
	"vocab_size", "vocab_size (the tokenizer's)", "max_position_embeddings", "data.seq_len",
)

// validateInit checks a fresh model's architecture, and its size against the machine's memory,
// before anything is allocated or written: a bad [model] table is a bad config, in a train config
// and in every branch of a sweep alike.
func (s *Spec) validateInit() error {
	if s.Init == nil || s.Parent != "" || s.Data.Source == "" {
		// No model of cbs's to build: a parent's config.json is checked when it loads, and a
		// spec without a data source is an external trainer's.
		return nil
	}
	_, err := s.ModelConfig()
	return err
}

// ModelConfig is the architecture the run trains: its parent's config.json, or the [model]
// table with the tokenizer's vocabulary, validated.
func (s *Spec) ModelConfig() (model.Config, error) {
	if s.Parent != "" {
		return model.LoadConfig(filepath.Join(s.Parent, model.ConfigFile))
	}
	m := s.Init
	if m == nil {
		return model.Config{}, errors.New("parent: give parent.checkpoint or a [model] table to initialise from")
	}
	tok, err := data.NewTokenizer(s.Data.Tokenizer)
	if err != nil {
		return model.Config{}, fmt.Errorf("data.tokenizer: %v", err)
	}
	c := model.Config{
		ModelType: "qwen3", HiddenSize: m.Hidden, IntermediateSize: m.FF, NumLayers: m.Layers,
		NumHeads: m.Heads, NumKVHeads: m.KVHeads, HeadDim: m.HeadDim, RMSNormEps: m.RMSNormEps,
		RopeTheta: m.RopeTheta, VocabSize: tok.VocabSize(), TieWordEmbeddings: m.Tie,
		MaxPositionEmbeddings: s.SeqLen(), MaskTokenID: int(tok.Mask()), Attention: model.Causal,
	}
	if err := c.Validate(); err != nil {
		return c, errors.New(initKeys.Replace(strings.TrimPrefix(err.Error(), "model config: ")))
	}
	return c, nil
}

// TrainingBytes estimates the memory one run of s holds on the CPU: float32 weights, gradient,
// two AdamW moments (and the weight average when eval keeps one), and the activations of one
// micro-batch: per token and layer about 12 hidden-sized and 3 MLP-sized vectors and a row of
// attention probabilities per head, and per token the logits and their gradient.
func (s *Spec) TrainingBytes(c model.Config) float64 {
	copies := 4.0
	if s.EvalEWA > 0 {
		copies++
	}
	tokens := float64(s.MicroBatch) * float64(s.SeqLen())
	perLayer := 12*float64(c.HiddenSize) + 3*float64(c.IntermediateSize) + float64(c.NumHeads)*float64(s.SeqLen())
	act := tokens * (float64(c.NumLayers)*perLayer + 2*float64(c.VocabSize))
	return 4 * (copies*c.ParamCount() + act)
}

// checkpointIDs caches CheckpointIdentity by path and the size and time of its first weight file.
var checkpointIDs sync.Map

// CheckpointIdentity names a checkpoint by the content of its weights (model.WeightsSHA256).
// Fingerprints use it instead of the path, so the same checkpoint named two ways, or moved, is
// the same parent. A directory without readable weights is named by its path.
func CheckpointIdentity(dir string) string {
	files, err := model.WeightFiles(dir)
	if err != nil {
		return dir
	}
	fi, err := os.Stat(filepath.Join(dir, files[0]))
	if err != nil {
		return dir
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", dir, fi.Size(), fi.ModTime().UnixNano())
	if id, ok := checkpointIDs.Load(key); ok {
		return id.(string)
	}
	sum, err := model.WeightsSHA256(dir)
	if err != nil {
		return dir
	}
	id := "sha256:" + sum
	checkpointIDs.Store(key, id)
	return id
}
