package sweep

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cbs/branch"
	"cbs/model"
)

// writeParent writes a tiny checkpoint whose trainer.json records batch and lr (none when 0).
func writeParent(t *testing.T, batch int64, lr float64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "parent")
	c := model.Config{ModelType: "qwen3", HiddenSize: 8, IntermediateSize: 8, NumLayers: 1, NumHeads: 2, NumKVHeads: 1,
		HeadDim: 4, RMSNormEps: 1e-6, RopeTheta: 1e4, VocabSize: 260, MaxPositionEmbeddings: 128, MaskTokenID: 258, Attention: model.Causal}
	st := &model.TrainerState{Objective: model.AR, Step: 10, TokensSeen: 10 * batch, BatchTokens: batch, LR: lr}
	if err := model.Save(dir, model.NewParams[float32](c), nil, st, ""); err != nil {
		t.Fatal(err)
	}
	return dir
}

// loadText writes a sweep config to a temporary file and loads it from parent.
func loadText(t *testing.T, text, parent string) (*Plan, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sweep.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return LoadWith(path, branch.Overrides{Parent: parent})
}

// a2dSweepAR is experiments/a2d-vs-ar/sweep-ar.toml as the running study started it: explicit
// reference_batch, optimizer.lr and eval.every.
const a2dSweepAR = `# Branches of an AR-arm checkpoint that differ only in global batch size: the same tokens after
# the fork, the same frozen eval set and marks, the parent's batch (1Ki) and LR as the reference,
# LR x sqrt(B / 1Ki) on every group, a constant LR (the parent's phase), 256Ki tokens each,
# AdamW moments kept, three seed replicates per batch size (own masks and order of the tokens
# after the fork).
[experiment]
name = "a2d-vs-ar-sweep-ar"
seed = 21
out = "runs/a2d-vs-ar/sweep-ar"

[parent]
checkpoint = "../../runs/a2d-vs-ar/ar-continue/ckpt"
optimizer_state = "keep"

[objective]
name = "ar"

[data]
source = "goroot"
tokenizer = "byte"
seq_len = 128
cache_dir = "../../runs/cache"

[optimizer]
lr = 1e-3

[schedule]
shape = "constant"        # the parent's LR throughout: no re-warm, no anneal
warmup = "0"

[branches]
budget = "256Ki"
batch_sizes = ["1Ki", "2Ki", "4Ki", "8Ki"]   # 8 to 64 sequences of 128 tokens
reference_batch = "1Ki"   # the parent's batch, at the parent's LR
lr_scaling = "sqrt"
micro_batch = 8
replicates = 3
checkpoint_every = "64Ki"

[eval]
every = "16Ki"            # 16 marks per branch
tokens = "16Ki"

[run]
parallel = 2

[analysis]
tau = 0.2
`

// resolvedSweepAR is the resolved config (parent path replaced by PARENT) of a2dSweepAR as
// written before parents recorded their batch and LR. A rerun diffs its resolved config against
// the recorded one key by key and refuses a difference, so the new defaults must not change it.
var resolvedSweepAR = `[experiment]
name = "a2d-vs-ar-sweep-ar"
seed = 21
out = "runs/a2d-vs-ar/sweep-ar"

[parent]
checkpoint = "PARENT"
optimizer_state = "keep"

[objective]
name = "ar"
mask_eps = 0.001

[data]
source = "goroot"
tokenizer = "byte"
glob = ""
path = ""
seq_len = 128
eval_tokens = 0
seed = 0
cache_dir = "../../runs/cache"
synthetic_tokens = 0
synthetic_vocab = 0
synthetic_branching = 0
synthetic_seed = 0

[optimizer]
lr = 0.001
betas = [0.9, 0.95]
eps = 1e-08
weight_decay = 0.1
clip = 1.0
decay_norms = false
decay_embedding = true

[schedule]
shape = "constant"
warmup = "0"
decay = "0"
min_lr_ratio = 0.1

[eval]
every = "16Ki"
tokens = "16Ki"

[run]
executor = "local"
parallel = 2
device = "cpu"
threads = 0

[branches]
budget = "256Ki"
batch_sizes = ["1Ki", "2Ki", "4Ki", "8Ki"]
reference_batch = "1Ki"
lr_scaling = "sqrt"
micro_batch = 8
replicates = 3
checkpoint_every = "64Ki"

[analysis]
metric = "auto"
eps = 0.01
num_targets = 5
tau = 0.2
bootstrap = 1000
level = 0.9
ema_tokens = 0.0
`

// TestResolvedUnchanged: a run directory recorded by an earlier version (relative paths, copies
// of the seed and eval size under [data]) resumes: a parent whose trainer.json records a batch
// and an LR does not change a sweep that sets reference_batch, optimizer.lr and eval.every, and
// the parent named by another path is the same parent.
func TestResolvedUnchanged(t *testing.T) {
	parent := writeParent(t, 512, 3e-4)
	p, err := loadText(t, a2dSweepAR, parent)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Resolved()
	if err != nil {
		t.Fatal(err)
	}
	for _, old := range []string{parent, parent + "/", filepath.Join(parent, "..", filepath.Base(parent))} {
		diff, err := DiffKeys([]byte(strings.ReplaceAll(resolvedSweepAR, "PARENT", old)), res)
		if err != nil {
			t.Fatal(err)
		}
		if len(diff) > 0 {
			t.Errorf("parent %s: keys differ from the recorded config: %v\n%s", old, diff, res)
		}
	}
	other := filepath.Join(t.TempDir(), "other")
	w, err := model.Load[float32](parent)
	if err != nil {
		t.Fatal(err)
	}
	w.Data[0]++
	if err := model.Save(other, w, nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	if diff, _ := DiffKeys([]byte(strings.ReplaceAll(resolvedSweepAR, "PARENT", other)), res); !slices.Equal(diff, []string{"parent.checkpoint"}) {
		t.Errorf("another parent: keys differ %v, want [parent.checkpoint]", diff)
	}
}

// sweepFrom is a sweep from a parent checkpoint; keys is added to its [optimizer], [branches]
// and [eval] tables.
func sweepFrom(optimizer, branches, eval string) string {
	return `
[experiment]
name = "t"
[parent]
checkpoint = "unused"
[data]
source = "goroot"
tokenizer = "byte"
seq_len = 128
[schedule]
shape = "constant"
warmup = "0"
[optimizer]
` + optimizer + `
[branches]
budget = "256Ki"
batch_sizes = ["1Ki", "2Ki", "4Ki", "8Ki"]
` + branches + `
[eval]
tokens = "16Ki"
` + eval + "\n"
}

func TestDefaultsFromParent(t *testing.T) {
	defLR := branch.DefaultOptimizer().LR
	cases := []struct {
		name                      string
		parentBatch               int64
		parentLR                  float64
		optimizer, branches, eval string
		ref, resolvedRef          branch.Tokens
		lr                        float64
		evalEvery                 branch.Tokens
	}{
		{name: "parent batch and lr", parentBatch: 2048, parentLR: 6e-4,
			ref: 2048, resolvedRef: 2048, lr: 6e-4, evalEvery: 16384},
		{name: "parent batch off the ladder", parentBatch: 3072, parentLR: 6e-4,
			ref: 3072, resolvedRef: 3072, lr: 6e-4, evalEvery: 16384},
		{name: "parent records nothing",
			ref: 1024, resolvedRef: 0, lr: defLR, evalEvery: 16384},
		{name: "explicit keys win", parentBatch: 2048, parentLR: 6e-4,
			optimizer: "lr = 2e-3", branches: `reference_batch = "4Ki"`, eval: `every = "32Ki"`,
			ref: 4096, resolvedRef: 4096, lr: 2e-3, evalEvery: 32768},
		{name: "explicit zeros stay", parentBatch: 2048, parentLR: 6e-4,
			branches: `reference_batch = "0"`, eval: `every = "0"`,
			ref: 1024, resolvedRef: 0, lr: 6e-4, evalEvery: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent := writeParent(t, tc.parentBatch, tc.parentLR)
			p, err := loadText(t, sweepFrom(tc.optimizer, tc.branches, tc.eval), parent)
			if err != nil {
				t.Fatal(err)
			}
			c := p.Config
			if p.Reference != tc.ref || c.Branches.ReferenceBatch != tc.resolvedRef {
				t.Errorf("reference %v (resolved %v), want %v (resolved %v)", p.Reference, c.Branches.ReferenceBatch, tc.ref, tc.resolvedRef)
			}
			if c.Optimizer.LR != tc.lr || p.Branches[0].Optim.LR != tc.lr {
				t.Errorf("lr %g (branch %g), want %g", c.Optimizer.LR, p.Branches[0].Optim.LR, tc.lr)
			}
			if c.Eval.Every != tc.evalEvery || p.Branches[0].EvalEvery != tc.evalEvery {
				t.Errorf("eval.every %v (branch %v), want %v", c.Eval.Every, p.Branches[0].EvalEvery, tc.evalEvery)
			}
			for _, s := range p.Branches {
				want := math.Sqrt(float64(s.BatchTokens) / float64(tc.ref))
				if math.Abs(s.LRScale-want) > 1e-12 {
					t.Errorf("%s: lr scale %g, want %g", s.ID, s.LRScale, want)
				}
				if s.BatchTokens == tc.ref && s.Optim.LR*s.LRScale != tc.lr {
					t.Errorf("%s: the reference branch's peak lr is %g, want the base lr %g", s.ID, s.Optim.LR*s.LRScale, tc.lr)
				}
			}
		})
	}
}

func TestDefaultEvalEvery(t *testing.T) {
	const Ki = 1024
	cases := []struct {
		budget branch.Tokens
		ladder []branch.Tokens
		want   branch.Tokens
	}{
		{256 * Ki, []branch.Tokens{1 * Ki, 2 * Ki, 4 * Ki, 8 * Ki}, 16 * Ki},
		{2048 * Ki, []branch.Tokens{512, 32 * Ki}, 128 * Ki},
		{384 * Ki, []branch.Tokens{1 * Ki, 8 * Ki}, 24 * Ki},
		{192 * Ki, []branch.Tokens{1 * Ki, 8 * Ki}, 8 * Ki},          // 24 marks; 16Ki would give 12
		{96 * Ki, []branch.Tokens{1 * Ki, 8 * Ki}, 8 * Ki},           // 12 marks at most: the largest batch
		{40 * Ki, []branch.Tokens{1 * Ki, 8 * Ki, 16 * Ki}, 16 * Ki}, // not a multiple: the largest batch
		{192 * Ki, []branch.Tokens{2 * Ki, 3 * Ki}, 12 * Ki},         // a multiple of every batch
	}
	for _, tc := range cases {
		if got := defaultEvalEvery(tc.budget, tc.ladder); got != tc.want {
			t.Errorf("defaultEvalEvery(%v, %v) = %v, want %v", tc.budget, tc.ladder, got, tc.want)
		}
	}
}

func TestPlanWarnsOnLRJump(t *testing.T) {
	cases := []struct {
		name     string
		parentLR float64
		warn     []string
		quiet    []string
	}{
		{name: "sqrt ladder from the parent's lr", parentLR: 1e-3,
			warn:  []string{"warning: branch b8Ki-r0: peak lr 0.002828", "parent's last lr 0.001"},
			quiet: []string{"branch b4Ki-r0", "branch b2Ki-r0"}},
		{name: "no recorded lr", parentLR: 0, quiet: []string{"warning:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent := writeParent(t, 1024, tc.parentLR)
			p, err := loadText(t, sweepFrom("lr = 1e-3", "", ""), parent)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			p.Print(&b)
			out := b.String()
			for _, s := range tc.warn {
				if !strings.Contains(out, s) {
					t.Errorf("plan lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.quiet {
				if strings.Contains(out, s) {
					t.Errorf("plan has %q:\n%s", s, out)
				}
			}
			// 16 marks of 16Ki eval tokens over 256Ki training tokens: 100%.
			if want := "eval cost: 16 marks per branch; eval tokens 100% of the training tokens"; !strings.Contains(out, want) {
				t.Errorf("plan lacks %q:\n%s", want, out)
			}
			for _, r := range p.Rows() {
				if r.EvalMarks != 16 || r.EvalTokens != 16*16384 || r.EvalFraction != 1 {
					t.Errorf("%s: %d marks, %d eval tokens (%g), want 16, %d (1)", r.ID, r.EvalMarks, r.EvalTokens, r.EvalFraction, 16*16384)
				}
			}
		})
	}
}

func TestAnalysisValidated(t *testing.T) {
	parent := writeParent(t, 0, 0)
	cases := []struct{ value, want string }{
		{"eps = -1", "analysis.eps = -1"},
		{"eps = 5", "analysis.eps = 5"},
		{"eps = 1", "analysis.eps = 1"},
		{"eps_abs = -0.1", "analysis.eps_abs = -0.1"},
		{"level = 7", "analysis.level = 7"},
		{"level = 0", "analysis.level = 0"},
		{"tau = 0", "analysis.tau = 0"},
		{"tau = 11", "analysis.tau = 11"},
		{"bootstrap = -1", "analysis.bootstrap = -1"},
		{"bootstrap = 100001", "analysis.bootstrap = 100001"},
		{"num_targets = 0", "analysis.num_targets = 0"},
		{"num_targets = 51", "analysis.num_targets = 51"},
		{`metric = "x"`, `analysis.metric = "x"`},
		{"targets = [2.0, -1.0]", "analysis.targets[1] = -1"},
		{"ema_tokens = -5", "analysis.ema_tokens = -5"},
	}
	for _, tc := range cases {
		t.Run(tc.value, func(t *testing.T) {
			_, err := loadText(t, sweepFrom("", "", "")+"[analysis]\n"+tc.value+"\n", parent)
			var ce *branch.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a config error", err)
			}
			if !strings.Contains(err.Error(), "sweep.toml: "+tc.want) {
				t.Errorf("err = %v, want it to name %q", err, tc.want)
			}
		})
	}
	for _, ok := range []string{"eps = 0.02", "eps_abs = 0.05", "level = 0.95", "tau = 10", "bootstrap = 0", `metric = "eval_loss"`} {
		if _, err := loadText(t, sweepFrom("", "", "")+"[analysis]\n"+ok+"\n", parent); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// TestPathsResolveAgainstConfig: every path in a config is relative to the config's folder,
// wherever cbs runs from; the same parent and run directory named from another folder, or by an
// absolute path, is the same sweep and resumes.
func TestPathsResolveAgainstConfig(t *testing.T) {
	parent := writeParent(t, 512, 3e-4)
	dir := t.TempDir()
	write := func(rel, parentPath, out string) *Plan {
		t.Helper()
		text := strings.Replace(a2dSweepAR, `out = "runs/a2d-vs-ar/sweep-ar"`, fmt.Sprintf("out = %q", out), 1)
		text = strings.Replace(text, `checkpoint = "../../runs/a2d-vs-ar/ar-continue/ckpt"`, fmt.Sprintf("checkpoint = %q", parentPath), 1)
		path := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	relParent, err := filepath.Rel(filepath.Join(dir, "a"), parent)
	if err != nil {
		t.Fatal(err)
	}
	a := write("a/sweep.toml", relParent, "run")
	if want := filepath.Join(dir, "a", "run"); a.Out != want {
		t.Errorf("out = %s, want %s (relative to the config's folder)", a.Out, want)
	}
	if a.Branches[0].Parent != parent {
		t.Errorf("parent = %s, want %s", a.Branches[0].Parent, parent)
	}
	b := write("b/c/sweep.toml", parent, "../../a/run")
	if b.Out != a.Out {
		t.Errorf("out from another folder = %s, want %s", b.Out, a.Out)
	}
	fa, _ := a.Fingerprint()
	fb, _ := b.Fingerprint()
	if fa != fb {
		t.Errorf("fingerprints differ: %s (relative parent) and %s (absolute)", fa, fb)
	}
	if a.Branches[0].Fingerprint() != b.Branches[0].Fingerprint() {
		t.Error("branch fingerprints differ between a relative and an absolute parent")
	}
	if err := a.prepare(); err != nil {
		t.Fatal(err)
	}
	if err := b.prepare(); err != nil {
		t.Errorf("the same sweep named from another folder: %v", err)
	}
}
