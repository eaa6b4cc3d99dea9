//go:build !amd64

package cpu

func toBF16AVX2(dst *uint16, src *float32, n int) { panic("cpu: no simd") }
