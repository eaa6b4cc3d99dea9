package cpu

import "math"

// expf is exp for float32 arguments, accurate to about 1 ulp of float32 (Cephes' expf): the
// softmaxes and SiLUs of a step take tens of millions of exponentials, and math.Exp's float64
// precision is wasted on them.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
	)
	if x > 88.72283 {
		return float32(math.Inf(1))
	}
	if x < -87.33654 {
		return 0
	}
	// Round x log2(e) to the nearest integer without a branch: adding 1.5 x 2^23 leaves the
	// integer in the low mantissa bits.
	t := x*log2e + 12582912
	n := int32(math.Float32bits(t)) - 0x4b400000
	r := x - float32(n)*c1 - float32(n)*c2
	z := r * r
	y := ((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r + 5.0000001201e-1
	y = y*z + r + 1
	if n > 127 { // 2^128 is not a float32; scale in two steps
		y *= 2
		n--
	}
	return y * math.Float32frombits(uint32(n+127)<<23)
}
