package bench

import (
	"testing"

	"cbs/model"
)

// TestFLOPsMoE: a sparse layer counts its router and the top-k experts a token passes
// through (the active weights), as the PyTorch reference's bench does; a dense layer its MLP.
func TestFLOPsMoE(t *testing.T) {
	c := model.Config{ModelType: "qwen3_moe", HiddenSize: 64, IntermediateSize: 128, NumLayers: 2, NumHeads: 4,
		NumKVHeads: 2, HeadDim: 16, VocabSize: 260, NumExperts: 4, NumExpertsPerTok: 2, MoEIntermediateSize: 32,
		DecoderSparseStep: 1}
	attention := 64*64 + 2*32*64 + 64*64
	for _, tc := range []struct {
		name     string
		mlpOnly  []int
		wantLin  int
		sparseOf int
	}{
		{"all sparse", nil, 2*attention + 2*(4*64+2*3*64*32) + 260*64, 2},
		{"layer 0 dense", []int{0}, 2*attention + 3*64*128 + (4*64 + 2*3*64*32) + 260*64, 1},
	} {
		c := c
		c.MLPOnlyLayers = tc.mlpOnly
		flops, linear := FLOPs(c, 64, 1024)
		if linear != tc.wantLin {
			t.Errorf("%s: n_linear = %d, want %d", tc.name, linear, tc.wantLin)
		}
		if want := 6*float64(tc.wantLin)*1024 + 12*2*64*64*1024; flops != want {
			t.Errorf("%s: flops = %g, want %g", tc.name, flops, want)
		}
	}
}
