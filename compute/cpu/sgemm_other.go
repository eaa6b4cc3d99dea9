//go:build !amd64

package cpu

// useFMAKernel: no assembly kernel on this architecture.
const useFMAKernel = false

func sgemmKernel(kc int, a []float32, ak int, b, c []float32, ldc int, alpha float32, flags, cols int, _ uintptr, tiles int) {
	sgemmKernelsGo(kc, a, 1, ak, sgemmMR*kc, b, c, ldc, alpha, flags, cols, tiles)
}

func sgemmKernelRows(kc int, a []float32, lda int, b, c []float32, ldc int, alpha float32, flags, cols int, _ uintptr, tiles int) {
	sgemmKernelsGo(kc, a, lda, 1, sgemmMR*lda, b, c, ldc, alpha, flags, cols, tiles)
}

func scatterRows(dst, src []float32, rows, blocks, width, lds, bsd int) {
	scatterRowsGo(dst, src, rows, blocks, width, lds, bsd)
}
