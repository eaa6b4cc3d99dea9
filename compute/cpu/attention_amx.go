package cpu

// Attention at bf16 on AMX tiles. The products are amxGemm's, which reads its second operand
// in pairs of rows (row r holds rows 2r and 2r+1 side by side, element by element); the
// softmax and its backward are attentionBF16's kernels, so the products are the only change
// from the oneDNN path (q, k, v and do rounded once, each block's P and dS rounded, fp32
// accumulation), and their sums come out the same: the same tile instruction over K in the
// same order. Per (sequence, kv head) the keys and values are laid out once: k^T and v^T
// in pairs (for the scores q k^T and do v^T), k and v in pairs (for P v and dS k). The weight
// gradients dv = P^T do and dk = dS^T q are computed transposed, dv^T += do^T P, so that P
// and dS, written once per block, are read in pairs of query rows, and do^T and q^T, one
// transpose per head, are read as they are.

// amxAttention reports whether attention of this shape runs on AMX: the CPU has it and every
// product's sides are multiples of 32 (query blocks of attnBlock rows, keys up to a block's
// end, the head dimension).
func (c *CPU) amxAttention(L, hd int) bool {
	return c.amx && L%32 == 0 && hd%32 == 0
}

// attentionAMX is attentionBF16 with its two products on AMX.
func (c *CPU) attentionAMX(o, lse []float32, q16, k16, v16 []uint16, B, L, H, KV, hd int, causal bool) {
	g, qs, ks, scl := attentionShape(H, KV, hd)
	c.pool.run(B*H, func(t int) {
		b, h := t/H, t%H
		kh := h / g
		sc, sc16 := getScratch(attnBlock*L), getScratch16(attnBlock*L+2*L*hd)
		defer putScratch(sc)
		defer putScratch16(sc16)
		S, P16 := sc.buf, sc16.buf[:attnBlock*L]
		kT, vP := sc16.buf[attnBlock*L:attnBlock*L+L*hd], sc16.buf[attnBlock*L+L*hd:]
		transposePairs(kT, 2*L, k16[b*L*ks+kh*hd:], L, hd, ks)
		pairRows(vP, v16[b*L*ks+kh*hd:], L, hd, ks)
		qb, ob := q16[b*L*qs+h*hd:], o[b*L*qs+h*hd:]
		rowLSE := lse[t*L : (t+1)*L]
		for i0 := 0; i0 < L; i0 += attnBlock {
			i1 := min(i0+attnBlock, L)
			rows, nk := i1-i0, attnKeys(i1, L, causal)
			amxGemm(qb[i0*qs:], qs, kT, 2*L, S, nk, rows, nk, hd, false)
			for i := i0; i < i1; i++ {
				r := (i - i0) * nk
				n := attnKeys(i+1, L, causal)
				rowLSE[i] = softmaxRowBF16(P16[r:r+n], S[r:r+n], scl)
				clear(P16[r+n : r+nk])
			}
			amxGemm(P16, nk, vP, 2*hd, ob[i0*qs:], qs, rows, hd, nk, false)
		}
	})
}

// attentionBackwardAMX is attentionBackwardBF16 with its five products on AMX.
func (c *CPU) attentionBackwardAMX(dq, dk, dv, lse []float32, q16, k16, v16, do16 []uint16, B, L, H, KV, hd int, causal bool) {
	g, qs, ks, scl := attentionShape(H, KV, hd)
	c.pool.run(B*KV, func(t int) {
		b, kh := t/KV, t%KV
		sc := getScratch(2*attnBlock*L + 2*hd*L)
		defer putScratch(sc)
		P, dS := sc.buf[:attnBlock*L], sc.buf[attnBlock*L:2*attnBlock*L]
		dkT, dvT := sc.buf[2*attnBlock*L:2*attnBlock*L+hd*L], sc.buf[2*attnBlock*L+hd*L:]
		clear(dkT)
		clear(dvT)
		sc16 := getScratch16(3*attnBlock*L + 5*L*hd)
		defer putScratch16(sc16)
		buf := sc16.buf
		next := func(n int) []uint16 { s := buf[:n]; buf = buf[n:]; return s }
		Pp, dS16, dSp := next(attnBlock*L), next(attnBlock*L), next(attnBlock*L)
		kT, vT, kP, qT, doT := next(L*hd), next(L*hd), next(L*hd), next(L*hd), next(L*hd)
		kb, vb := k16[b*L*ks+kh*hd:], v16[b*L*ks+kh*hd:]
		transposePairs(kT, 2*L, kb, L, hd, ks)
		transposePairs(vT, 2*L, vb, L, hd, ks)
		pairRows(kP, kb, L, hd, ks)
		for j := range g {
			h := kh*g + j
			rowLSE := lse[(b*H+h)*L : (b*H+h+1)*L]
			dob, qb, dqb := do16[b*L*qs+h*hd:], q16[b*L*qs+h*hd:], dq[b*L*qs+h*hd:]
			transpose(qT, L, qb, qs, L, hd)
			transpose(doT, L, dob, qs, L, hd)
			for i0 := 0; i0 < L; i0 += attnBlock {
				i1 := min(i0+attnBlock, L)
				rows, nk := i1-i0, attnKeys(i1, L, causal)
				amxGemm(qb[i0*qs:], qs, kT, 2*L, P, nk, rows, nk, hd, false)
				for i := i0; i < i1; i++ {
					row := P[(i-i0)*nk : (i-i0+1)*nk]
					n := attnKeys(i+1, L, causal)
					expScaleSubSum(row[:n], row[:n], scl, rowLSE[i])
					clear(row[n:])
				}
				roundPairs(Pp, P, rows, nk)
				amxGemm(doT[i0:], L, Pp, 2*nk, dvT, L, hd, nk, rows, true)
				amxGemm(dob[i0*qs:], qs, vT, 2*L, dS, nk, rows, nk, hd, false)
				for i := range rows {
					pr, dr := P[i*nk:(i+1)*nk], dS[i*nk:(i+1)*nk]
					softmaxBwdBF16(dS16[i*nk:(i+1)*nk], dr, pr, dot(pr, dr), scl)
				}
				amxGemm(dS16, nk, kP, 2*hd, dqb[i0*qs:], qs, rows, hd, nk, false)
				pairRows(dSp, dS16, rows, nk, nk)
				amxGemm(qT[i0:], L, dSp, 2*nk, dkT, L, hd, nk, rows, true)
			}
		}
		transpose(words32(dk[b*L*ks+kh*hd:]), ks, words32(dkT), L, hd, L)
		transpose(words32(dv[b*L*ks+kh*hd:]), ks, words32(dvT), L, hd, L)
	})
}
