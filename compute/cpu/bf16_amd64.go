//go:build amd64

package cpu

//go:noescape
func toBF16AVX2(dst *uint16, src *float32, n int)
