package model

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"cbs/compute"
	"cbs/compute/cpu"
)

// bf16Tolerance bounds bf16 products against fp32 for whole passes (relative errors; the
// per-operation table is in compute/cpu/bf16_test.go). Rounding each product operand to bf16
// perturbs it by up to 2^-8 relative; through the layers that becomes a relative error of about
// 1e-5 in the loss and 1e-2 in the gradients from the training's initialisation (std 0.02),
// 3e-4 and 5e-2 from weights of std 0.3, whose sharper attention and softmax amplify it.
var bf16Tolerance = map[string]float64{
	"loss":            1e-3, // |loss_bf16 - loss_fp32| / loss_fp32, one pass, init std 0.02
	"grad":            3e-2, // ||g_bf16 - g_fp32|| / ||g_fp32||, per parameter tensor, std 0.02
	"loss_sharp":      1e-2, // the same from weights of std 0.3 and norm weights 1 +- 0.3
	"grad_sharp":      1e-1,
	"train_loss_step": 1e-2, // per step, over a short training run from the same start
}

// bf16CPU returns a fast backend at bf16 products, or skips where oneDNN is absent.
func bf16CPU(t testing.TB, threads int) *cpu.CPU {
	be := cpu.New(threads)
	if err := be.SetPrecision(compute.PrecisionBF16); err != nil {
		t.Skip(err)
	}
	return be
}

func bf16TestConfig(objective string, tied bool) Config {
	c := tinyConfig(4, 2, tied)
	c.HiddenSize, c.IntermediateSize, c.HeadDim = 64, 96, 16
	c.VocabSize, c.MaskTokenID, c.MaxPositionEmbeddings = 300, 299, 256
	if objective == MDM {
		c.Attention = Bidirectional
	}
	return c
}

func relL2(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// TestBF16PassMatchesFP32: one forward and backward pass at bf16 against fp32 from the same
// weights and batch, within the table's tolerances.
func TestBF16PassMatchesFP32(t *testing.T) {
	for _, objective := range []string{AR, MDM} {
		for _, tied := range []bool{false, true} {
			for _, sharp := range []bool{false, true} {
				c := bf16TestConfig(objective, tied)
				p, lossTol, gradTol := NewParams[float32](c), bf16Tolerance["loss"], bf16Tolerance["grad"]
				p.Init(5, 0.02)
				if sharp {
					p, lossTol, gradTol = toFloat32(perturbedParams(c, 5)), bf16Tolerance["loss_sharp"], bf16Tolerance["grad_sharp"]
				}
				name := fmt.Sprintf("%s tied=%v sharp=%v", objective, tied, sharp)
				b := randomBatch(c, objective, 4, 96, 6)
				ref := New(cloneParams(p), cpu.New(2))
				ref.ZeroGrad()
				want := ref.LossAndGrad(b, IsCausal(objective))
				m := New(cloneParams(p), bf16CPU(t, 2))
				m.ZeroGrad()
				got := m.LossAndGrad(b, IsCausal(objective))
				e := math.Abs(got-want) / math.Abs(want)
				if e > lossTol || e == 0 {
					t.Errorf("%s: loss %v, fp32 %v: relative error %.3g, want (0, %g]", name, got, want, e, lossTol)
				}
				worst, where := 0.0, ""
				for _, tn := range p.Tensors {
					g := m.Grad[tn.Offset : tn.Offset+tn.Size]
					if e := relL2(g, ref.Grad[tn.Offset:tn.Offset+tn.Size]); e > worst {
						worst, where = e, tn.Name
					}
				}
				t.Logf("%s: loss relative error %.2e; worst gradient relative error %.2e (%s)", name, e, worst, where)
				if worst > gradTol {
					t.Errorf("%s: gradient of %s: relative error %.3g > %g", name, where, worst, gradTol)
				}
			}
		}
	}
}

// trainRun trains for steps optimizer steps of accum micro-batches and returns the losses, the
// last gradient and the weights.
func trainRun(m *Model[float32], c Config, objective string, steps, accum int) (losses []float64, grad, weights []float32) {
	opt := NewAdamW[float32](DefaultOptim(), len(m.Params.Data))
	for step := range steps {
		m.ZeroGrad()
		var loss float64
		for a := range accum {
			// A few batches cycled, so that the loss falls visibly in a short run.
			b := randomBatch(c, objective, 4, 64, uint64(100+(step*accum+a)%3))
			loss += m.LossAndGrad(b, IsCausal(objective)) / float64(accum)
		}
		opt.Update(m, 3e-3)
		losses = append(losses, loss)
	}
	return losses, slices.Clone(m.Grad), slices.Clone(m.Params.Data)
}

// TestBF16TrainingFollowsFP32: a short training run (fp32 master weights and AdamW, bf16
// products) stays within 1% of the fp32 run's loss at every step, and learns.
func TestBF16TrainingFollowsFP32(t *testing.T) {
	for _, objective := range []string{AR, MDM} {
		c := bf16TestConfig(objective, true)
		p := toFloat32(perturbedParams(c, 7))
		be := bf16CPU(t, 2)
		want, _, _ := trainRun(New(cloneParams(p), cpu.New(2)), c, objective, 12, 2)
		got, _, _ := trainRun(New(cloneParams(p), be), c, objective, 12, 2)
		worst := 0.0
		for i := range want {
			worst = math.Max(worst, math.Abs(got[i]-want[i])/want[i])
		}
		t.Logf("%s: loss %.4f -> %.4f (fp32 %.4f -> %.4f), worst step relative difference %.2e",
			objective, got[0], got[len(got)-1], want[0], want[len(want)-1], worst)
		if worst > bf16Tolerance["train_loss_step"] {
			t.Errorf("%s: bf16 loss differs from fp32 by %.3g relative at some step, want <= %g", objective, worst, bf16Tolerance["train_loss_step"])
		}
		if got[len(got)-1] > 0.9*got[0] {
			t.Errorf("%s: bf16 run did not learn: %v", objective, got)
		}
	}
}

// TestBF16Deterministic: the same bf16 run twice, and at 1 and 3 threads, gives the same bits.
func TestBF16Deterministic(t *testing.T) {
	c := bf16TestConfig(AR, false)
	p := toFloat32(perturbedParams(c, 8))
	l1, g1, w1 := trainRun(New(cloneParams(p), bf16CPU(t, 2)), c, AR, 3, 2)
	for _, threads := range []int{2, 1, 3} {
		l2, g2, w2 := trainRun(New(cloneParams(p), bf16CPU(t, threads)), c, AR, 3, 2)
		if !slices.Equal(l1, l2) || !slices.Equal(g1, g2) || !slices.Equal(w1, w2) {
			t.Fatalf("threads=%d: a second bf16 run differs from the first", threads)
		}
	}
}

// plainBackend hides every method but compute.Backend's: a model on it cannot keep bf16
// copies, and its products go through the backend's Gemm, which rounds both operands of every
// call.
type plainBackend struct{ compute.Backend[float32] }

// countingBackend counts ToBF16 calls per source slice start.
type countingBackend struct {
	*cpu.CPU
	rounds map[*float32]int
}

func (c *countingBackend) ToBF16(dst []uint16, src []float32) {
	if len(src) > 0 {
		c.rounds[&src[0]]++
	}
	c.CPU.ToBF16(dst, src)
}

// TestBF16CopiesMatchGemm: the model's bf16 copies (weights rounded once per step, activations
// once per pass) give bit for bit what the backend's own bf16 Gemm gives, which rounds both
// operands of every product; weights are rounded once per optimizer step, and in-place changes
// to them (an averaged model swapped in for evaluation) reach the next Loss.
func TestBF16CopiesMatchGemm(t *testing.T) {
	c := bf16TestConfig(MDM, true)
	p := toFloat32(perturbedParams(c, 9))
	cb := &countingBackend{CPU: bf16CPU(t, 2), rounds: map[*float32]int{}}
	m := New(cloneParams(p), cb)
	plain := New(cloneParams(p), plainBackend{bf16CPU(t, 2)})
	l1, g1, w1 := trainRun(m, c, MDM, 3, 3)
	l2, g2, w2 := trainRun(plain, c, MDM, 3, 3)
	if !slices.Equal(l1, l2) || !slices.Equal(g1, g2) || !slices.Equal(w1, w2) {
		t.Fatal("the model's bf16 copies give other results than the backend's bf16 Gemm")
	}
	for i, tn := range m.Params.Tensors {
		n := cb.rounds[&m.Params.Data[tn.Offset]]
		want := 3 // once per step, not per micro-batch (3) or per product (2 per micro-batch)
		if !tn.Is2D() || i == 0 && !c.TieWordEmbeddings {
			want = 0
		}
		if n != want {
			t.Errorf("%s rounded %d times in 3 steps, want %d", tn.Name, n, want)
		}
	}

	// Swap other weights in place, as an evaluation of averaged weights does, without telling
	// the model: Loss must see them.
	b := randomBatch(c, MDM, 2, 64, 50)
	m.ZeroGrad()
	m.LossAndGrad(b, false)
	for i := range m.Params.Data {
		m.Params.Data[i] *= 0.9
		plain.Params.Data[i] *= 0.9
	}
	if got, want := m.Loss(b, false), plain.Loss(b, false); got != want {
		t.Errorf("Loss after an in-place change: %v, want %v", got, want)
	}
	// And a new step after in-place changes rounds the new weights.
	for i := range m.Params.Data {
		m.Params.Data[i] *= 1.1
		plain.Params.Data[i] *= 1.1
	}
	m.ZeroGrad()
	plain.ZeroGrad()
	if got, want := m.LossAndGrad(b, false), plain.LossAndGrad(b, false); got != want || !slices.Equal(m.Grad, plain.Grad) {
		t.Errorf("step after an in-place change: loss %v, want %v", got, want)
	}
}
