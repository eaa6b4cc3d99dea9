//go:build !amd64

package cpu

func toBF16AVX2(dst *uint16, src *float32, n int) { panic("cpu: no simd") }

func mulRoundBF16AVX2(dst *uint16, src *float32, n int, s float32) { panic("cpu: no simd") }

func softmaxBwdBF16AVX2(dst *uint16, dr, pr *float32, n int, dot, scale float32) {
	panic("cpu: no simd")
}

func roundPairsAVX2(dst *uint16, x0, x1 *float32, n int) { panic("cpu: no simd") }
func pairRowsAVX2(dst, r0, r1 *uint16, n int)            { panic("cpu: no simd") }

func transpose16AVX(dst *uint16, ldd int, src *uint16, lds int, rows, cols int) {
	panic("cpu: no simd")
}
func transpose32AVX(dst *uint32, ldd int, src *uint32, lds int, rows, cols int) {
	panic("cpu: no simd")
}
