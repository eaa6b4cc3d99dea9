package cpu

import (
	"math"

	"cbs/compute"
)

// Attention works on blocks of attnBlock query rows: a block's scores against the keys it sees
// (all of them, or up to the block's last row when causal) stay in a per-task scratch of
// attnBlock x L floats, which fits in L2, and only one log-sum-exp per row is kept for the
// backward pass, which recomputes the weights from it. The B x H x L x L weights are never
// written to memory; at d512 (8 sequences of 512, 8 heads, 8 layers) they were 512 MB.
// When causal, a block skips the keys after its last row (at L = 512, 36 of 64 block pairs are
// computed).
const attnBlock = 64

var _ compute.AttentionState = (*CPU)(nil)

// AttentionStateLen is the length of Attention's probs argument: one log-sum-exp of the scores
// per (sequence, head, query row).
func (c *CPU) AttentionStateLen(B, H, L int) int { return B * H * L }

// attentionShape gives attention's loops their numbers: g query heads per kv head, the row
// strides of q and of k and v, and the scale of the scores.
func attentionShape(H, KV, hd int) (g, qs, ks int, scale float32) {
	return H / KV, H * hd, KV * hd, float32(1 / math.Sqrt(float64(hd)))
}

// attnKeys is the number of keys query rows [i0, i1) see.
func attnKeys(i1, L int, causal bool) int {
	if causal {
		return i1
	}
	return L
}

// Attention runs one task per (sequence, head) and, in it, per block of query rows: the scores
// S = scale q k^T (BLAS), a softmax per row that records the row's log-sum-exp in lse
// [B, H, L], then o = S v (BLAS).
func (c *CPU) Attention(o, lse, q, k, v []float32, B, L, H, KV, hd int, causal bool) {
	if c.prec == compute.PrecisionBF16 {
		c.attentionBF16(o, lse, q, k, v, B, L, H, KV, hd, causal)
		return
	}
	g, qs, ks, scale := attentionShape(H, KV, hd)
	packed := c.f32Name == "cbs"
	c.pool.run(B*H, func(t int) {
		b, h := t/H, t%H
		kh := h / g
		sc := getScratch(attnBlock*L + 2*packedLen(L, hd))
		defer putScratch(sc)
		S := sc.buf[:attnBlock*L]
		qb, kb, vb, ob := q[b*L*qs+h*hd:], k[b*L*ks+kh*hd:], v[b*L*ks+kh*hd:], o[b*L*qs+h*hd:]
		var kt, vp []float32
		if packed {
			kt, vp = packHead(sc.buf[attnBlock*L:], true, kb, ks, L, hd), packHead(sc.buf[attnBlock*L+packedLen(L, hd):], false, vb, ks, L, hd)
		}
		rowLSE := lse[t*L : (t+1)*L]
		for i0 := 0; i0 < L; i0 += attnBlock {
			i1 := min(i0+attnBlock, L)
			nk := attnKeys(i1, L, causal)
			c.mulBlock(i1-i0, nk, hd, scale, qb[i0*qs:], qs, kt, hd, true, kb, ks, S, nk)
			for i := i0; i < i1; i++ {
				row := S[(i-i0)*nk : (i-i0+1)*nk]
				n := attnKeys(i+1, L, causal)
				rowLSE[i] = softmaxRow(row[:n])
				clear(row[n:])
			}
			c.mulBlock(i1-i0, hd, nk, 1, S, nk, vp, L, false, vb, ks, ob[i0*qs:], qs)
		}
	})
}

// softmaxRow replaces row by its softmax and returns the log-sum-exp of its old values.
func softmaxRow(row []float32) float32 {
	m := maxOf(row)
	z := expSubSum(row, row, m)
	scale(row, 1/z)
	return m + float32(math.Log(float64(z)))
}

// AttentionBackward runs one task per (sequence, kv head), looping over the query heads that
// share it so dk and dv are summed over the group in a fixed order without races, and, per
// head, over the same blocks of query rows as Attention: the weights P = exp(S - lse) from the
// recomputed scores, dv += P^T do, dS = P (do v^T - rowsum(P do v^T)) scale, dq = dS k and
// dk += dS^T q, all of it in the block's scratch. dk and dv are summed in the task's scratch,
// L rows of hd, and copied out at the end: summed in place, every block's products read and
// wrote rows a kv head's width apart, and the two took 30% longer (same bits either way).
func (c *CPU) AttentionBackward(dq, dk, dv, do, lse, q, k, v []float32, B, L, H, KV, hd int, causal bool) {
	if c.prec == compute.PrecisionBF16 {
		c.attentionBackwardBF16(dq, dk, dv, do, lse, q, k, v, B, L, H, KV, hd, causal)
		return
	}
	g, qs, ks, scale := attentionShape(H, KV, hd)
	packed := c.f32Name == "cbs"
	c.pool.run(B*KV, func(t int) {
		b, kh := t/KV, t%KV
		pl := packedLen(L, hd)
		sc := getScratch(2*attnBlock*L + 3*pl + 2*L*hd)
		defer putScratch(sc)
		P, dS := sc.buf[:attnBlock*L], sc.buf[attnBlock*L:2*attnBlock*L]
		dks, dvs := sc.buf[2*attnBlock*L+3*pl:][:L*hd], sc.buf[2*attnBlock*L+3*pl+L*hd:][:L*hd]
		clear(dks)
		clear(dvs)
		kb, vb := k[b*L*ks+kh*hd:], v[b*L*ks+kh*hd:]
		// Packed once per kv head for the g query heads: k^T and v^T (the scores and do v^T),
		// and k (dq = dS k).
		var kt, vt, kp []float32
		if packed {
			ps := sc.buf[2*attnBlock*L:]
			kt, vt, kp = packHead(ps, true, kb, ks, L, hd), packHead(ps[pl:], true, vb, ks, L, hd), packHead(ps[2*pl:], false, kb, ks, L, hd)
		}
		dkb, dvb := dk[b*L*ks+kh*hd:], dv[b*L*ks+kh*hd:]
		for j := range g {
			h := kh*g + j
			rowLSE := lse[(b*H+h)*L : (b*H+h+1)*L]
			dob, qb, dqb := do[b*L*qs+h*hd:], q[b*L*qs+h*hd:], dq[b*L*qs+h*hd:]
			for i0 := 0; i0 < L; i0 += attnBlock {
				i1 := min(i0+attnBlock, L)
				rows, nk := i1-i0, attnKeys(i1, L, causal)
				c.mulBlock(rows, nk, hd, scale, qb[i0*qs:], qs, kt, hd, true, kb, ks, P, nk)
				for i := i0; i < i1; i++ {
					row := P[(i-i0)*nk : (i-i0+1)*nk]
					n := attnKeys(i+1, L, causal)
					expSubSum(row[:n], row[:n], rowLSE[i])
					clear(row[n:])
				}
				c.f32.Sgemm(true, false, nk, hd, rows, 1, P, nk, dob[i0*qs:], qs, 1, dvs, hd)
				c.mulBlock(rows, nk, hd, 1, dob[i0*qs:], qs, vt, hd, true, vb, ks, dS, nk)
				for i := range rows {
					pr, dr := P[i*nk:(i+1)*nk], dS[i*nk:(i+1)*nk]
					softmaxBwd(dr, pr, dot(pr, dr), scale)
				}
				c.mulBlock(rows, hd, nk, 1, dS, nk, kp, L, false, kb, ks, dqb[i0*qs:], qs)
				c.f32.Sgemm(true, false, nk, hd, rows, 1, dS, nk, qb[i0*qs:], qs, 1, dks, hd)
			}
		}
		for r := range L {
			copy(dkb[r*ks:r*ks+hd], dks[r*hd:])
			copy(dvb[r*ks:r*ks+hd], dvs[r*hd:])
		}
	})
}

// mulBlock computes C = alpha A op(B) for one of attention's block products (A not transposed,
// C not accumulated): on cbs's kernel from B laid out beforehand (bp, panels of pk rows), or,
// when bp is nil, through the fp32 library from b.
func (c *CPU) mulBlock(rows, n, k int, alpha float32, a []float32, lda int, bp []float32, pk int, transB bool, b []float32, ldb int, cm []float32, ldc int) {
	if bp != nil {
		sgemmBlock(false, 0, rows, 0, n, k, alpha, a, lda, bp, pk, 0, cm, ldc)
		return
	}
	c.f32.Sgemm(false, transB, rows, n, k, alpha, a, lda, b, ldb, 0, cm, ldc)
}

// packedLen is the length of one head's keys or values (L x hd) laid out by packB either way.
func packedLen(L, hd int) int { return max(chunks(L, sgemmNR)*hd, chunks(hd, sgemmNR)*L) * sgemmNR }

// packHead lays out one head's keys or values x (L rows of hd, stride ld) for cbs's kernel as
// the B of a product: x^T (hd x L) when trans, else x, into dst, and returns dst.
func packHead(dst []float32, trans bool, x []float32, ld, L, hd int) []float32 {
	if trans {
		packB(dst, true, x, ld, hd, 0, L)
	} else {
		packB(dst, false, x, ld, L, 0, hd)
	}
	return dst
}

// clearHead zeroes one head's hd columns in each of L rows of stride ld.
func clearHead(x []float32, L, ld, hd int) {
	for r := range L {
		clear(x[r*ld : r*ld+hd])
	}
}
