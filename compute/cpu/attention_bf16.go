package cpu

import "math"

// attentionBF16 is Attention at bf16: q, k and v are rounded once, each block's weights P are
// rounded in the block's scratch, and oneDNN multiplies the bf16 operands with fp32
// accumulation, as autocast does with attention's products. The scale of the scores is applied
// in the fp32 softmax rather than as the product's alpha: oneDNN 2.6 leaves its AMX kernels
// when alpha is not 1.
func (c *CPU) attentionBF16(o, lse, q, k, v []float32, B, L, H, KV, hd int, causal bool) {
	g, qs, ks, scl := attentionShape(H, KV, hd)
	q16, k16, v16 := c.rounded(q[:B*L*qs]), c.rounded(k[:B*L*ks]), c.rounded(v[:B*L*ks])
	defer putScratch16(q16)
	defer putScratch16(k16)
	defer putScratch16(v16)
	if c.amxAttention(L, hd) {
		c.attentionAMX(o, lse, q16.buf, k16.buf, v16.buf, B, L, H, KV, hd, causal)
		return
	}
	c.pool.run(B*H, func(t int) {
		b, h := t/H, t%H
		kh := h / g
		sc, sc16 := getScratch(attnBlock*L), getScratch16(attnBlock*L)
		defer putScratch(sc)
		defer putScratch16(sc16)
		S, P16 := sc.buf, sc16.buf
		qb, kb, vb, ob := q16.buf[b*L*qs+h*hd:], k16.buf[b*L*ks+kh*hd:], v16.buf[b*L*ks+kh*hd:], o[b*L*qs+h*hd:]
		rowLSE := lse[t*L : (t+1)*L]
		for i0 := 0; i0 < L; i0 += attnBlock {
			i1 := min(i0+attnBlock, L)
			rows, nk := i1-i0, attnKeys(i1, L, causal)
			c.dnnl.GemmBF16(false, true, rows, nk, hd, 1, qb[i0*qs:], qs, kb, ks, 0, S, nk)
			for i := i0; i < i1; i++ {
				r := (i - i0) * nk
				n := attnKeys(i+1, L, causal)
				rowLSE[i] = softmaxRowBF16(P16[r:r+n], S[r:r+n], scl)
				clear(P16[r+n : r+nk])
			}
			c.dnnl.GemmBF16(false, false, rows, hd, nk, 1, P16, nk, vb, ks, 0, ob[i0*qs:], qs)
		}
	})
}

// attentionBackwardBF16 is AttentionBackward at bf16, rounding like attentionBF16: q, k, v and
// do once, each block's P and dS in the block's scratch; dS itself is computed in fp32 from
// the fp32 weights.
func (c *CPU) attentionBackwardBF16(dq, dk, dv, do, lse, q, k, v []float32, B, L, H, KV, hd int, causal bool) {
	g, qs, ks, scl := attentionShape(H, KV, hd)
	q16, k16, v16, do16 := c.rounded(q[:B*L*qs]), c.rounded(k[:B*L*ks]), c.rounded(v[:B*L*ks]), c.rounded(do[:B*L*qs])
	defer putScratch16(q16)
	defer putScratch16(k16)
	defer putScratch16(v16)
	defer putScratch16(do16)
	if c.amxAttention(L, hd) {
		c.attentionBackwardAMX(dq, dk, dv, lse, q16.buf, k16.buf, v16.buf, do16.buf, B, L, H, KV, hd, causal)
		return
	}
	c.pool.run(B*KV, func(t int) {
		b, kh := t/KV, t%KV
		sc, sc16 := getScratch(2*attnBlock*L), getScratch16(2*attnBlock*L)
		defer putScratch(sc)
		defer putScratch16(sc16)
		P, dS := sc.buf[:attnBlock*L], sc.buf[attnBlock*L:]
		P16, dS16 := sc16.buf[:attnBlock*L], sc16.buf[attnBlock*L:]
		kb, vb := k16.buf[b*L*ks+kh*hd:], v16.buf[b*L*ks+kh*hd:]
		dkb, dvb := dk[b*L*ks+kh*hd:], dv[b*L*ks+kh*hd:]
		clearHead(dkb, L, ks, hd)
		clearHead(dvb, L, ks, hd)
		for j := range g {
			h := kh*g + j
			rowLSE := lse[(b*H+h)*L : (b*H+h+1)*L]
			dob, qb, dqb := do16.buf[b*L*qs+h*hd:], q16.buf[b*L*qs+h*hd:], dq[b*L*qs+h*hd:]
			for i0 := 0; i0 < L; i0 += attnBlock {
				i1 := min(i0+attnBlock, L)
				rows, nk := i1-i0, attnKeys(i1, L, causal)
				c.dnnl.GemmBF16(false, true, rows, nk, hd, 1, qb[i0*qs:], qs, kb, ks, 0, P, nk)
				for i := i0; i < i1; i++ {
					row := P[(i-i0)*nk : (i-i0+1)*nk]
					n := attnKeys(i+1, L, causal)
					expScaleSubSum(row[:n], row[:n], scl, rowLSE[i])
					clear(row[n:])
				}
				roundBF16(P16[:rows*nk], P[:rows*nk])
				c.dnnl.GemmBF16(true, false, nk, hd, rows, 1, P16, nk, dob[i0*qs:], qs, 1, dvb, ks)
				c.dnnl.GemmBF16(false, true, rows, nk, hd, 1, dob[i0*qs:], qs, vb, ks, 0, dS, nk)
				for i := range rows {
					pr, dr := P[i*nk:(i+1)*nk], dS[i*nk:(i+1)*nk]
					softmaxBwdBF16(dS16[i*nk:(i+1)*nk], dr, pr, dot(pr, dr), scl)
				}
				c.dnnl.GemmBF16(false, false, rows, hd, nk, 1, dS16, nk, kb, ks, 0, dqb[i0*qs:], qs)
				c.dnnl.GemmBF16(true, false, nk, hd, rows, 1, dS16, nk, qb[i0*qs:], qs, 1, dkb, ks)
			}
		}
	})
}

// rounded is x rounded to bfloat16 in a pooled buffer; the caller puts it back.
func (c *CPU) rounded(x []float32) *scratch16 {
	s := getScratch16(len(x))
	c.ToBF16(s.buf, x)
	return s
}

// softmaxRowBF16 sets p to the softmax of s x, rounded to bf16, and returns the log-sum-exp of
// s x; x is left holding exp(s x - max). It gives the bits of scaling x, softmaxRow and roundBF16:
// the largest of the scaled scores is s times the largest score, as rounding is monotonic.
func softmaxRowBF16(p []uint16, x []float32, s float32) float32 {
	m := maxOf(x) * s
	z := expScaleSubSum(x, x, s, m)
	mulRoundBF16(p, x, 1/z)
	return m + float32(math.Log(float64(z)))
}
