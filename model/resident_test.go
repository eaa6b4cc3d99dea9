package model

import (
	"testing"

	"cbs/compute/cpu"
)

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

func cloneParams(p *Params[float32]) *Params[float32] {
	q := NewParams[float32](p.Config)
	copy(q.Data, p.Data)
	return q
}
