//go:build !amd64

package cpu

func amxReady() bool { return false }

// AMXStatus says whether the bf16 products may run on AMX tiles, and if not, why.
func AMXStatus() string { return "not used: AMX kernels exist on amd64 only" }

func amxGemm(a []uint16, lda int, b []uint16, ldb int, c []float32, ldc, m, n, k int, accum bool) {
	panic("cpu: no AMX")
}
