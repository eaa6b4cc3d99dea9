package cpu

// useFMAKernel: the kernel runs in AVX-512 assembly (sgemm_amd64.s).
var useFMAKernel = useAVX512

//go:noescape
func sgemmKernel8x32(kc int, a *float32, ak int, b, c *float32, ldc int, alpha float32, flags int, pf uintptr, tiles int)

//go:noescape
func sgemmKernel8x16(kc int, a *float32, ak int, b, c *float32, ldc int, alpha float32, flags int, pf uintptr, tiles int)

//go:noescape
func sgemmKernel8x32Rows(kc int, a *float32, lda int, b, c *float32, ldc int, alpha float32, flags int, pf uintptr, tiles int)

//go:noescape
func sgemmKernel8x16Rows(kc int, a *float32, lda int, b, c *float32, ldc int, alpha float32, flags int, pf uintptr, tiles int)

// sgemmKernel computes tiles tiles of C down a panel from A packed in groups of 8 rows (ak is
// 8; sgemm_amd64.s says how). cols is 32, or 16 for the panel's first 16 columns only; the
// kernel prefetches from pf on (an address that need not be valid: a prefetch does not fault)
// into L2.
func sgemmKernel(kc int, a []float32, ak int, b, c []float32, ldc int, alpha float32, flags, cols int, pf uintptr, tiles int) {
	if !useFMAKernel {
		sgemmKernelsGo(kc, a, 1, ak, sgemmMR*kc, b, c, ldc, alpha, flags, cols, tiles)
		return
	}
	_, _, _ = a[(tiles-1)*sgemmMR*kc+(kc-1)*ak+sgemmMR-1], b[kc*sgemmNR-1], c[(tiles*sgemmMR-1)*ldc+cols-1]
	if cols == sgemmNR {
		sgemmKernel8x32(kc, &a[0], ak, &b[0], &c[0], ldc, alpha, flags, pf, tiles)
	} else {
		sgemmKernel8x16(kc, &a[0], ak, &b[0], &c[0], ldc, alpha, flags, pf, tiles)
	}
}

// sgemmKernelRows is sgemmKernel with A read in place from rows lda apart.
func sgemmKernelRows(kc int, a []float32, lda int, b, c []float32, ldc int, alpha float32, flags, cols int, pf uintptr, tiles int) {
	if !useFMAKernel {
		sgemmKernelsGo(kc, a, lda, 1, sgemmMR*lda, b, c, ldc, alpha, flags, cols, tiles)
		return
	}
	_, _, _ = a[(tiles*sgemmMR-1)*lda+kc-1], b[kc*sgemmNR-1], c[(tiles*sgemmMR-1)*ldc+cols-1]
	if cols == sgemmNR {
		sgemmKernel8x32Rows(kc, &a[0], lda, &b[0], &c[0], ldc, alpha, flags, pf, tiles)
	} else {
		sgemmKernel8x16Rows(kc, &a[0], lda, &b[0], &c[0], ldc, alpha, flags, pf, tiles)
	}
}

//go:noescape
func scatterRowsAVX(dst, src *float32, rows, blocks, width, lds, bsd int)

// scatterRows copies block b (width floats) of each of rows rows of src (lds apart) to
// dst[b*bsd+r*width].
func scatterRows(dst, src []float32, rows, blocks, width, lds, bsd int) {
	if rows == 0 || blocks == 0 {
		return
	}
	if !useSIMD || width%8 != 0 {
		scatterRowsGo(dst, src, rows, blocks, width, lds, bsd)
		return
	}
	_, _ = src[(rows-1)*lds+blocks*width-1], dst[(blocks-1)*bsd+rows*width-1]
	scatterRowsAVX(&dst[0], &src[0], rows, blocks, width, lds, bsd)
}
