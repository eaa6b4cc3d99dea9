//go:build !amd64

package cpu

func hasAVX2FMA() bool { return false }
func hasAVX512F() bool { return false }

// The assembly kernels exist on amd64 only; elsewhere useSIMD is false and these are never called.

func expScaleSubSumAVX2(dst, src *float32, n int, scale, sub float32) float32 {
	panic("cpu: no simd")
}
func expScaleSubSumAVX512(dst, src *float32, n int, scale, sub float32) float32 {
	panic("cpu: no simd")
}
func swigluAVX512(out, gate, up *float32, n int)                      { panic("cpu: no simd") }
func swigluBwdAVX512(dgate, dup, dout, gate, up *float32, n int)      { panic("cpu: no simd") }
func maxAVX2(x *float32, n int) float32                               { panic("cpu: no simd") }
func scaleAVX2(x *float32, n int, s float32)                          { panic("cpu: no simd") }
func dotAVX2(x, y *float32, n int) float32                            { panic("cpu: no simd") }
func mulScaleAVX2(out, x, w *float32, n int, s float32)               { panic("cpu: no simd") }
func rmsBwd1AVX2(dw, dy, w, x *float32, n int, s float32) float32     { panic("cpu: no simd") }
func rmsBwd2AVX2(dx, dy, w, x *float32, n int, s, c float32, acc int) { panic("cpu: no simd") }
func softmaxBwdAVX2(dr, pr *float32, n int, dot, scale float32)       { panic("cpu: no simd") }
func swigluAVX2(out, gate, up *float32, n int)                        { panic("cpu: no simd") }
func swigluBwdAVX2(dgate, dup, dout, gate, up *float32, n int)        { panic("cpu: no simd") }
func adamwAVX2(w, g, m, v *float32, n int, k *adamConsts)             { panic("cpu: no simd") }
func ropeAVX2(x, cs, sn *float32, heads, half int, inverse bool)      { panic("cpu: no simd") }
