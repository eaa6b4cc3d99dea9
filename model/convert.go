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

// AddMaskTokenMoments carries optimizer state o of p over to q = AddMaskToken(p). Each tensor of
// q begins with p's tensor of the same index (the new vocabulary row comes last), so every
// existing entry keeps its moments and the new row's start at zero, as a new parameter's do.
// The step count carries over; a weight average does not, since it averaged p's run.
func AddMaskTokenMoments[T compute.Float](o *AdamW[T], p, q *Params[T]) *AdamW[T] {
	n := NewAdamW[T](o.Cfg, len(q.Data))
	n.Step = o.Step
	for i, t := range p.Tensors {
		at := q.Tensors[i].Offset
		copy(n.M[at:at+t.Size], o.M[t.Offset:t.Offset+t.Size])
		copy(n.V[at:at+t.Size], o.V[t.Offset:t.Offset+t.Size])
	}
	return n
}
