package cpu

import "math"

// causalBlock is the row block of causal attention: a block of queries [i0, i1) sees keys
// [0, i1) only, so the products skip the blocks above the diagonal (at L = 256, 10 of 16 blocks
// are computed).
const causalBlock = 64

// attentionShape gives attention's loops their numbers: g query heads per kv head, the row
// strides of q and of k and v, the scale of the scores, and the query rows per block.
func attentionShape(L, H, KV, hd int, causal bool) (g, qs, ks int, scale float32, bs int) {
	bs = L
	if causal {
		bs = causalBlock
	}
	return H / KV, H * hd, KV * hd, float32(1 / math.Sqrt(float64(hd))), bs
}

// Attention runs one task per (batch, head): two BLAS products around a softmax, per block of
// query rows when causal.
func (c *CPU) Attention(o, probs, q, k, v []float32, B, L, H, KV, hd int, causal bool) {
	g, qs, ks, scale, bs := attentionShape(L, H, KV, hd, causal)
	c.pool.run(B*H, func(t int) {
		b, h := t/H, t%H
		kh := h / g
		P := probs[t*L*L : (t+1)*L*L]
		qb, kb, vb, ob := q[b*L*qs+h*hd:], k[b*L*ks+kh*hd:], v[b*L*ks+kh*hd:], o[b*L*qs+h*hd:]
		for i0 := 0; i0 < L; i0 += bs {
			i1 := min(i0+bs, L)
			nk := L
			if causal {
				nk = i1
			}
			c.f32.Sgemm(false, true, i1-i0, nk, hd, scale, qb[i0*qs:], qs, kb, ks, 0, P[i0*L:], L)
			for i := i0; i < i1; i++ {
				row := P[i*L : (i+1)*L]
				n := L
				if causal {
					n = i + 1
				}
				softmaxRow(row[:n])
				clear(row[n:])
			}
			c.f32.Sgemm(false, false, i1-i0, hd, nk, 1, P[i0*L:], L, vb, ks, 0, ob[i0*qs:], qs)
		}
	})
}

func softmaxRow(row []float32) {
	z := expSubSum(row, row, maxOf(row))
	scale(row, 1/z)
}

// AttentionBackward runs one task per (batch, kv head), looping over the query heads that share
// it, so dk and dv are summed over the group in a fixed order without races. When causal, the
// products skip the blocks above the diagonal, where P and so dS are zero.
func (c *CPU) AttentionBackward(dq, dk, dv, do, probs, q, k, v []float32, B, L, H, KV, hd int, causal bool) {
	g, qs, ks, scale, bs := attentionShape(L, H, KV, hd, causal)
	c.pool.run(B*KV, func(t int) {
		b, kh := t/KV, t%KV
		sc := getScratch(L * L)
		defer putScratch(sc)
		dS := sc.buf
		kb, vb := k[b*L*ks+kh*hd:], v[b*L*ks+kh*hd:]
		dkb, dvb := dk[b*L*ks+kh*hd:], dv[b*L*ks+kh*hd:]
		for j := 0; j < g; j++ {
			h := kh*g + j
			P := probs[(b*H+h)*L*L : (b*H+h+1)*L*L]
			dob, qb, dqb := do[b*L*qs+h*hd:], q[b*L*qs+h*hd:], dq[b*L*qs+h*hd:]
			beta := float32(1)
			if j == 0 {
				beta = 0
			}
			for i0 := 0; i0 < L; i0 += bs {
				i1 := min(i0+bs, L)
				// Rows [i0, L) of P are nonzero in columns [i0, i1) (all rows when not causal).
				r0, nk := i0, i1
				if !causal {
					r0, nk = 0, L
				}
				// dv = P^T do for this block of keys.
				c.f32.Sgemm(true, false, i1-i0, hd, L-r0, 1, P[r0*L+i0:], L, dob[r0*qs:], qs, beta, dvb[i0*ks:], ks)
				// dP = do v^T, then dS = P (dP - rowsum(dP P)) scale, for this block of queries.
				c.f32.Sgemm(false, true, i1-i0, nk, hd, 1, dob[i0*qs:], qs, vb, ks, 0, dS[i0*L:], L)
				for i := i0; i < i1; i++ {
					pr, dr := P[i*L:i*L+nk], dS[i*L:i*L+nk]
					softmaxBwd(dr, pr, dot(pr, dr), scale)
				}
				// dq = dS k for this block of queries.
				c.f32.Sgemm(false, false, i1-i0, hd, nk, 1, dS[i0*L:], L, kb, ks, 0, dqb[i0*qs:], qs)
			}
			// dk += dS^T q, per block of keys, once dS is complete.
			for i0 := 0; i0 < L; i0 += bs {
				i1 := min(i0+bs, L)
				r0 := i0
				if !causal {
					r0 = 0
				}
				c.f32.Sgemm(true, false, i1-i0, hd, L-r0, 1, dS[r0*L+i0:], L, qb[r0*qs:], qs, beta, dkb[i0*ks:], ks)
			}
		}
	})
}
