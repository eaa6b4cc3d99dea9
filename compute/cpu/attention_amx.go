package cpu

import (
	"unsafe"

	"cbs/compute"
)

// Attention at bf16 on AMX tiles. The products are amxGemm's, which reads its second operand
// in pairs of rows (row r holds rows 2r and 2r+1 side by side, element by element); the
// softmax and its backward are attentionBF16's kernels, so only the products' sums differ
// from the oneDNN path: q, k, v and do rounded once, each block's P and dS rounded, fp32
// accumulation. Per (sequence, kv head) the keys and values are laid out once: k^T and v^T
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

// pairRows writes rows 2r and 2r+1 of src (rows x n, row stride ld) into row r of dst
// (rows/2 x 2n) element by element.
func pairRows(dst, src []uint16, rows, n, ld int) {
	for r := 0; r < rows; r += 2 {
		out, r0, r1 := dst[r*n:(r+2)*n], src[r*ld:r*ld+n], src[(r+1)*ld:(r+1)*ld+n]
		j := 0
		if useSIMD && n >= 8 {
			j = n &^ 7
			pairRowsAVX2(&out[0], &r0[0], &r1[0], j)
		}
		for ; j < n; j++ {
			out[2*j], out[2*j+1] = r0[j], r1[j]
		}
	}
}

// roundPairs is pairRows of the bf16 rounding of src (rows x n, row stride n).
func roundPairs(dst []uint16, src []float32, rows, n int) {
	for r := 0; r < rows; r += 2 {
		out, r0, r1 := dst[r*n:(r+2)*n], src[r*n:(r+1)*n], src[(r+1)*n:(r+2)*n]
		j := 0
		if useSIMD && n >= 8 {
			j = n &^ 7
			roundPairsAVX2(&out[0], &r0[0], &r1[0], j)
		}
		for ; j < n; j++ {
			out[2*j], out[2*j+1] = compute.BF16(r0[j]), compute.BF16(r1[j])
		}
	}
}

// transpose16 writes x^T (cols x rows, row stride ldd) of x (rows x cols, row stride lds).
func transpose16(dst []uint16, ldd int, x []uint16, lds, rows, cols int) {
	if useSIMD && rows%8 == 0 && cols%8 == 0 {
		_, _ = x[(rows-1)*lds+cols-1], dst[(cols-1)*ldd+rows-1]
		transpose16AVX(&dst[0], ldd, &x[0], lds, rows, cols)
		return
	}
	for r := range rows {
		for c, v := range x[r*lds : r*lds+cols] {
			dst[c*ldd+r] = v
		}
	}
}

// transpose32 is transpose16 for 4-byte elements.
func transpose32(dst []uint32, ldd int, x []uint32, lds, rows, cols int) {
	if useSIMD && rows%4 == 0 && cols%4 == 0 {
		_, _ = x[(rows-1)*lds+cols-1], dst[(cols-1)*ldd+rows-1]
		transpose32AVX(&dst[0], ldd, &x[0], lds, rows, cols)
		return
	}
	for r := range rows {
		for c, v := range x[r*lds : r*lds+cols] {
			dst[c*ldd+r] = v
		}
	}
}

// words32 views x as 4-byte words: pairs of bf16 (x starts at an even index of a slice the
// allocator aligned) or float32 bits.
func words32[T uint16 | float32](x []T) []uint32 {
	n := len(x) * int(unsafe.Sizeof(x[0])) / 4
	return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(x))), n)
}

// words32Aligned reports whether x starts on a 4-byte boundary, where words32 may view it.
func words32Aligned(x []uint16) bool { return uintptr(unsafe.Pointer(unsafe.SliceData(x)))%4 == 0 }

// transposePairs writes x^T in pairs: x is L x hd (row stride ld), the result hd/2 rows of
// 2L, row r holding x[j][2r] and x[j][2r+1] for each j: x read as L x hd/2 pairs, transposed.
func transposePairs(dst, x []uint16, L, hd, ld int) {
	if ld%2 == 0 && words32Aligned(x) && words32Aligned(dst) {
		transpose32(words32(dst), L, words32(x[:(L-1)*ld+hd]), ld/2, L, hd/2)
		return
	}
	for j := range L {
		row := x[j*ld : j*ld+hd]
		for r := range hd / 2 {
			dst[r*2*L+2*j], dst[r*2*L+2*j+1] = row[2*r], row[2*r+1]
		}
	}
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
		transposePairs(kT, k16[b*L*ks+kh*hd:], L, hd, ks)
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
		transposePairs(kT, kb, L, hd, ks)
		transposePairs(vT, vb, L, hd, ks)
		pairRows(kP, kb, L, hd, ks)
		for j := range g {
			h := kh*g + j
			rowLSE := lse[(b*H+h)*L : (b*H+h+1)*L]
			dob, qb, dqb := do16[b*L*qs+h*hd:], q16[b*L*qs+h*hd:], dq[b*L*qs+h*hd:]
			transpose16(qT, L, qb, qs, L, hd)
			transpose16(doT, L, dob, qs, L, hd)
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
		transpose32(words32(dk[b*L*ks+kh*hd:]), ks, words32(dkT), L, hd, L)
		transpose32(words32(dv[b*L*ks+kh*hd:]), ks, words32(dvT), L, hd, L)
	})
}

// Linear products at bf16 run on AMX too when their sides are multiples of 32 and A is not
// transposed (the forward products x W^T and the input gradients dY W; the weight gradients,
// whose A is transposed, stay on oneDNN). B is laid out in pairs once per call, on the
// goroutines; C is cut into tiles of gemmBlock rows by amxTileCols columns, one task each, and
// each tile sums K in chunks of amxKChunk, its C tiles stored and reloaded between chunks, which
// is exact: the bits are those of one pass over K, and depend on the shape alone.
const (
	amxTileCols = 512
	amxKChunk   = 512
)

// amxProduct reports whether GemmBF16 of this shape runs on AMX.
func (c *CPU) amxProduct(transA bool, m, n, k int, alpha, beta float32) bool {
	return c.amx && !transA && alpha == 1 && (beta == 0 || beta == 1) && m%32 == 0 && n%32 == 0 && k%32 == 0
}

// gemmAMX is GemmBF16 (alpha 1, beta 0 or 1 as accum) on AMX; see amxProduct.
func (c *CPU) gemmAMX(transB bool, m, n, k int, a []uint16, lda int, b []uint16, ldb int, accum bool, cm []float32, ldc int) {
	bp := getScratch16(k * n)
	defer putScratch16(bp)
	if transB {
		// b is n x k: op(b) in pairs is b's rows read as pairs and transposed, a block of rows
		// of b per task.
		const rows = 256
		c.pool.run(chunks(n, rows), func(i int) {
			lo, hi := span(i, rows, n)
			sub := b[lo*ldb : (hi-1)*ldb+k]
			if ldb%2 == 0 && words32Aligned(sub) {
				transpose32(words32(bp.buf)[lo:], n, words32(sub), ldb/2, hi-lo, k/2)
				return
			}
			for j := lo; j < hi; j++ {
				for r := range k / 2 {
					bp.buf[r*2*n+2*j], bp.buf[r*2*n+2*j+1] = b[j*ldb+2*r], b[j*ldb+2*r+1]
				}
			}
		})
	} else {
		const pairs = 128
		c.pool.run(chunks(k/2, pairs), func(i int) {
			lo, hi := span(i, pairs, k/2)
			pairRows(bp.buf[lo*2*n:], b[2*lo*ldb:], 2*(hi-lo), n, ldb)
		})
	}
	rt, ct := chunks(m, gemmBlock), chunks(n, amxTileCols)
	c.pool.run(rt*ct, func(i int) {
		r0, r1 := span(i/ct, gemmBlock, m)
		c0, c1 := span(i%ct, amxTileCols, n)
		for k0 := 0; k0 < k; k0 += amxKChunk {
			kn := min(amxKChunk, k-k0)
			amxGemm(a[r0*lda+k0:], lda, bp.buf[k0*n+2*c0:], 2*n, cm[r0*ldc+c0:], ldc, r1-r0, c1-c0, kn, accum || k0 > 0)
		}
	})
}
