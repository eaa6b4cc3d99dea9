package model

import "cbs/compute"

// AddMaskToken returns a copy of p with one more vocabulary entry, the mask token, for turning
// an AR checkpoint without a spare token into a masked-diffusion model. The new embedding row
// (and head row, when untied) is the mean of the existing rows: a neutral starting point that
// keeps the logits of every other token unchanged in distribution.
func AddMaskToken[T compute.Float](p *Params[T]) *Params[T] {
	c := p.Config
	old := c.VocabSize
	c.VocabSize++
	c.MaskTokenID = old
	q := NewParams[T](c)
	for i, t := range q.Tensors {
		src := p.View(i) // the layouts list tensors in the same order
		dst := q.View(i)
		if t.Name != "model.embed_tokens.weight" && t.Name != "lm_head.weight" {
			copy(dst, src)
			continue
		}
		d := c.HiddenSize
		copy(dst, src)
		row := dst[old*d : (old+1)*d]
		for v := 0; v < old; v++ {
			for j := range row {
				row[j] += src[v*d+j]
			}
		}
		for j := range row {
			row[j] /= T(old)
		}
	}
	return q
}
