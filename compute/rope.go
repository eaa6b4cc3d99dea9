package compute

import "math"

// RoPETables returns cos and sin [L, hd/2] of the angles p theta^(-2i/hd), computed in float64 and
// rounded to T once, as the PyTorch reference does (Hugging Face computes them in float32, which
// differs by up to ~1e-4 at positions in the thousands).
func RoPETables[T Float](L, hd int, theta float64) (cos, sin []T) {
	half := hd / 2
	cos, sin = make([]T, L*half), make([]T, L*half)
	for p := 0; p < L; p++ {
		for i := 0; i < half; i++ {
			a := float64(p) * math.Pow(theta, -2*float64(i)/float64(hd))
			cos[p*half+i] = T(math.Cos(a))
			sin[p*half+i] = T(math.Sin(a))
		}
	}
	return cos, sin
}
