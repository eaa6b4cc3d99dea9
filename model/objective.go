package model

import "fmt"

// Objectives.
const (
	AR  = "ar"  // autoregressive: causal attention, predict token i+1 at position i
	MDM = "mdm" // masked diffusion: bidirectional attention, predict masked tokens, 1/p weighted
)

// IsCausal reports whether an objective uses causal attention.
func IsCausal(objective string) bool { return objective == AR }

// Batch is one micro-batch as the model consumes it: what goes in, what each position should
// predict, and the weight of each position in the global loss.
type Batch struct {
	B, L    int
	Inputs  []int32   // [B*L] token ids fed to the network
	Targets []int32   // [B*L] the token each position predicts
	Weights []float64 // [B*L] weight of each position's cross-entropy; 0: not predicted
	// Seqs is the number of sequences of the whole step that Weights normalise over (SetAR's
	// and SetMDM's globalSeqs); 0 means B, the batch alone. A Qwen3-MoE model weighs the
	// micro-batch's router load-balancing loss by B / Seqs.
	Seqs int
}

// NewBatch allocates a batch of B sequences of length L.
func NewBatch(B, L int) *Batch {
	return &Batch{B: B, L: L, Inputs: make([]int32, B*L), Targets: make([]int32, B*L), Weights: make([]float64, B*L)}
}

// SetAR fills b from tokens [B*L] for the AR objective: position i predicts token i+1, and the
// loss is the mean over the (L-1) predicted positions of all globalSeqs sequences of the step.
func (b *Batch) SetAR(tokens []int32, globalSeqs int) {
	copy(b.Inputs, tokens)
	b.Seqs = globalSeqs
	w := 1 / float64(globalSeqs*(b.L-1))
	for s := 0; s < b.B; s++ {
		for i := 0; i < b.L; i++ {
			j := s*b.L + i
			if i == b.L-1 {
				b.Targets[j], b.Weights[j] = 0, 0
				continue
			}
			b.Targets[j], b.Weights[j] = tokens[j+1], w
		}
	}
}

// SetMDM fills b from tokens [B*L], masks [B*L] and the masking probability p [B] of each
// sequence, for the MDM objective: masked positions take maskID as input and predict the
// original token with weight 1/p; the loss divides by globalSeqs x L (an ELBO per token).
func (b *Batch) SetMDM(tokens []int32, masks []bool, p []float64, maskID, globalSeqs int) error {
	if maskID < 0 {
		return fmt.Errorf("mdm objective: the model has no mask token (config.json mask_token_id)")
	}
	b.Seqs = globalSeqs
	norm := float64(globalSeqs * b.L)
	for s := 0; s < b.B; s++ {
		w := 1 / p[s] / norm
		for i := 0; i < b.L; i++ {
			j := s*b.L + i
			b.Targets[j] = tokens[j]
			if masks[j] {
				b.Inputs[j], b.Weights[j] = int32(maskID), w
			} else {
				b.Inputs[j], b.Weights[j] = tokens[j], 0
			}
		}
	}
	return nil
}
