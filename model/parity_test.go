package model

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"cbs/compute"
	"cbs/compute/cpu"
	"cbs/data"
	"cbs/internal/rng"
	"cbs/internal/safetensors"
	"cbs/internal/torchref"
)

// parityFixture writes a checkpoint with the PyTorch reference, tokens, and an MDM mask drawn by
// cbs's own mask function, and returns their paths.
type parityFixture struct {
	ckpt, tokens, mask, p string
	B, L                  int
	tok                   []int32
	masks                 []bool
	probs                 []float64
}

func newParityFixture(t *testing.T, tie bool) parityFixture {
	dir := t.TempDir()
	f := parityFixture{ckpt: filepath.Join(dir, "init"), B: 4, L: 64}
	args := []string{"init", "--out", f.ckpt, "--seed", "3", "--init-std", "0.1"}
	if tie {
		args = append(args, "--tie")
	}
	torchref.Run(t, args...)
	s := rng.New(5, "parity-tokens", 0)
	f.tok = make([]int32, f.B*f.L)
	for i := range f.tok {
		f.tok[i] = int32(s.Intn(259))
	}
	f.masks, f.probs = make([]bool, f.B*f.L), make([]float64, f.B)
	data.MDMBatchMasks(7, "train-mask", 0, 1e-3, f.L, f.masks, f.probs)
	f.tokens, f.mask, f.p = filepath.Join(dir, "tokens.npy"), filepath.Join(dir, "mask.npy"), filepath.Join(dir, "p.npy")
	for _, w := range []struct {
		path string
		a    *data.Array
	}{{f.tokens, data.Int32Array(f.tok, f.B, f.L)}, {f.mask, data.BoolArray(f.masks, f.B, f.L)}, {f.p, data.Float64Array(f.probs, f.B)}} {
		if err := data.WriteNPYFile(w.path, w.a); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f parityFixture) batch(t *testing.T, c Config, objective string) *Batch {
	b := NewBatch(f.B, f.L)
	if objective == AR {
		b.SetAR(f.tok, f.B)
	} else if err := b.SetMDM(f.tok, f.masks, f.probs, c.MaskTokenID, f.B); err != nil {
		t.Fatal(err)
	}
	return b
}

func relErr(a, b float64) float64 { return math.Abs(a-b) / math.Max(math.Abs(b), 1e-30) }

// TestPyTorchParityLoss: the loss of a checkpoint written by the reference matches its eval in
// float32 within 1e-5 relative, both objectives, tied and untied.
func TestPyTorchParityLoss(t *testing.T) {
	for _, tie := range []bool{false, true} {
		f := newParityFixture(t, tie)
		p, err := Load[float32](f.ckpt)
		if err != nil {
			t.Fatal(err)
		}
		m := New(p, cpu.New(2))
		for _, objective := range []string{AR, MDM} {
			t.Run(fmt.Sprintf("%s/tie=%v", objective, tie), func(t *testing.T) {
				args := []string{"eval", "--checkpoint", f.ckpt, "--tokens", f.tokens, "--objective", objective}
				if objective == MDM {
					args = append(args, "--mask", f.mask, "--p", f.p)
				}
				want := torchref.Run(t, args...)["loss"].(float64)
				got := m.Loss(f.batch(t, p.Config, objective), IsCausal(objective))
				if e := relErr(got, want); e > 1e-5 {
					t.Errorf("loss %.9g, PyTorch %.9g: relative error %.2g > 1e-5", got, want, e)
				}
				t.Logf("loss %.9g, PyTorch %.9g", got, want)
			})
		}
	}
}

// TestPyTorchParityStep: one AdamW step (clipping active) from the reference's checkpoint gives
// the reference's weights. In float64 the two agree to 1e-10 of each tensor's scale: the update
// is the same arithmetic. In float32 the bound is 1e-4: Adam's first step is lr g/(|g| + eps), so
// for gradients near eps whose float32 value is mostly rounding noise (sums that cancel), the
// update inherits that noise, whichever side computed it.
func TestPyTorchParityStep(t *testing.T) {
	f := newParityFixture(t, false)
	t.Run("float64", func(t *testing.T) { parityStep[float64](t, f, cpu.Reference[float64]{}, "float64", 1e-10) })
	t.Run("float32", func(t *testing.T) { parityStep[float32](t, f, cpu.New(2), "float32", 1e-4) })
}

func parityStep[T float32 | float64](t *testing.T, f parityFixture, be compute.Backend[T], dtype string, tol float64) {
	for _, objective := range []string{AR, MDM} {
		for _, decayAll := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/decay-all=%v", objective, decayAll), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "step")
				args := []string{"step", "--checkpoint", f.ckpt, "--tokens", f.tokens, "--objective", objective,
					"--out", out, "--lr", "1e-3", "--clip", "0.5", "--weight-decay", "0.1",
					"--dtype", dtype, "--save-dtype", "F64"}
				if objective == MDM {
					args = append(args, "--mask", f.mask, "--p", f.p)
				}
				if !decayAll {
					args = append(args, "--no-decay-norms")
				}
				ref := torchref.Run(t, args...)
				p, err := Load[T](f.ckpt)
				if err != nil {
					t.Fatal(err)
				}
				cfg := DefaultOptim()
				cfg.Clip, cfg.WeightDecay, cfg.DecayNorms, cfg.DecayEmbedding = 0.5, 0.1, decayAll, decayAll
				m := New(p, be)
				opt := NewAdamW[T](cfg, len(p.Data))
				m.ZeroGrad()
				loss := m.LossAndGrad(f.batch(t, p.Config, objective), IsCausal(objective))
				st := opt.Update(m, 1e-3)
				if e := relErr(loss, ref["loss"].(float64)); e > 1e-5 {
					t.Errorf("loss %v, PyTorch %v", loss, ref["loss"])
				}
				if e := relErr(st.GradNorm, ref["grad_norm"].(float64)); e > 1e-5 {
					t.Errorf("grad norm %v, PyTorch %v", st.GradNorm, ref["grad_norm"])
				}
				want, err := safetensors.Read(filepath.Join(out, WeightsFile))
				if err != nil {
					t.Fatal(err)
				}
				worst, worstName := 0.0, ""
				for i, tn := range p.Tensors {
					st, _ := want.Tensor(tn.Name)
					w, err := st.Float64()
					if err != nil {
						t.Fatal(err)
					}
					var scale float64
					for _, v := range w {
						scale = math.Max(scale, math.Abs(float64(v)))
					}
					for j, v := range p.View(i) {
						if e := math.Abs(float64(v)-float64(w[j])) / scale; e > worst {
							worst, worstName = e, fmt.Sprintf("%s[%d]", tn.Name, j)
						}
					}
				}
				t.Logf("worst weight difference %.3g of the tensor's scale, at %s", worst, worstName)
				if worst > tol {
					t.Errorf("weights after one step differ from PyTorch by %.3g of the tensor's scale at %s (> %g)", worst, worstName, tol)
				}
			})
		}
	}
}
