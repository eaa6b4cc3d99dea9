//go:build !amd64

package cpu

func toBF16AVX2(dst *uint16, src *float32, n int) { panic("cpu: no simd") }

func mulRoundBF16AVX2(dst *uint16, src *float32, n int, s float32) { panic("cpu: no simd") }

func softmaxBwdBF16AVX2(dst *uint16, dr, pr *float32, n int, dot, scale float32) {
	panic("cpu: no simd")
}
