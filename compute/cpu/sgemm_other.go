//go:build !amd64

package cpu

// useFMAKernel: no assembly kernel on this architecture.
const useFMAKernel = false

func sgemmKernel(kc int, a []float32, ak int, b, c []float32, ldc int, alpha float32, flags, cols int, _ uintptr) {
	sgemmKernelGo(kc, a, 1, ak, b, c, ldc, alpha, flags, cols)
}

func sgemmKernelRows(kc int, a []float32, lda int, b, c []float32, ldc int, alpha float32, flags, cols int, _ uintptr) {
	sgemmKernelGo(kc, a, lda, 1, b, c, ldc, alpha, flags, cols)
}

func scatterRows(dst, src []float32, rows, blocks, width, lds, bsd int) {
	scatterRowsGo(dst, src, rows, blocks, width, lds, bsd)
}
