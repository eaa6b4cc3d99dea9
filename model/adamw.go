package model

import (
	"fmt"
	"math"
	"slices"

	"cbs/compute"
)

// OptimConfig holds AdamW's hyperparameters. LR is the base LR; each group's LR is LR times its
// multiplier (absent groups: 1). Weight decay applies to matrices only unless DecayNorms is set;
// DecayEmbedding controls the embedding matrix (and a tied head) separately.
type OptimConfig struct {
	LR             float64
	Beta1, Beta2   float64
	Eps            float64
	WeightDecay    float64
	Clip           float64 // max global gradient norm; 0: no clipping
	LRMult         map[string]float64
	DecayNorms     bool
	DecayEmbedding bool
}

// DefaultOptim returns the defaults: betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on matrices,
// clipping at 1.
func DefaultOptim() OptimConfig {
	return OptimConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Clip: 1, DecayEmbedding: true}
}

// Validate names the first bad field.
func (c OptimConfig) Validate() error {
	switch {
	case !(c.LR >= 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("optimizer.lr = %g, want a finite value >= 0", c.LR)
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return fmt.Errorf("optimizer.betas[0] = %g, want 0 <= beta1 < 1", c.Beta1)
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return fmt.Errorf("optimizer.betas[1] = %g, want 0 <= beta2 < 1", c.Beta2)
	case !(c.Eps > 0):
		return fmt.Errorf("optimizer.eps = %g, want > 0", c.Eps)
	case !(c.WeightDecay >= 0):
		return fmt.Errorf("optimizer.weight_decay = %g, want >= 0", c.WeightDecay)
	case !(c.Clip >= 0):
		return fmt.Errorf("optimizer.clip = %g, want >= 0 (0 disables clipping)", c.Clip)
	}
	for g, v := range c.LRMult {
		if !KnownGroup(g) {
			return fmt.Errorf("optimizer.groups.%s: unknown group, want one of %v", g, append(slices.Clone(Groups), MoEGroups...))
		}
		if !(v >= 0) || math.IsInf(v, 0) {
			return fmt.Errorf("optimizer.groups.%s = %g, want a finite multiplier >= 0", g, v)
		}
	}
	return nil
}

// Mult returns a group's LR multiplier.
func (c OptimConfig) Mult(group string) float64 {
	if v, ok := c.LRMult[group]; ok {
		return v
	}
	return 1
}

func (c OptimConfig) decays(t Tensor) bool {
	switch {
	case !t.Is2D():
		return c.DecayNorms
	case t.Group == GroupEmbedding:
		return c.DecayEmbedding
	}
	return true
}

// AdamW is the optimizer state: the moments, in the parameters' layout, and the step count.
type AdamW[T compute.Float] struct {
	Cfg  OptimConfig
	M, V []T
	Step int
	// EWA, when not nil, is an exponential moving average of the parameters (same layout), kept
	// by the trainer and saved with the moments so a resumed run continues it exactly.
	EWA []T
}

// NewAdamW returns zeroed state for n parameters.
func NewAdamW[T compute.Float](cfg OptimConfig, n int) *AdamW[T] {
	return &AdamW[T]{Cfg: cfg, M: make([]T, n), V: make([]T, n)}
}

// StepStats describes one update.
type StepStats struct {
	GradNorm float64 // global norm before clipping
	ClipCoef float64 // factor the gradient was multiplied by
}

// GradNorm is the global L2 norm of m.Grad, summed tensor by tensor in layout order.
func GradNorm[T compute.Float](m *Model[T]) float64 {
	var ss float64
	if each, ok := m.be.(squareSums[T]); ok {
		if len(m.gradViews) != len(m.Params.Tensors) {
			m.gradViews, m.gradSums = make([][]T, len(m.Params.Tensors)), make([]float64, len(m.Params.Tensors))
			for i := range m.Params.Tensors {
				m.gradViews[i] = m.view(m.Grad, i)
			}
		}
		each.SumSquaresEach(m.gradSums, m.gradViews)
		for _, s := range m.gradSums {
			ss += s
		}
		return math.Sqrt(ss)
	}
	for i := range m.Params.Tensors {
		ss += m.be.SumSquares(m.view(m.Grad, i))
	}
	return math.Sqrt(ss)
}

// squareSums is what a backend offers when it can sum the squares of many buffers waiting for
// the device once (compute/cuda's Backend): on a GPU a wait per tensor is ~135 host syncs a step
// at 12 layers. out[i] must equal SumSquares(xs[i]) bit for bit, so the norm is the same either
// way.
type squareSums[T compute.Float] interface {
	SumSquaresEach(out []float64, xs [][]T)
}

// Update clips m.Grad to the global norm and applies one AdamW step with base LR lr (the
// schedule's value; group multipliers apply on top). Clipping follows torch's clip_grad_norm_:
// coef = min(1, clip / (norm + 1e-6)).
func (o *AdamW[T]) Update(m *Model[T], lr float64) StepStats {
	norm := GradNorm(m)
	coef := 1.0
	if o.Cfg.Clip > 0 {
		coef = math.Min(1, o.Cfg.Clip/(norm+1e-6))
		if coef < 1 {
			m.be.Scale(m.Grad, T(coef))
		}
	}
	o.Step++
	for i, t := range m.Params.Tensors {
		p := compute.AdamParams{
			LR: lr * o.Cfg.Mult(t.Group), Beta1: o.Cfg.Beta1, Beta2: o.Cfg.Beta2, Eps: o.Cfg.Eps, Step: o.Step,
		}
		if o.Cfg.decays(t) {
			p.WeightDecay = o.Cfg.WeightDecay
		}
		w := m.view(m.Params.Data, i)
		m.be.AdamW(w, m.view(m.Grad, i), m.view(o.M, i), m.view(o.V, i), p)
	}
	m.WeightsChanged()
	return StepStats{GradNorm: norm, ClipCoef: coef}
}
