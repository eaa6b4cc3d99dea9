package cpu

import (
	"math"
	"os"

	"cbs/compute"
)

// useSIMD selects the AVX2+FMA kernels of simd_amd64.s. CBS_SIMD=off forces the pure-Go loops
// (for comparing the two on one machine). Either way the results do not depend on the thread
// count: each kernel runs on slices whose bounds depend on the problem's shape alone.
var useSIMD = hasAVX2FMA() && os.Getenv("CBS_SIMD") != "off"

// useAVX512 selects, for the kernels that have one, a version on 16 lanes that gives the AVX2
// kernel's bits (the exp-bound ones: exp of the softmax, SwiGLU and its backward, where twice
// the lanes halve the time). CBS_SIMD=avx2 keeps the AVX2 kernels.
var useAVX512 = useSIMD && hasAVX512F() && os.Getenv("CBS_SIMD") != "avx2"

// The vector kernels take whole groups of 8 elements; these wrappers finish the tail in Go.

// expSubSum sets dst = exp(src - sub) and returns the sum of dst.
func expSubSum(dst, src []float32, sub float32) float32 { return expScaleSubSum(dst, src, 1, sub) }

// expScaleSubSum sets dst = exp(src scale - sub), each product rounded to float32 before the
// subtraction (so it gives the bits of scale followed by expSubSum; at scale 1, exactly
// exp(src - sub)), and returns the sum of dst.
func expScaleSubSum(dst, src []float32, scale, sub float32) float32 {
	n := len(src)
	dst = dst[:n]
	var s float32
	i := 0
	if useSIMD && n >= 8 {
		i = n &^ 7
		if useAVX512 {
			s = expScaleSubSumAVX512(&dst[0], &src[0], i, scale, sub)
		} else {
			s = expScaleSubSumAVX2(&dst[0], &src[0], i, scale, sub)
		}
	}
	// The Go loop sums in float64: one float32 accumulator over a long row loses more than the
	// eight lanes of the vector kernel do.
	t := float64(s)
	for ; i < n; i++ {
		e := expf(float32(src[i]*scale) - sub)
		dst[i] = e
		t += float64(e)
	}
	return float32(t)
}

// maxOf returns the largest element of a non-empty x.
func maxOf(x []float32) float32 {
	n := len(x)
	i := 1
	m := x[0]
	if useSIMD && n >= 8 {
		i = n &^ 7
		m = maxAVX2(&x[0], i)
	}
	for ; i < n; i++ {
		m = max(m, x[i])
	}
	return m
}

// scale multiplies x by s.
func scale(x []float32, s float32) {
	n := len(x)
	i := 0
	if useSIMD && n >= 8 {
		i = n &^ 7
		scaleAVX2(&x[0], i, s)
	}
	for ; i < n; i++ {
		x[i] *= s
	}
}

// dot returns sum x y.
func dot(x, y []float32) float32 {
	n := len(x)
	y = y[:n]
	var s float32
	i := 0
	if useSIMD && n >= 8 {
		i = n &^ 7
		s = dotAVX2(&x[0], &y[0], i)
	}
	t := float64(s)
	for ; i < n; i++ {
		t += float64(x[i]) * float64(y[i])
	}
	return float32(t)
}

// mulScale sets out = x s w.
func mulScale(out, x, w []float32, s float32) {
	n := len(x)
	out, w = out[:n], w[:n]
	i := 0
	if useSIMD && n >= 8 {
		i = n &^ 7
		mulScaleAVX2(&out[0], &x[0], &w[0], i, s)
	}
	for ; i < n; i++ {
		out[i] = x[i] * s * w[i]
	}
}

// rmsBwd1 adds dy x s to dw and returns sum dy w x.
func rmsBwd1(dw, dy, w, x []float32, s float32) float32 {
	n := len(x)
	dw, dy, w = dw[:n], dy[:n], w[:n]
	var acc float32
	i := 0
	if useSIMD && n >= 8 {
		i = n &^ 7
		acc = rmsBwd1AVX2(&dw[0], &dy[0], &w[0], &x[0], i, s)
	}
	t := float64(acc)
	for ; i < n; i++ {
		g := dy[i] * x[i]
		t += float64(g) * float64(w[i])
		dw[i] += g * s
	}
	return float32(t)
}

// rmsBwd2 sets (or adds to) dx the value s dy w - c x.
func rmsBwd2(dx, dy, w, x []float32, s, c float32, accumulate bool) {
	n := len(x)
	dx, dy, w = dx[:n], dy[:n], w[:n]
	i := 0
	if useSIMD && n >= 8 {
		i = n &^ 7
		acc := 0
		if accumulate {
			acc = 1
		}
		rmsBwd2AVX2(&dx[0], &dy[0], &w[0], &x[0], i, s, c, acc)
	}
	for ; i < n; i++ {
		v := s*dy[i]*w[i] - c*x[i]
		if accumulate {
			dx[i] += v
		} else {
			dx[i] = v
		}
	}
}

// softmaxBwd sets dr = pr (dr - dot) scale.
func softmaxBwd(dr, pr []float32, dot, scale float32) {
	n := len(dr)
	pr = pr[:n]
	i := 0
	if useSIMD && n >= 8 {
		i = n &^ 7
		softmaxBwdAVX2(&dr[0], &pr[0], i, dot, scale)
	}
	for ; i < n; i++ {
		dr[i] = pr[i] * (dr[i] - dot) * scale
	}
}

// swiglu sets out = gate sigmoid(gate) up.
func swiglu(out, gate, up []float32) {
	n := len(out)
	gate, up = gate[:n], up[:n]
	i := 0
	if useAVX512 && n >= 16 {
		i = n &^ 15
		swigluAVX512(&out[0], &gate[0], &up[0], i)
	}
	if useSIMD && n-i >= 8 {
		swigluAVX2(&out[i], &gate[i], &up[i], (n-i)&^7)
		i += (n - i) &^ 7
	}
	for ; i < n; i++ {
		g := gate[i]
		out[i] = g / (1 + expf(-g)) * up[i]
	}
}

// swigluBwd sets dgate and dup from dout.
func swigluBwd(dgate, dup, dout, gate, up []float32) {
	n := len(dout)
	dgate, dup, gate, up = dgate[:n], dup[:n], gate[:n], up[:n]
	i := 0
	if useAVX512 && n >= 16 {
		i = n &^ 15
		swigluBwdAVX512(&dgate[0], &dup[0], &dout[0], &gate[0], &up[0], i)
	}
	if useSIMD && n-i >= 8 {
		swigluBwdAVX2(&dgate[i], &dup[i], &dout[i], &gate[i], &up[i], (n-i)&^7)
		i += (n - i) &^ 7
	}
	for ; i < n; i++ {
		g, u, d := gate[i], up[i], dout[i]
		s := 1 / (1 + expf(-g))
		dup[i] = d * g * s
		dgate[i] = d * u * s * (1 + g*(1-s))
	}
}

// adamConsts are RefAdamW's per-tensor scalars, in the order adamwAVX2 reads them.
type adamConsts struct {
	decay, beta1, oneMinusBeta1, beta2, oneMinusBeta2, sqrtBC2, eps, lrOverBC1 float64
}

func newAdamConsts(p compute.AdamParams) adamConsts {
	bc1 := 1 - math.Pow(p.Beta1, float64(p.Step))
	bc2 := 1 - math.Pow(p.Beta2, float64(p.Step))
	return adamConsts{
		decay: 1 - p.LR*p.WeightDecay, beta1: p.Beta1, oneMinusBeta1: 1 - p.Beta1,
		beta2: p.Beta2, oneMinusBeta2: 1 - p.Beta2, sqrtBC2: math.Sqrt(bc2), eps: p.Eps,
		lrOverBC1: p.LR / bc1,
	}
}

// adamW is RefAdamW on float32 tensors, 4 elements at a time with AVX2 where the CPU has it
// (bit-identical: same float64 operations in the same order).
func adamW(w, g, m, v []float32, p compute.AdamParams) {
	n := len(w)
	g, m, v = g[:n], m[:n], v[:n]
	i := 0
	if useSIMD && n >= 4 {
		i = n &^ 3
		k := newAdamConsts(p)
		adamwAVX2(&w[0], &g[0], &m[0], &v[0], i, &k)
	}
	if i < n {
		RefAdamW(w[i:], g[i:], m[i:], v[i:], p)
	}
}
