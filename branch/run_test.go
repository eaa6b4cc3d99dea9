package branch

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cbs/data"
	"cbs/model"
	"cbs/runfmt"
)

func tinySpec(objective string) *Spec {
	s := &Spec{
		ID: "t", Seed: 1, InitSeed: 1, EvalSeed: 1, Objective: objective, MaskEps: 1e-3,
		Init:     &ModelInit{Hidden: 16, Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 8, FF: 32, InitStd: 0.02, RopeTheta: 10000, RMSNormEps: 1e-6},
		Data:     data.SourceConfig{Source: "synthetic", SeqLen: 16, SyntheticTokens: 1 << 16, EvalTokens: 512},
		Optim:    DefaultOptimizer(),
		Schedule: Schedule{Shape: ShapeConstant},
		Budget:   4096, BatchTokens: 512, MicroBatch: 16, LRScale: 1, EvalEvery: 2048, Threads: 1,
	}
	var err error
	if s.Data, err = s.Data.Resolve(); err != nil {
		panic(err)
	}
	return s
}

// TestConvertAddsMaskToken: an AR checkpoint whose config names no mask token is converted for
// the mdm objective by adding a vocabulary row.
func TestConvertAddsMaskToken(t *testing.T) {
	dir := t.TempDir()
	ar := tinySpec(model.AR)
	if err := Run(context.Background(), ar, Options{Dir: filepath.Join(dir, "ar")}); err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(dir, "ar", CkptDir)
	cfgPath := filepath.Join(ckpt, model.ConfigFile)
	b, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(b), `"mask_token_id": 258`, `"mask_token_id": null`, 1)), 0o644)
	os.Remove(filepath.Join(ckpt, model.TrainerFile)) // the sha256 list no longer matches

	mdm := tinySpec(model.MDM)
	mdm.Init, mdm.Parent, mdm.OptimizerState = nil, ckpt, "keep"
	if err := Run(context.Background(), mdm, Options{Dir: filepath.Join(dir, "mdm")}); err != nil {
		t.Fatal(err)
	}
	c, err := model.LoadConfig(filepath.Join(dir, "mdm", CkptDir, model.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if c.VocabSize != 261 || c.MaskTokenID != 260 || c.Attention != model.Bidirectional {
		t.Errorf("converted config: vocab %d, mask %d, attention %s; want 261, 260, bidirectional", c.VocabSize, c.MaskTokenID, c.Attention)
	}
}

// TestWeightAverage: with eval.weight_average set, eval measures the average of the weights,
// which a run interrupted and resumed continues exactly (it is saved with the moments), and a
// fork starts afresh from its parent's weights.
func TestWeightAverage(t *testing.T) {
	spec := func() *Spec {
		s := tinySpec(model.MDM)
		s.EvalEWA, s.CheckpointEvery, s.EvalEvery = 1024, 1024, 1024
		return s
	}
	ref, cut := t.TempDir(), t.TempDir()
	if err := Run(context.Background(), spec(), Options{Dir: ref}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err := Run(ctx, spec(), Options{Dir: cut, Progress: func(p Progress) {
		if p.Step == 3 {
			cancel()
		}
	}})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: %v", err)
	}
	if err := Run(context.Background(), spec(), Options{Dir: cut}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(ref, runfmt.MetricsFile))
	b, _ := os.ReadFile(filepath.Join(cut, runfmt.MetricsFile))
	if string(a) != string(b) {
		t.Fatal("metrics.jsonl of an interrupted and resumed run differs from an uninterrupted one")
	}
	// The average is not the weights: the eval losses differ from a run without it.
	plain := t.TempDir()
	s := spec()
	s.EvalEWA = 0
	if err := Run(context.Background(), s, Options{Dir: plain}); err != nil {
		t.Fatal(err)
	}
	c, _ := os.ReadFile(filepath.Join(plain, runfmt.MetricsFile))
	if string(a) == string(c) {
		t.Error("eval with a weight average gave the same metrics as without")
	}
	opt, err := model.LoadOptimizer[float32](filepath.Join(ref, CkptDir), mustLoad(t, filepath.Join(ref, CkptDir)), s.Optim.ModelOptim())
	if err != nil || opt == nil || len(opt.EWA) == 0 {
		t.Fatalf("the checkpoint holds no weight average: %v", err)
	}
	// A fork starts its average at the parent's weights, not at the parent's average.
	fork := spec()
	fork.Init, fork.Parent, fork.OptimizerState, fork.Budget = nil, filepath.Join(ref, CkptDir), "keep", 512
	fdir := t.TempDir()
	if err := Run(context.Background(), fork, Options{Dir: fdir}); err != nil {
		t.Fatal(err)
	}
	parent := mustLoad(t, filepath.Join(ref, CkptDir))
	child := mustLoad(t, filepath.Join(fdir, CkptDir))
	fopt, _ := model.LoadOptimizer[float32](filepath.Join(fdir, CkptDir), child, fork.Optim.ModelOptim())
	beta := math.Exp(-512.0 / 1024)
	for i := range parent.Data {
		want := float32(beta*float64(parent.Data[i]) + (1-beta)*float64(child.Data[i]))
		if fopt.EWA[i] != want {
			t.Fatalf("fork's average at %d = %v, want %v (one step from the parent's weights)", i, fopt.EWA[i], want)
		}
	}
}

func mustLoad(t *testing.T, dir string) *model.Params[float32] {
	t.Helper()
	p, err := model.Load[float32](dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSegmentsRecordBackend: every start of a run appends the step it starts from and its
// backend; a resume under another backend than the last says so in the log, and no earlier line
// is rewritten.
func TestSegmentsRecordBackend(t *testing.T) {
	dir := t.TempDir()
	s := tinySpec(model.AR)
	s.CheckpointEvery = 1024
	ctx, cancel := context.WithCancel(context.Background())
	err := Run(ctx, s, Options{Dir: dir, Progress: func(p Progress) {
		if p.Step == 3 {
			cancel()
		}
	}})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: %v", err)
	}
	path := filepath.Join(dir, runfmt.SegmentsFile)
	first, _ := os.ReadFile(path)
	// Pretend the first segment trained under another library.
	other := strings.Replace(string(first), `"backend":"`, `"backend":"elsewhere `, 1)
	if err := os.WriteFile(path, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	if err := Run(context.Background(), s, Options{Dir: dir, Log: &log}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != strings.TrimSpace(other) || !strings.Contains(lines[1], `"from_step":3`) {
		t.Fatalf("segments.jsonl:\n%s", b)
	}
	if !strings.Contains(log.String(), "warning: resuming at step 3 under") {
		t.Errorf("no warning about the backend change:\n%s", log.String())
	}
}

// TestResumeReadsRunningStats: a checkpoint's running statistics (the loss and gradient-noise
// EMAs) are continued on resume, whether its trainer.json was written by this version or holds
// them as a plain object of names, as every trainer.json cbs has written does; without them the
// resumed run's numbers differ, so they are what carries the run on.
func TestResumeReadsRunningStats(t *testing.T) {
	spec := func() *Spec {
		s := tinySpec(model.MDM)
		s.CheckpointEvery = 1024
		return s
	}
	ref := t.TempDir()
	if err := Run(context.Background(), spec(), Options{Dir: ref}); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(ref, runfmt.MetricsFile))
	resumed := func(edit func(trainer map[string]any)) string {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		err := Run(ctx, spec(), Options{Dir: dir, Progress: func(p Progress) {
			if p.Step == 3 {
				cancel()
			}
		}})
		if !errors.Is(err, ErrInterrupted) {
			t.Fatalf("interrupted run: %v", err)
		}
		path := filepath.Join(dir, CkptDir, model.TrainerFile)
		b, _ := os.ReadFile(path)
		var trainer map[string]any
		if err := json.Unmarshal(b, &trainer); err != nil {
			t.Fatal(err)
		}
		edit(trainer)
		b, _ = json.MarshalIndent(trainer, "", "  ")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Run(context.Background(), spec(), Options{Dir: dir}); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(filepath.Join(dir, runfmt.MetricsFile))
		return string(got)
	}
	names := []string{"gns_ema_weight", "gns_grad_sq_ema", "gns_trace_ema", "loss_ema", "loss_ema_min", "loss_ema_weight", "wall_s"}
	asMap := resumed(func(trainer map[string]any) {
		extra, _ := trainer["extra"].(map[string]any)
		var got []string
		for k := range extra {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, names) || extra["loss_ema"] == 0.0 || extra["gns_trace_ema"] == 0.0 {
			t.Errorf("trainer.json extra = %v, want every one of %v set", extra, names)
		}
	})
	if asMap != string(want) {
		t.Error("a run resumed from a trainer.json written as plain objects differs from one never interrupted")
	}
	if resumed(func(trainer map[string]any) { delete(trainer, "extra") }) == string(want) {
		t.Error("a run resumed without its running statistics gave the same metrics: they are not read")
	}
}
