package model

import (
	"testing"

	"cbs/compute/cpu"
)

// batchingCPU is a CPU backend that also sums many buffers at once, as the GPU backend does,
// counting how GradNorm reaches it.
type batchingCPU struct {
	*cpu.CPU
	single, batched int
}

func (b *batchingCPU) SumSquares(x []float32) float64 { b.single++; return b.CPU.SumSquares(x) }

func (b *batchingCPU) SumSquaresEach(out []float64, xs [][]float32) {
	b.batched++
	for i, x := range xs {
		out[i] = b.CPU.SumSquares(x)
	}
}

// TestResidentMatchesModel: on a CPU backend with host memory, Resident's loss, gradient and
// AdamW steps are bit-identical to Model's, so the forward pass it duplicates has not drifted.
func TestResidentMatchesModel(t *testing.T) {
	for _, objective := range []string{AR, MDM} {
		for _, tied := range []bool{false, true} {
			c := tinyConfig(4, 2, tied)
			p := toFloat32(perturbedParams(c, 5))
			causal := IsCausal(objective)
			be := cpu.New(1)
			ref := New(cloneParams(p), be)
			res, err := NewResident(cloneParams(p), be, HostMemory[float32]{})
			if err != nil {
				t.Fatal(err)
			}
			cfg := DefaultOptim()
			refOpt := NewAdamW[float32](cfg, len(p.Data))
			resOpt, err := res.NewAdamW(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			for step := 0; step < 3; step++ {
				// The second batch shape makes Resident reallocate its workspace.
				b := randomBatch(c, objective, 2+step%2, 9+step, uint64(step))
				ref.ZeroGrad()
				res.ZeroGrad()
				l1 := ref.LossAndGrad(b, causal)
				l2 := res.LossAndGrad(b, causal)
				if l1 != l2 {
					t.Fatalf("%s tied=%v step %d: loss %v, Model %v", objective, tied, step, l2, l1)
				}
				if e1, e2 := ref.Loss(b, causal), res.Loss(b, causal); e1 != e2 {
					t.Fatalf("%s tied=%v step %d: eval loss %v, Model %v", objective, tied, step, e2, e1)
				}
				g := make([]float32, len(p.Data))
				res.DownloadGrad(g)
				for j := range g {
					if g[j] != ref.Grad[j] {
						t.Fatalf("%s tied=%v step %d: gradient %d (%s) %v, Model %v", objective, tied, step, j, tensorOf(p, j), g[j], ref.Grad[j])
					}
				}
				s1, s2 := refOpt.Update(ref, 1e-2), resOpt.Update(res.M, 1e-2)
				if s1 != s2 {
					t.Fatalf("step stats %+v, Model %+v", s2, s1)
				}
			}
			res.SyncToHost()
			for j, v := range res.Host.Data {
				if v != ref.Params.Data[j] {
					t.Fatalf("%s tied=%v: parameter %d after 3 steps %v, Model %v", objective, tied, j, v, ref.Params.Data[j])
				}
			}
			host := NewAdamW[float32](cfg, len(p.Data))
			res.DownloadAdamW(host, resOpt)
			if host.Step != 3 || host.M[7] != refOpt.M[7] || host.V[7] != refOpt.V[7] {
				t.Fatalf("downloaded optimizer state differs: step %d", host.Step)
			}
			res.Free()
		}
	}
}

// TestResidentGradNormBatched: with a backend that sums many buffers at once, GradNorm and
// AdamW.Update make one such call each instead of one SumSquares per tensor, and the results
// stay bit-identical to Model's.
func TestResidentGradNormBatched(t *testing.T) {
	c := tinyConfig(4, 2, false)
	p := toFloat32(perturbedParams(c, 6))
	ref := New(cloneParams(p), cpu.New(1))
	be := &batchingCPU{CPU: cpu.New(1)}
	res, err := NewResident(cloneParams(p), be, HostMemory[float32]{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultOptim()
	cfg.Clip = 1e-3 // so that Update scales the gradient
	refOpt := NewAdamW[float32](cfg, len(p.Data))
	resOpt, err := res.NewAdamW(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for step := 0; step < 3; step++ {
		b := randomBatch(c, AR, 2, 8, uint64(step))
		ref.ZeroGrad()
		res.ZeroGrad()
		ref.LossAndGrad(b, true)
		res.LossAndGrad(b, true)
		be.single, be.batched = 0, 0
		if n1, n2 := GradNorm(ref), GradNorm(res.M); n1 != n2 {
			t.Fatalf("step %d: GradNorm %v, Model %v", step, n2, n1)
		}
		if s1, s2 := refOpt.Update(ref, 1e-2), resOpt.Update(res.M, 1e-2); s1 != s2 {
			t.Fatalf("step %d: step stats %+v, Model %+v", step, s2, s1)
		}
		if be.single != 0 || be.batched != 2 {
			t.Fatalf("step %d: %d SumSquares and %d batched calls, want 0 and 2 (GradNorm, Update)", step, be.single, be.batched)
		}
	}
	res.SyncToHost()
	for j, v := range res.Host.Data {
		if v != ref.Params.Data[j] {
			t.Fatalf("parameter %d after 3 steps %v, Model %v", j, v, ref.Params.Data[j])
		}
	}

	res.Free()
	if resOpt.M != nil || resOpt.V != nil {
		t.Fatal("Free left the optimizer's moments")
	}
}

// TestResidentAdamWMismatch: moments of the wrong length are refused before anything is
// allocated (a device allocation there would be left to the backend's Close).
func TestResidentAdamWMismatch(t *testing.T) {
	p := toFloat32(perturbedParams(tinyConfig(4, 2, false), 7))
	mem := &countingMemory{}
	res, err := NewResident(cloneParams(p), cpu.New(1), mem)
	if err != nil {
		t.Fatal(err)
	}
	before := mem.live
	if _, err := res.NewAdamW(DefaultOptim(), NewAdamW[float32](DefaultOptim(), len(p.Data)-1)); err == nil {
		t.Fatal("mismatched moments accepted")
	}
	if mem.live != before {
		t.Fatalf("%d buffers live after the refusal, %d before", mem.live, before)
	}
	if _, err := res.NewAdamW(DefaultOptim(), nil); err != nil {
		t.Fatal(err)
	}
	res.Free()
	if mem.live != 0 {
		t.Fatalf("%d buffers live after Free", mem.live)
	}
}

// countingMemory is HostMemory counting the buffers allocated and not freed.
type countingMemory struct {
	HostMemory[float32]
	live int
}

func (c *countingMemory) Alloc(n int) ([]float32, error) { c.live++; return make([]float32, n), nil }
func (c *countingMemory) Free(x []float32) {
	if len(x) > 0 {
		c.live--
	}
}

func cloneParams(p *Params[float32]) *Params[float32] {
	q := NewParams[float32](p.Config)
	copy(q.Data, p.Data)
	return q
}
