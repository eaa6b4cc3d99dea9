// Package sweep turns a study's TOML config into branches that differ only in batch size, runs
// them (locally, concurrently, resumably), and keeps the run directory: the config as given and
// resolved, the manifest, the lock and each branch's directory.
package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"cbs/analysis"
	"cbs/branch"
	"cbs/model"
)

// Config is a sweep's TOML file: the tables shared with train configs, plus [branches] and
// [analysis].
type Config struct {
	branch.Common
	Branches Branches      `toml:"branches"`
	Analysis AnalysisTable `toml:"analysis"`
	// Slurm and External are nil unless the config has the table or run.executor needs it, so
	// the resolved config of a local sweep does not change shape.
	Slurm    *SlurmTable    `toml:"slurm,omitempty"`
	External *ExternalTable `toml:"external,omitempty"`
}

// Branches is the [branches] table: the batch-size ladder and what every branch shares.
type Branches struct {
	Budget     branch.Tokens   `toml:"budget" default:"required" doc:"Training tokens of every branch; a multiple of every batch, so all branches see the same tokens."`
	BatchSizes []branch.Tokens `toml:"batch_sizes" default:"required" doc:"The ladder of global batch sizes in tokens, increasing; each a multiple of data.seq_len."`
	// ReferenceBatch is B_ref of the LR scaling rule; default: the parent's batch when its
	// trainer.json records one, else the smallest batch.
	ReferenceBatch branch.Tokens `toml:"reference_batch" default:"the parent's batch when its trainer.json records one, else the smallest batch" doc:"B_ref: the batch that trains at optimizer.lr, and the one token overheads are measured against."`
	LRScaling      LRScaling     `toml:"lr_scaling" doc:"Each branch's peak LR is optimizer.lr x (B / B_ref)^p: \"none\" (p = 0), \"sqrt\" (0.5), \"linear\" (1), a number p, or a list of multipliers, one per batch size."`
	// MicroBatch is the most sequences one forward pass takes; a smaller batch is one pass.
	MicroBatch int `toml:"micro_batch" default:"the smallest batch" doc:"The most sequences one forward pass takes: a branch accumulates batch / (micro_batch x seq_len) of them per step; a smaller batch is one pass."`
	Replicates int `toml:"replicates" doc:"Seed replicates per batch size (1 to 1000): each draws its own masks and order of the tokens after the fork; the fit's interval resamples them."`
	// CheckpointEvery is how often branches checkpoint (they always do at the end and when
	// interrupted); default: every eval mark.
	CheckpointEvery branch.Tokens `toml:"checkpoint_every" default:"every eval mark" doc:"How often branches checkpoint, in tokens; they always do at the end and when interrupted."`
}

// AnalysisTable is the [analysis] table, the options of `cbs fit` for this sweep.
type AnalysisTable struct {
	Metric string  `toml:"metric" doc:"The loss the fit compares: \"auto\" (eval_loss when every branch has it at a common mark, else train_loss_ema), \"eval_loss\" or \"train_loss_ema\" (the train loss smoothed over ema_tokens)."`
	Eps    float64 `toml:"eps" doc:"Loss tolerance of the primary estimand's comparison and the tolerance rule, as a fraction of the reference batch's loss (0.01: 1%)."`
	// EpsAbs is left out of the resolved config when 0, so a sweep resolved before the key
	// existed resolves to the same bytes.
	EpsAbs     float64   `toml:"eps_abs,omitzero" doc:"An absolute tolerance in nats instead of eps, when set."`
	Targets    []float64 `toml:"targets" default:"picked from the curves" doc:"Target losses of the steps-to-target fits."`
	NumTargets int       `toml:"num_targets" doc:"How many targets to pick between the loss every branch reaches and the loss every branch starts above, when targets is empty (1 to 50)."`
	Tau        float64   `toml:"tau" doc:"The critical batch is the largest that needs at most (1 + tau) times the reference batch's tokens to reach the same loss; 0 < tau <= 10."`
	Bootstrap  int       `toml:"bootstrap" doc:"Bootstrap resamples of the intervals (0 to 100000); 0: no intervals."`
	Level      float64   `toml:"level" doc:"Coverage of the intervals, in (0, 1)."`
	EMATokens  float64   `toml:"ema_tokens" default:"1/20 of the shortest branch" doc:"Time constant in tokens of the moving average of the train loss, when it is the metric."`
}

// Options converts the table to analysis options.
func (a AnalysisTable) Options(seed uint64, reference float64) analysis.Options {
	return analysis.Options{Metric: a.Metric, EMATokens: a.EMATokens, Eps: a.Eps, EpsAbs: a.EpsAbs, Targets: a.Targets,
		NumTargets: a.NumTargets, Tau: a.Tau, ReferenceBatch: reference, Bootstrap: a.Bootstrap, Seed: seed, Level: a.Level}
}

// DefaultAnalysis is the [analysis] table a sweep gets for the keys it leaves out.
func DefaultAnalysis() AnalysisTable {
	d := analysis.Defaults()
	return AnalysisTable{Metric: d.Metric, Eps: d.Eps, NumTargets: d.NumTargets, Tau: d.Tau, Bootstrap: d.Bootstrap, Level: d.Level}
}

// DefaultConfig is a sweep config with every default that does not depend on other keys.
func DefaultConfig() Config {
	c := Config{Common: branch.DefaultCommon(), Analysis: DefaultAnalysis()}
	c.Branches.Replicates = 1
	c.Branches.LRScaling = LRScaling{Rule: "sqrt", Power: 0.5}
	return c
}

// LRScaling is the rule that sets each branch's peak LR from its batch: base x (B / B_ref)^p
// with p from "none" (0), "sqrt" (0.5), "linear" (1) or a number, or an explicit list of
// multipliers, one per batch size.
type LRScaling struct {
	Rule  string    // none, sqrt, linear, power, list
	Power float64   // for power (and the named rules)
	List  []float64 // for list
}

// UnmarshalTOML accepts a rule name, a number (the power) or a list of multipliers.
func (l *LRScaling) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		switch x {
		case "none":
			*l = LRScaling{Rule: "none", Power: 0}
		case "sqrt":
			*l = LRScaling{Rule: "sqrt", Power: 0.5}
		case "linear":
			*l = LRScaling{Rule: "linear", Power: 1}
		default:
			return fmt.Errorf("branches.lr_scaling = %q, want \"none\", \"sqrt\", \"linear\", a power p or a list of multipliers", x)
		}
	case int64:
		*l = LRScaling{Rule: "power", Power: float64(x)}
	case float64:
		*l = LRScaling{Rule: "power", Power: x}
	case []any:
		l.Rule, l.List = "list", nil
		for i, e := range x {
			var f float64
			switch n := e.(type) {
			case float64:
				f = n
			case int64:
				f = float64(n)
			default:
				return fmt.Errorf("branches.lr_scaling[%d] = %v, want a number", i, e)
			}
			l.List = append(l.List, f)
		}
	default:
		return fmt.Errorf("branches.lr_scaling = %v, want \"none\", \"sqrt\", \"linear\", a power p or a list of multipliers", v)
	}
	return nil
}

// MarshalTOML writes the rule back in the form it was given (for resolved.toml).
func (l LRScaling) MarshalTOML() ([]byte, error) {
	switch l.Rule {
	case "none", "sqrt", "linear":
		return []byte(fmt.Sprintf("%q", l.Rule)), nil
	case "list":
		s := "["
		for i, v := range l.List {
			if i > 0 {
				s += ", "
			}
			s += fmt.Sprintf("%v", v)
		}
		return []byte(s + "]"), nil
	}
	return []byte(fmt.Sprintf("%v", l.Power)), nil
}

// Factor is the multiplier of the base LR for batch i of the ladder.
func (l LRScaling) Factor(i int, batch, ref branch.Tokens) float64 {
	if l.Rule == "list" {
		return l.List[i]
	}
	return math.Pow(float64(batch)/float64(ref), l.Power)
}

func (l LRScaling) String() string {
	switch l.Rule {
	case "list":
		return fmt.Sprintf("list %v", l.List)
	case "power":
		return fmt.Sprintf("power %g", l.Power)
	}
	return l.Rule
}

// Load reads a sweep config, validates it and expands it into a Plan.
func Load(path string) (*Plan, error) { return LoadWith(path, branch.Overrides{}) }

// LoadWith is Load with overrides applied to the decoded config before it is checked: a run
// directory, a parent checkpoint, and a scale. Scale multiplies every token quantity of the
// sweep (budget, batch sizes, reference batch, warmup, decay, eval and checkpoint intervals) by
// a power of two, so a study can be shrunk for a quick look or grown for a bigger machine with
// its arithmetic (steps per branch, eval marks, divisibility) intact.
func LoadWith(path string, o branch.Overrides) (*Plan, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := DefaultConfig()
	md, err := branch.DecodeStrictMeta(path, string(raw), &c, branch.KindSweep)
	if err != nil {
		return nil, err
	}
	o.Apply(&c.Common)
	if o.Scale != 0 && o.Scale != 1 {
		if err := c.scale(o.Scale); err != nil {
			return nil, branch.ConfigErrorf("%s: %v", path, err)
		}
	}
	return expand(path, raw, &c, given{
		lr:        md.IsDefined("optimizer", "lr"),
		reference: md.IsDefined("branches", "reference_batch"),
		evalEvery: md.IsDefined("eval", "every"),
	})
}

// given records which keys with a derived default the config set, since a key set to its zero
// value and an absent key decode alike.
type given struct{ lr, reference, evalEvery bool }

// minEvalMarks is how many eval marks the default eval.every gives every branch at least: enough
// points on each loss curve for the fits.
const minEvalMarks = 16

// defaultEvalEvery is the largest interval that is a multiple of every batch of the ladder and
// splits the budget into at least minEvalMarks equal parts; the least common multiple of the
// ladder (the largest batch of a power-of-two ladder) when none does.
func defaultEvalEvery(budget branch.Tokens, ladder []branch.Tokens) branch.Tokens {
	step := ladder[0]
	for _, b := range ladder[1:] {
		step = lcm(step, b)
	}
	for k := budget / step / minEvalMarks; k >= 1; k-- {
		if e := k * step; budget%e == 0 {
			return e
		}
	}
	return step
}

func lcm(a, b branch.Tokens) branch.Tokens {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}

// parentState reads the parent checkpoint's trainer.json without checking the files it lists:
// planning needs only the batch and LR it records, and `cbs train` checks the checkpoint when
// it loads it. It returns nil when there is no trainer.json (a Hugging Face checkpoint).
func parentState(dir string) (*model.TrainerState, error) {
	b, err := os.ReadFile(filepath.Join(dir, model.TrainerFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s model.TrainerState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func (c *Config) scale(s float64) error {
	if e := math.Log2(s); !(s > 0) || e != math.Trunc(e) {
		return fmt.Errorf("scale = %g, want a power of two (0.25, 0.5, 1, 2, ...)", s)
	}
	mul := func(t *branch.Tokens) { *t = branch.Tokens(math.Round(float64(*t) * s)) }
	b := &c.Branches
	mul(&b.Budget)
	mul(&b.ReferenceBatch)
	mul(&b.CheckpointEvery)
	for i := range b.BatchSizes {
		mul(&b.BatchSizes[i])
	}
	mul(&c.Schedule.Warmup)
	mul(&c.Schedule.Decay)
	mul(&c.Eval.Every)
	mul(&c.Eval.WeightAverage)
	if s < 1 && b.MicroBatch > 1 {
		// Keep the smallest batch a whole number of micro-batches.
		b.MicroBatch = max(1, int(math.Round(float64(b.MicroBatch)*s)))
	}
	return nil
}

// Plan is an expanded sweep: every branch's resolved spec and where the run lives.
type Plan struct {
	ConfigPath string
	Raw        []byte
	Config     Config
	Out        string
	Branches   []*branch.Spec
	Reference  branch.Tokens
	// ParentBatch and ParentLR are the batch and base LR of the parent's last step as its
	// trainer.json records them; 0 when it records none.
	ParentBatch branch.Tokens
	ParentLR    float64
}

func expand(path string, raw []byte, c *Config, set given) (*Plan, error) {
	bad := func(format string, args ...any) error {
		return branch.ConfigErrorf("%s: "+format, append([]any{path}, args...)...)
	}
	base, err := c.resolveBase(path)
	if err != nil {
		return nil, err
	}
	parent, err := c.readParent(base, bad)
	if err != nil {
		return nil, err
	}
	if !set.lr && parent.LR > 0 {
		// With the parent's batch as B_ref, the reference branch continues at the parent's LR.
		c.Optimizer.LR = parent.LR
		base.Optim.LR = parent.LR
	}
	if err := c.checkBranches(bad); err != nil {
		return nil, err
	}
	b := c.Branches
	if !set.reference && parent.BatchTokens > 0 {
		// Recorded in the resolved config: the LR rule, and so every branch, depends on it.
		b.ReferenceBatch = branch.Tokens(parent.BatchTokens)
	}
	ref := b.ReferenceBatch
	if ref == 0 {
		ref = b.BatchSizes[0]
	}
	if ref < 0 {
		return nil, bad("branches.reference_batch = %d, want a positive number of tokens", ref)
	}
	if err := c.Analysis.Options(c.Experiment.Seed, float64(ref)).Validate(); err != nil {
		return nil, bad("analysis.%v", err)
	}
	if !set.evalEvery {
		c.Eval.Every = defaultEvalEvery(b.Budget, b.BatchSizes)
		base.EvalEvery = c.Eval.Every
	}
	if b.MicroBatch == 0 {
		b.MicroBatch = int(b.BatchSizes[0]) / base.SeqLen()
		if b.MicroBatch == 0 {
			return nil, bad("branches.batch_sizes[0] = %d tokens is less than one sequence of data.seq_len = %d", b.BatchSizes[0], base.SeqLen())
		}
	}
	out := c.OutDir(path)
	p := &Plan{ConfigPath: path, Raw: raw, Config: *c, Out: out, Reference: ref,
		ParentBatch: branch.Tokens(parent.BatchTokens), ParentLR: parent.LR}
	p.Config.Branches = b
	if p.Branches, err = c.branchSpecs(base, b, ref, bad); err != nil {
		return nil, err
	}
	sort.SliceStable(p.Branches, func(i, j int) bool { return p.Branches[i].BatchTokens < p.Branches[j].BatchTokens })
	if c.Run.Executor == ExecutorLocal {
		if err := p.checkMemory(); err != nil {
			return nil, bad("%v", err)
		}
	}
	return p, nil
}

// resolveBase resolves the executor and the spec every branch starts from.
func (c *Config) resolveBase(path string) (*branch.Spec, error) {
	if err := c.resolveExecutor(path); err != nil {
		return nil, err
	}
	if c.Run.Executor == ExecutorExternal {
		return c.resolveExternal(path)
	}
	return c.Common.Resolve(path)
}

// readParent is the trainer state of base's parent checkpoint, zero where there is no parent
// or its batch or LR is unusable.
func (c *Config) readParent(base *branch.Spec, bad func(string, ...any) error) (model.TrainerState, error) {
	var parent model.TrainerState
	if base.Parent != "" {
		// An external trainer's parent may name a checkpoint that is not a directory of ours.
		if st, err := parentState(base.Parent); err != nil && c.Run.Executor != ExecutorExternal {
			return parent, bad("parent.checkpoint = %q: %s: %v", c.Parent.Checkpoint, model.TrainerFile, err)
		} else if st != nil {
			parent = *st
		}
	}
	if parent.LR < 0 || math.IsNaN(parent.LR) || math.IsInf(parent.LR, 0) || parent.BatchTokens < 0 {
		parent.LR, parent.BatchTokens = 0, 0
	}
	return parent, nil
}

// checkBranches checks the ladder, the budget, the replicates, the micro-batch, the LR scaling
// list and run.parallel.
func (c *Config) checkBranches(bad func(string, ...any) error) error {
	b := c.Branches
	switch {
	case len(b.BatchSizes) == 0:
		return bad("branches.batch_sizes is required: the ladder of global batch sizes, in tokens")
	case b.Budget <= 0:
		return bad("branches.budget = %d, want a positive number of tokens", b.Budget)
	case b.Replicates < 1 || b.Replicates > maxReplicates:
		return bad("branches.replicates = %d, want 1 to %d", b.Replicates, maxReplicates)
	case b.MicroBatch < 0:
		return bad("branches.micro_batch = %d, want a positive number of sequences", b.MicroBatch)
	case c.Run.Parallel < 1:
		return bad("run.parallel = %d, want >= 1", c.Run.Parallel)
	}
	for i, bs := range b.BatchSizes {
		if bs <= 0 {
			return bad("branches.batch_sizes[%d] = %d, want a positive number of tokens", i, bs)
		}
		if i > 0 && bs <= b.BatchSizes[i-1] {
			return bad("branches.batch_sizes must increase: [%d] = %v follows %v", i, bs, b.BatchSizes[i-1])
		}
	}
	if b.LRScaling.Rule == "list" && len(b.LRScaling.List) != len(b.BatchSizes) {
		return bad("branches.lr_scaling lists %d multipliers for %d batch sizes", len(b.LRScaling.List), len(b.BatchSizes))
	}
	for i, v := range b.LRScaling.List {
		if !(v > 0) || math.IsInf(v, 0) {
			return bad("branches.lr_scaling[%d] = %g, want a positive multiplier", i, v)
		}
	}
	return nil
}

// branchSpecs are the specs of every replicate of every batch size in b, from base, each
// validated for the executor; ref is the reference batch of the LR rule.
func (c *Config) branchSpecs(base *branch.Spec, b Branches, ref branch.Tokens, bad func(string, ...any) error) ([]*branch.Spec, error) {
	ckptEvery := b.CheckpointEvery
	if ckptEvery == 0 {
		ckptEvery = c.Eval.Every
	}
	var specs []*branch.Spec
	for i, bs := range b.BatchSizes {
		for r := 0; r < b.Replicates; r++ {
			s := *base
			// A replicate draws its own masks and t (Seed) and reads the tokens after the fork
			// in its own order (Replicate), never the parent's tokens again: data.Seed, the
			// order of the stream the parent read, stays the parent's.
			s.Seed = base.Seed + uint64(r)
			s.Replicate = r
			s.ID = fmt.Sprintf("b%s-r%d", bs, r)
			s.BatchTokens, s.Budget, s.MicroBatch = bs, b.Budget, b.MicroBatch
			// micro_batch is a ceiling: a batch smaller than it is one micro-batch.
			if seqs := int(bs) / base.SeqLen(); seqs > 0 && seqs < s.MicroBatch {
				s.MicroBatch = seqs
			}
			s.LRScale = b.LRScaling.Factor(i, bs, ref)
			s.CheckpointEvery = ckptEvery
			if err := validate(&s, c.Run.Executor); err != nil {
				return nil, bad("branch %s (branches.batch_sizes[%d] = %v): %v", s.ID, i, bs, err)
			}
			specs = append(specs, &s)
		}
	}
	return specs, nil
}

// maxReplicates bounds branches.replicates: past it a plan is no experiment one machine or
// cluster runs, and expanding it would only take memory and time.
const maxReplicates = 1000

// checkMemory refuses a local sweep whose branches, run.parallel at a time, would not fit in the
// machine's memory by TrainingBytes' estimate, with the numbers.
func (p *Plan) checkMemory() error {
	var worst *branch.Spec
	for _, s := range p.Branches {
		if worst == nil || s.MicroBatch > worst.MicroBatch {
			worst = s
		}
	}
	c, err := worst.ModelConfig()
	if err != nil {
		return nil // reported where the model loads, with its own message
	}
	parallel := min(p.Config.Run.Parallel, len(p.Branches))
	need := worst.TrainingBytes(c) * float64(parallel)
	have, source := model.MachineMemory()
	if need > float64(have) {
		return fmt.Errorf("about %s of memory for %d branches at a time (each: %.3g parameters with gradient and moments, and a micro-batch of %d x %d tokens; branch %s), more than the machine's %s (%s): lower run.parallel or branches.micro_batch",
			model.HumanBytes(need), parallel, c.ParamCount(), worst.MicroBatch, worst.SeqLen(), worst.ID, model.HumanBytes(float64(have)), source)
	}
	return nil
}

// ConfigType says what a config accepts for the rule.
func (LRScaling) ConfigType() string { return "string, number or list of numbers" }
