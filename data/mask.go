package data

import (
	"fmt"

	"cbs/internal/rng"
)

// Purposes of the random streams that draw MDM masks. Training masks are keyed by the absolute
// training sequence index, eval masks by the eval sequence index, so both are the same in every
// branch and at every evaluation.
const (
	PurposeTrainMask = "train-mask"
	PurposeEvalMask  = "eval-mask"
)

// DefaultMaskEps is the floor on the masking probability (docs/science.md, section 1).
const DefaultMaskEps = 1e-3

// MDMMask draws the masked-diffusion noise for one sequence as a pure function of
// (seed, purpose, seqIndex): t ~ U(0,1) is the stream's first value, p = (1-eps) t + eps, and
// position j is masked when the stream's (j+2)-th value is below p. It fills mask and returns p,
// the weight divisor of the sequence's loss. eps must be in [0, 1] and seqIndex non-negative;
// anything else is a programming error and panics.
//
// Because the draw for position j does not depend on len(mask), a prefix of a longer sequence
// gets a prefix of its mask.
func MDMMask(seed uint64, purpose string, seqIndex int64, eps float64, mask []bool) (p float64) {
	if !(eps >= 0 && eps <= 1) {
		panic(fmt.Sprintf("data: MDMMask eps = %v outside [0, 1]", eps))
	}
	if seqIndex < 0 {
		panic(fmt.Sprintf("data: MDMMask sequence index %d is negative", seqIndex))
	}
	s := rng.Key(seed, purpose, uint64(seqIndex))
	t := s.Float64()
	p = (1-eps)*t + eps
	for j := range mask {
		mask[j] = s.Float64() < p
	}
	return p
}

// TrainMask is MDMMask for training sequence i (its absolute index in the stream).
func TrainMask(seed uint64, i int64, eps float64, mask []bool) float64 {
	return MDMMask(seed, PurposeTrainMask, i, eps, mask)
}

// EvalMask is MDMMask for eval sequence k; it is frozen: the same at every evaluation.
func EvalMask(seed uint64, k int, eps float64, mask []bool) float64 {
	return MDMMask(seed, PurposeEvalMask, int64(k), eps, mask)
}

// MDMBatchMasks fills masks (len(p) sequences of seqLen positions, row-major) and p for the
// sequences first, first+1, ... of the given purpose: the layout model.Batch.SetMDM takes.
func MDMBatchMasks(seed uint64, purpose string, first int64, eps float64, seqLen int, masks []bool, p []float64) {
	if len(masks) != len(p)*seqLen {
		panic(fmt.Sprintf("data: MDMBatchMasks: %d mask entries for %d sequences of %d", len(masks), len(p), seqLen))
	}
	for b := range p {
		p[b] = MDMMask(seed, purpose, first+int64(b), eps, masks[b*seqLen:(b+1)*seqLen])
	}
}
