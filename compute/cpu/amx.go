package cpu

import (
	"unsafe"

	"cbs/compute"
)

// The AMX tile kernel (amxGemmBF16) reads its second operand in pairs of rows; this file lays
// operands out for it and runs the linear products on it. Attention's use is in
// attention_amx.go.

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

// transpose writes x^T (cols x rows, row stride ldd) of x (rows x cols, row stride lds): bf16
// values, or pairs of them and float32 bits as 4-byte words.
func transpose[T uint16 | uint32](dst []T, ldd int, x []T, lds, rows, cols int) {
	block := 4 // the vector kernels' blocks: 8 x 8 of 2 bytes, 4 x 4 of 4
	if unsafe.Sizeof(x[0]) == 2 {
		block = 8
	}
	if useSIMD && rows%block == 0 && cols%block == 0 {
		_, _ = x[(rows-1)*lds+cols-1], dst[(cols-1)*ldd+rows-1]
		switch d := any(dst).(type) {
		case []uint16:
			transpose16AVX(&d[0], ldd, &any(x).([]uint16)[0], lds, rows, cols)
		case []uint32:
			transpose32AVX(&d[0], ldd, &any(x).([]uint32)[0], lds, rows, cols)
		}
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

// transposePairs writes x^T in pairs: x is rows x cols (row stride ld), the result cols/2
// rows (row stride ldd), row r holding x[j][2r] and x[j][2r+1] for each j: x read as rows x
// cols/2 pairs, transposed.
func transposePairs(dst []uint16, ldd int, x []uint16, rows, cols, ld int) {
	x = x[:(rows-1)*ld+cols]
	if ld%2 == 0 && ldd%2 == 0 && words32Aligned(x) && words32Aligned(dst) {
		transpose(words32(dst), ldd/2, words32(x), ld/2, rows, cols/2)
		return
	}
	for j := range rows {
		row := x[j*ld : j*ld+cols]
		for r := range cols / 2 {
			dst[r*ldd+2*j], dst[r*ldd+2*j+1] = row[2*r], row[2*r+1]
		}
	}
}

// Linear products at bf16 run on AMX when their sides are multiples of 32 and A is not
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
			transposePairs(bp.buf[2*lo:], 2*n, b[lo*ldb:], hi-lo, k, ldb)
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
