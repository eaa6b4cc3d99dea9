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

// TestAddMaskTokenMoments: the moments of a model that gains a mask token keep every existing
// entry in place and start the new rows at zero; the step count carries over.
func TestAddMaskTokenMoments(t *testing.T) {
	for _, tied := range []bool{false, true} {
		c := tinyConfig(4, 2, tied)
		c.MaskTokenID = -1
		p := NewParams[float32](c)
		o := NewAdamW[float32](DefaultOptim(), len(p.Data))
		for i := range o.M {
			o.M[i], o.V[i] = float32(i+1), float32(-i-1)
		}
		o.Step, o.EWA = 7, make([]float32, len(p.Data))
		q := AddMaskToken(p)
		n := AddMaskTokenMoments(o, p, q)
		if n.Step != 7 || n.EWA != nil || len(n.M) != len(q.Data) || len(n.V) != len(q.Data) {
			t.Fatalf("step %d, ewa %v, %d moments for %d parameters", n.Step, n.EWA != nil, len(n.M), len(q.Data))
		}
		for i, tn := range q.Tensors {
			old := p.Tensors[i]
			for j := 0; j < tn.Size; j++ {
				wantM, wantV := float32(0), float32(0)
				if j < old.Size {
					wantM, wantV = o.M[old.Offset+j], o.V[old.Offset+j]
				}
				if n.M[tn.Offset+j] != wantM || n.V[tn.Offset+j] != wantV {
					t.Fatalf("tied %v, %s[%d]: moments %v, %v; want %v, %v", tied, tn.Name, j, n.M[tn.Offset+j], n.V[tn.Offset+j], wantM, wantV)
				}
			}
		}
	}
}
