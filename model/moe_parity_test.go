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

// moeParityCase is a Qwen3-MoE shape for the PyTorch reference's init.
type moeParityCase struct {
	name string
	args []string
}

// moeParityCases cover several expert counts and k, renormalised and raw top-k weights, sparse
// step 2, an mlp-only layer, tied and untied heads, with and without the load-balancing loss.
// The 16-expert, top-1 case leaves experts without tokens (checked in TestMoEParityStep).
var moeParityCases = []moeParityCase{
	{"E4-k2-norm-aux-untied", []string{"--experts", "4", "--top-k", "2", "--norm-topk", "--aux-coef", "0.01"}},
	{"E16-k1-raw-step2-tied", []string{"--experts", "16", "--top-k", "1", "--no-norm-topk", "--sparse-step", "2", "--tie"}},
	{"E6-k3-norm-mlponly0-aux-tied", []string{"--experts", "6", "--top-k", "3", "--norm-topk", "--layers", "3",
		"--mlp-only-layers", "0", "--aux-coef", "0.05", "--tie", "--router-std", "0.3"}},
	{"E5-k2-raw-step2-aux-untied", []string{"--experts", "5", "--top-k", "2", "--no-norm-topk", "--layers", "4",
		"--sparse-step", "2", "--aux-coef", "0.02", "--router-std", "0.3"}},
}

// newMoEFixture writes the case's checkpoint with the reference, and tokens and an MDM mask of
// B = 2 sequences of 16 tokens.
func newMoEFixture(t *testing.T, mc moeParityCase) parityFixture {
	dir := t.TempDir()
	f := parityFixture{ckpt: filepath.Join(dir, "init"), B: 2, L: 16}
	args := []string{"init", "--out", f.ckpt, "--seed", "3", "--init-std", "0.1", "--hidden", "32", "--heads", "4",
		"--kv-heads", "2", "--head-dim", "8", "--ff", "48", "--seq", "16", "--moe-ff", "24"}
	torchref.Run(t, append(args, mc.args...)...)
	s := rng.New(5, "moe-parity-tokens", 0)
	f.tok = make([]int32, f.B*f.L)
	for i := range f.tok {
		f.tok[i] = int32(s.Intn(259))
	}
	f.masks, f.probs = make([]bool, f.B*f.L), make([]float64, f.B)
	// Seed 1 masks about half of each sequence (some seeds mask a whole sequence, whose
	// attention then has no gradient through q and k but rounding noise).
	data.MDMBatchMasks(1, "train-mask", 0, 1e-3, f.L, f.masks, f.probs)
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

// refArgs are the reference's data flags for the fixture and objective.
func (f parityFixture) refArgs(cmd, objective string) []string {
	args := []string{cmd, "--checkpoint", f.ckpt, "--tokens", f.tokens, "--objective", objective}
	if objective == MDM {
		args = append(args, "--mask", f.mask, "--p", f.p)
	}
	return args
}

// worstTensorDiff is the largest |got - want| over the layout's tensors in a safetensors file,
// relative to the largest |want| of the tensor (absolute where the tensor is all zero).
func worstTensorDiff[T compute.Float](t *testing.T, p *Params[T], flat []T, path, suffix string) (float64, string) {
	t.Helper()
	want, err := safetensors.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	worst, where := 0.0, ""
	for _, tn := range p.Tensors {
		st, ok := want.Tensor(tn.Name + suffix)
		if !ok {
			t.Fatalf("%s: no tensor %s", path, tn.Name+suffix)
		}
		w, err := st.Float64()
		if err != nil {
			t.Fatal(err)
		}
		var scale float64
		for _, v := range w {
			scale = math.Max(scale, math.Abs(v))
		}
		if scale == 0 {
			scale = 1
		}
		got := flat[tn.Offset : tn.Offset+tn.Size]
		for j := range w {
			if e := math.Abs(float64(got[j])-w[j]) / scale; e > worst || math.IsNaN(e) {
				worst, where = e, fmt.Sprintf("%s[%d]", tn.Name, j)
			}
		}
	}
	return worst, where
}

// TestMoEParityLoss: in float32, the objective loss, the load-balancing loss and the total
// training loss match the reference's eval within 1e-5 relative.
func TestMoEParityLoss(t *testing.T) {
	for _, mc := range moeParityCases {
		f := newMoEFixture(t, mc)
		p, err := Load[float32](f.ckpt)
		if err != nil {
			t.Fatal(err)
		}
		m := New(p, cpu.New(2))
		for _, objective := range []string{AR, MDM} {
			t.Run(mc.name+"/"+objective, func(t *testing.T) {
				ref := torchref.Run(t, f.refArgs("eval", objective)...)
				b := f.batch(t, p.Config, objective)
				got := m.Loss(b, IsCausal(objective))
				aux, _ := m.AuxLoss()
				total := m.ForwardLoss(b, IsCausal(objective))
				want := ref["loss"].(float64)
				checks := []struct {
					what      string
					got, want float64
				}{{"loss", got, want}}
				if ra, ok := ref["aux_loss"].(float64); ok {
					checks = append(checks, struct {
						what      string
						got, want float64
					}{"aux_loss", aux, ra}, struct {
						what      string
						got, want float64
					}{"total_loss", total, ref["total_loss"].(float64)})
				} else if total != got {
					t.Errorf("aux loss off: training loss %v, objective %v", total, got)
				}
				for _, c := range checks {
					e := relErr(c.got, c.want)
					t.Logf("%s %.9g, PyTorch %.9g: relative error %.2g", c.what, c.got, c.want, e)
					if e > 1e-5 {
						t.Errorf("%s %.9g, PyTorch %.9g: relative error %.2g > 1e-5", c.what, c.got, c.want, e)
					}
				}
			})
		}
	}
}

// TestMoEParityGrad: in float64, the gradient of every tensor (routers and experts included)
// matches the reference's within 1e-10 of the tensor's largest entry, and so do the loss and
// the gradient norm (relative).
func TestMoEParityGrad(t *testing.T) {
	for _, mc := range moeParityCases {
		f := newMoEFixture(t, mc)
		p, err := Load[float64](f.ckpt)
		if err != nil {
			t.Fatal(err)
		}
		m := New(p, cpu.Reference[float64]{})
		for _, objective := range []string{AR, MDM} {
			t.Run(mc.name+"/"+objective, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "grad.safetensors")
				ref := torchref.Run(t, append(f.refArgs("grad", objective), "--dtype", "float64", "--save-dtype", "F64", "--out", out)...)
				m.ZeroGrad()
				loss := m.LossAndGrad(f.batch(t, p.Config, objective), IsCausal(objective))
				norm := GradNorm(m)
				if e := relErr(loss, ref["loss"].(float64)); e > 1e-12 {
					t.Errorf("loss %.15g, PyTorch %.15g: relative error %.2g", loss, ref["loss"], e)
				}
				if e := relErr(norm, ref["grad_norm"].(float64)); e > 1e-10 {
					t.Errorf("grad norm %.15g, PyTorch %.15g: relative error %.2g", norm, ref["grad_norm"], e)
				}
				worst, where := worstTensorDiff(t, p, m.Grad, out, "")
				t.Logf("worst gradient difference %.3g of the tensor's scale, at %s", worst, where)
				if worst > 1e-10 {
					t.Errorf("gradients differ from PyTorch by %.3g of the tensor's scale at %s (> 1e-10)", worst, where)
				}
			})
		}
	}
}

// TestMoEParityStep: two AdamW steps (clipping active, weight decay on everything or on the
// matrices but the embedding) give the reference's weights and moments: within 1e-10 of each
// tensor's scale in float64, 1e-4 in float32 (see TestPyTorchParityStep for why). Experts that
// no token reaches are decayed on both sides.
func TestMoEParityStep(t *testing.T) {
	for ci, mc := range moeParityCases {
		f := newMoEFixture(t, mc)
		for _, objective := range []string{AR, MDM} {
			decayAll := objective == MDM
			t.Run(mc.name+"/"+objective+"/float64", func(t *testing.T) {
				moeParityStep[float64](t, f, cpu.Reference[float64]{}, objective, decayAll, "float64", 1e-10)
			})
			if (ci%2 == 0) == (objective == AR) {
				t.Run(mc.name+"/"+objective+"/float32", func(t *testing.T) {
					moeParityStep[float32](t, f, cpu.New(2), objective, decayAll, "float32", 1e-4)
				})
			}
		}
	}
}

func moeParityStep[T float32 | float64](t *testing.T, f parityFixture, be compute.Backend[T], objective string, decayAll bool, dtype string, tol float64) {
	out := filepath.Join(t.TempDir(), "step")
	args := append(f.refArgs("step", objective), "--out", out, "--steps", "2", "--lr", "1e-3", "--clip", "0.5",
		"--weight-decay", "0.1", "--dtype", dtype, "--save-dtype", "F64")
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
	b := f.batch(t, p.Config, objective)
	unused := 0
	for step, rs := range ref["steps"].([]any) {
		m.ZeroGrad()
		loss := m.LossAndGrad(b, IsCausal(objective))
		if step == 0 {
			for _, a := range m.ws.acts {
				if a.moe != nil {
					for _, n := range a.moe.count {
						if n == 0 {
							unused++
						}
					}
				}
			}
		}
		st := opt.Update(m, 1e-3)
		r := rs.(map[string]any)
		if e := relErr(loss, r["loss"].(float64)); e > 1e-5 {
			t.Errorf("step %d: loss %v, PyTorch %v", step+1, loss, r["loss"])
		}
		if e := relErr(st.GradNorm, r["grad_norm"].(float64)); e > 1e-5 {
			t.Errorf("step %d: grad norm %v, PyTorch %v", step+1, st.GradNorm, r["grad_norm"])
		}
	}
	if p.Config.NumExperts == 16 && unused == 0 {
		t.Errorf("every expert was routed a token: the case no longer checks unused experts")
	}
	worst, where := worstTensorDiff(t, p, p.Data, filepath.Join(out, WeightsFile), "")
	t.Logf("%d experts without tokens at step 1; worst weight difference %.3g of the tensor's scale, at %s", unused, worst, where)
	if worst > tol {
		t.Errorf("weights after two steps differ from PyTorch by %.3g of the tensor's scale at %s (> %g)", worst, where, tol)
	}
	opath := filepath.Join(out, OptimizerFile)
	for _, mom := range []struct {
		suffix string
		v      []T
	}{{".exp_avg", opt.M}, {".exp_avg_sq", opt.V}} {
		worst, where := worstTensorDiff(t, p, mom.v, opath, mom.suffix)
		if worst > tol {
			t.Errorf("%s after two steps differs from PyTorch by %.3g of the tensor's scale at %s (> %g)", mom.suffix, worst, where, tol)
		}
	}
}
