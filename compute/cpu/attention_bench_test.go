package cpu

import (
	"fmt"
	"testing"

	"cbs/compute"
)

// BenchmarkAttention times one forward and backward pass of attention, the kernel a fused
// implementation would replace, at the two shapes of the PyTorch comparison, causal (ar) and
// bidirectional (mdm), at each precision; GFLOP/s count the products a full (non-causal)
// pass makes, 2 in the forward and 5 in the backward (QK^T again, dV, dP, dQ, dK):
//
//	go test ./compute/cpu -run '^$' -bench Attention
func BenchmarkAttention(b *testing.B) {
	shapes := []struct {
		name            string
		B, L, H, KV, hd int
	}{{"default", 16, 256, 4, 4, 64}, {"d512", 8, 512, 8, 8, 64}}
	for _, prec := range []compute.Precision{compute.PrecisionFP32, compute.PrecisionBF16} {
		be := New(2)
		if err := be.SetPrecision(prec); err != nil {
			b.Logf("%v: %v", prec, err)
			continue
		}
		for _, s := range shapes {
			for _, causal := range []bool{true, false} {
				objective := map[bool]string{true: "ar", false: "mdm"}[causal]
				b.Run(fmt.Sprintf("%v/%s/%s", prec, s.name, objective), func(b *testing.B) {
					B, L, H, KV, hd := s.B, s.L, s.H, s.KV, s.hd
					q, k, v := randVec(B*L*H*hd, 1, 1), randVec(B*L*KV*hd, 2, 1), randVec(B*L*KV*hd, 3, 1)
					do := randVec(B*L*H*hd, 4, 1)
					o, lse := make([]float32, len(q)), make([]float32, be.AttentionStateLen(B, H, L))
					dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
					for b.Loop() {
						be.Attention(o, lse, q, k, v, B, L, H, KV, hd, causal)
						be.AttentionBackward(dq, dk, dv, do, lse, q, k, v, B, L, H, KV, hd, causal)
					}
					flops := 7 * 2 * float64(B*H) * float64(L) * float64(L) * float64(hd)
					b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}
