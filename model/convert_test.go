package model

import "testing"

func TestAddMaskToken(t *testing.T) {
	for _, tied := range []bool{false, true} {
		c := tinyConfig(4, 2, tied)
		c.MaskTokenID = -1
		p := NewParams[float64](c)
		p.Init(1, 0.5)
		q := AddMaskToken(p)
		if q.Config.VocabSize != c.VocabSize+1 || q.Config.MaskTokenID != c.VocabSize {
			t.Fatalf("vocab %d, mask %d; want %d, %d", q.Config.VocabSize, q.Config.MaskTokenID, c.VocabSize+1, c.VocabSize)
		}
		d := c.HiddenSize
		for i, tn := range q.Tensors {
			src, dst := p.View(i), q.View(i)
			for j := range src {
				if dst[j] != src[j] {
					t.Fatalf("%s[%d] changed: %v -> %v", tn.Name, j, src[j], dst[j])
				}
			}
			if len(dst) == len(src)+d {
				var mean float64
				for v := 0; v < c.VocabSize; v++ {
					mean += src[v*d]
				}
				mean /= float64(c.VocabSize)
				if got := dst[c.VocabSize*d]; got-mean > 1e-12 || mean-got > 1e-12 {
					t.Errorf("%s: new row starts %v, want the mean %v", tn.Name, got, mean)
				}
			}
		}
	}
}
