//go:build !amd64

package cpu

func amxReady() bool { return false }

func amxGemm(a []uint16, lda int, b []uint16, ldb int, c []float32, ldc, m, n, k int, accum bool) {
	panic("cpu: no AMX")
}
