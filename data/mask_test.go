package data

import (
	"math"
	"testing"
)

func TestMDMMaskIsPure(t *testing.T) {
	const L = 64
	first := make([][]bool, 50)
	ps := make([]float64, 50)
	for i := range first {
		first[i] = make([]bool, L)
		ps[i] = TrainMask(7, int64(i), DefaultMaskEps, first[i])
	}
	// Visit in reverse, interleaved with other purposes and seeds: nothing may leak between calls.
	m := make([]bool, L)
	for i := len(first) - 1; i >= 0; i-- {
		EvalMask(7, i, 0.5, make([]bool, 3))
		TrainMask(8, int64(i), DefaultMaskEps, make([]bool, 9))
		p := TrainMask(7, int64(i), DefaultMaskEps, m)
		if p != ps[i] {
			t.Fatalf("sequence %d: p = %v then %v", i, ps[i], p)
		}
		for j := range m {
			if m[j] != first[i][j] {
				t.Fatalf("sequence %d position %d changed between calls", i, j)
			}
		}
	}
	// A prefix of a longer sequence gets a prefix of its mask.
	short := make([]bool, 10)
	if p := TrainMask(7, 3, DefaultMaskEps, short); p != ps[3] {
		t.Errorf("p depends on the sequence length")
	}
	for j := range short {
		if short[j] != first[3][j] {
			t.Errorf("position %d of a 10-token prefix differs from the 64-token mask", j)
		}
	}
	// Batch layout agrees with single calls.
	masks := make([]bool, 4*L)
	bp := make([]float64, 4)
	MDMBatchMasks(7, PurposeTrainMask, 10, DefaultMaskEps, L, masks, bp)
	for b := 0; b < 4; b++ {
		if bp[b] != ps[10+b] {
			t.Errorf("MDMBatchMasks p[%d] = %v, want %v", b, bp[b], ps[10+b])
		}
		for j := 0; j < L; j++ {
			if masks[b*L+j] != first[10+b][j] {
				t.Fatalf("MDMBatchMasks sequence %d position %d differs", b, j)
			}
		}
	}
}

func TestMDMMaskDistribution(t *testing.T) {
	const n, L = 20000, 128
	tests := []struct {
		eps     float64
		purpose string
	}{{DefaultMaskEps, PurposeTrainMask}, {0.3, PurposeEvalMask}, {0, PurposeTrainMask}, {1, PurposeTrainMask}}
	for _, tc := range tests {
		m := make([]bool, L)
		var sumP, sumP2, sumRatio, pMin, pMax float64
		pMin, pMax = 2, -1
		var masked, positions float64
		for i := 0; i < n; i++ {
			p := MDMMask(1, tc.purpose, int64(i), tc.eps, m)
			sumP += p
			sumP2 += p * p
			pMin, pMax = math.Min(pMin, p), math.Max(pMax, p)
			c := 0
			for _, b := range m {
				if b {
					c++
				}
			}
			masked += float64(c)
			positions += L
			// E[count/p] = L for every p: the 1/p weighting makes the loss unbiased.
			sumRatio += float64(c) / p / L
		}
		wantMean := (1 + tc.eps) / 2
		wantVar := (1 - tc.eps) * (1 - tc.eps) / 12
		mean := sumP / n
		checks := []struct {
			name      string
			got, want float64
			tol       float64
		}{
			{"mean p", mean, wantMean, 0.01},
			{"var p", sumP2/n - mean*mean, wantVar, 0.005},
			{"masked fraction", masked / positions, wantMean, 0.01},
			{"mean count/(p L)", sumRatio / n, 1, 0.02},
		}
		for _, c := range checks {
			if math.Abs(c.got-c.want) > c.tol {
				t.Errorf("eps %v: %s = %v, want %v within %v", tc.eps, c.name, c.got, c.want, c.tol)
			}
		}
		if pMin < tc.eps || pMax > 1 {
			t.Errorf("eps %v: p ranged over [%v, %v], outside [eps, 1]", tc.eps, pMin, pMax)
		}
	}
}

func TestMDMMaskPurposesDiffer(t *testing.T) {
	a, b := make([]bool, 256), make([]bool, 256)
	pa := MDMMask(1, PurposeTrainMask, 5, 0, a)
	pb := MDMMask(1, PurposeEvalMask, 5, 0, b)
	same := pa == pb
	for j := range a {
		same = same && a[j] == b[j]
	}
	if same {
		t.Error("train and eval masks of the same index coincide")
	}
}

func TestMDMMaskPanics(t *testing.T) {
	for _, tc := range []struct {
		eps float64
		idx int64
	}{{-0.1, 0}, {1.5, 0}, {math.NaN(), 0}, {0.1, -1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("MDMMask(eps=%v, index=%d) did not panic", tc.eps, tc.idx)
				}
			}()
			MDMMask(1, PurposeTrainMask, tc.idx, tc.eps, make([]bool, 4))
		}()
	}
}
