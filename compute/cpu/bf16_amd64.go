//go:build amd64

package cpu

//go:noescape
func toBF16AVX2(dst *uint16, src *float32, n int)

//go:noescape
func mulRoundBF16AVX2(dst *uint16, src *float32, n int, s float32)

//go:noescape
func softmaxBwdBF16AVX2(dst *uint16, dr, pr *float32, n int, dot, scale float32)
