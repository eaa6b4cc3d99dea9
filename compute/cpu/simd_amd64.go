//go:build amd64

package cpu

// hasAVX2FMA reports whether the CPU and the OS support AVX2 and FMA (the OS must save the
// YMM registers: XCR0 bits 1 and 2).
func hasAVX2FMA() bool {
	_, _, c, _ := cpuidex(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if c&(fma|osxsave|avx) != fma|osxsave|avx || xgetbv0()&6 != 6 {
		return false
	}
	_, b, _, _ := cpuidex(7, 0)
	return b&(1<<5) != 0
}

// hasAVX512F reports whether the CPU and the OS support AVX-512F (the OS must save the opmask
// and ZMM registers: XCR0 bits 5 to 7, besides the YMM ones).
func hasAVX512F() bool {
	if !hasAVX2FMA() || xgetbv0()&0xe6 != 0xe6 {
		return false
	}
	_, b, _, _ := cpuidex(7, 0)
	return b&(1<<16) != 0
}

func cpuidex(leaf, sub uint32) (a, b, c, d uint32)
func xgetbv0() (eax uint32)

//go:noescape
func expScaleSubSumAVX2(dst, src *float32, n int, scale, sub float32) float32

//go:noescape
func expScaleSubSumAVX512(dst, src *float32, n int, scale, sub float32) float32

//go:noescape
func swigluAVX512(out, gate, up *float32, n int)

//go:noescape
func swigluBwdAVX512(dgate, dup, dout, gate, up *float32, n int)

//go:noescape
func maxAVX2(x *float32, n int) float32

//go:noescape
func scaleAVX2(x *float32, n int, s float32)

//go:noescape
func dotAVX2(x, y *float32, n int) float32

//go:noescape
func mulScaleAVX2(out, x, w *float32, n int, s float32)

//go:noescape
func rmsBwd1AVX2(dw, dy, w, x *float32, n int, s float32) float32

//go:noescape
func rmsBwd2AVX2(dx, dy, w, x *float32, n int, s, c float32, acc int)

//go:noescape
func softmaxBwdAVX2(dr, pr *float32, n int, dot, scale float32)

//go:noescape
func swigluAVX2(out, gate, up *float32, n int)

//go:noescape
func swigluBwdAVX2(dgate, dup, dout, gate, up *float32, n int)

//go:noescape
func adamwAVX2(w, grad, m, v *float32, n int, k *adamConsts)

//go:noescape
func ropeAVX2(x, cs, sn *float32, heads, half int, inverse bool)
