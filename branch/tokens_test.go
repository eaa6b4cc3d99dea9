package branch

import (
	"math"
	"strings"
	"testing"
)

func TestScheduleFactor(t *testing.T) {
	const tol = 1e-12
	for _, tc := range []struct {
		name   string
		s      Schedule
		tokens Tokens
		want   float64
	}{
		{"warmup start", Schedule{Shape: ShapeConstant, Warmup: 1000, Total: 10000}, 250, 0.25},
		{"warmup end", Schedule{Shape: ShapeConstant, Warmup: 1000, Total: 10000}, 1000, 1},
		{"constant", Schedule{Shape: ShapeConstant, Total: 10000}, 9000, 1},
		{"linear mid", Schedule{Shape: ShapeLinear, Warmup: 1000, Total: 11000, MinLRRatio: 0.1}, 6000, 0.55},
		{"linear end", Schedule{Shape: ShapeLinear, Warmup: 1000, Total: 11000, MinLRRatio: 0.1}, 11000, 0.1},
		{"cosine mid", Schedule{Shape: ShapeCosine, Warmup: 1000, Total: 11000, MinLRRatio: 0}, 6000, 0.5},
		{"cosine end", Schedule{Shape: ShapeCosine, Total: 10000, MinLRRatio: 0.1}, 10000, 0.1},
		{"cosine quarter", Schedule{Shape: ShapeCosine, Total: 10000}, 2500, 0.5 * (1 + math.Cos(math.Pi/4))},
		{"wsd stable", Schedule{Shape: ShapeWSD, Warmup: 1000, Decay: 2000, Total: 10000}, 7999, 1},
		{"wsd decay mid", Schedule{Shape: ShapeWSD, Warmup: 1000, Decay: 2000, Total: 10000, MinLRRatio: 0}, 9000, 0.5},
	} {
		if got := tc.s.Factor(tc.tokens); math.Abs(got-tc.want) > tol {
			t.Errorf("%s: Factor(%d) = %v, want %v", tc.name, tc.tokens, got, tc.want)
		}
	}
}

// TestScheduleIsTokenSpace: branches with different batch sizes sample one LR curve.
func TestScheduleIsTokenSpace(t *testing.T) {
	s := Schedule{Shape: ShapeCosine, Warmup: 4096, Total: 65536, MinLRRatio: 0.1}
	small := map[Tokens]float64{}
	for tok := Tokens(1024); tok <= s.Total; tok += 1024 {
		small[tok] = s.Factor(tok)
	}
	for tok := Tokens(4096); tok <= s.Total; tok += 4096 {
		if s.Factor(tok) != small[tok] {
			t.Fatalf("at %d tokens the 4K-batch branch has factor %v, the 1K-batch branch %v", tok, s.Factor(tok), small[tok])
		}
	}
}

func TestSpecValidateNamesKey(t *testing.T) {
	good := func() *Spec {
		s := &Spec{Objective: "mdm", MaskEps: 1e-3, Init: &ModelInit{}, Budget: 8192, BatchTokens: 1024,
			MicroBatch: 4, LRScale: 1, EvalEvery: 2048, Optim: DefaultOptimizer(),
			Schedule: Schedule{Shape: ShapeCosine, Warmup: 1024}}
		s.Data.SeqLen = 64
		return s
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("valid spec rejected: %v", err)
	}
	for _, tc := range []struct {
		key    string
		mutate func(*Spec)
	}{
		{"objective.name", func(s *Spec) { s.Objective = "gpt" }},
		{"budget", func(s *Spec) { s.Budget = 0 }},
		{"budget", func(s *Spec) { s.Budget = -5 }},
		{"budget", func(s *Spec) { s.Budget = 8192 + 1024/2 }},
		{"data.seq_len", func(s *Spec) { s.BatchTokens = 1000 }},
		{"micro_batch", func(s *Spec) { s.BatchTokens = 6 * 64 }},
		{"eval.every", func(s *Spec) { s.EvalEvery = 1536 }},
		{"schedule.warmup", func(s *Spec) { s.Schedule.Warmup = 9000 }},
		{"schedule.shape", func(s *Spec) { s.Schedule.Shape = "exp" }},
		{"optimizer.lr", func(s *Spec) { s.Optim.LR = -1 }},
		{"optimizer.groups.attn", func(s *Spec) { s.Optim.Groups = map[string]float64{"attn": 2} }},
		{"objective.mask_eps", func(s *Spec) { s.MaskEps = 0 }},
		{"parent", func(s *Spec) { s.Init = nil }},
	} {
		s := good()
		tc.mutate(s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: err = %v, want it to name %s", tc.key, err, tc.key)
		}
	}
}
