// Package rng provides counter-based random streams keyed by (seed, purpose, index).
//
// Every random choice in cbs is a pure function of such a key and a position in its stream, so a
// value never depends on the order in which work was done, on the batch size or on whether a run
// was interrupted: the stream for sequence 1234's mask is the same in every branch.
package rng

import (
	"hash/fnv"
	"math"
)

// Stream is a splitmix64 sequence started at a key. Its whole state is (Key, Counter), so it can be
// saved and restored exactly.
type Stream struct {
	Key     uint64
	Counter uint64
}

// New returns the stream for (seed, purpose, index). Distinct purposes (for example "mdm-mask",
// "init") give unrelated streams for the same seed and index.
func New(seed uint64, purpose string, index uint64) *Stream {
	s := Key(seed, purpose, index)
	return &s
}

// Key is New without the allocation.
func Key(seed uint64, purpose string, index uint64) Stream {
	h := fnv.New64a()
	h.Write([]byte(purpose))
	k := mix(seed ^ 0x9e3779b97f4a7c15)
	k = mix(k ^ h.Sum64())
	k = mix(k ^ index)
	return Stream{Key: k}
}

func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Uint64 returns the next value of the stream.
func (s *Stream) Uint64() uint64 {
	s.Counter++
	return mix(s.Key + s.Counter*0x9e3779b97f4a7c15)
}

// Float64 returns a uniform value in [0, 1) with 53 random bits.
func (s *Stream) Float64() float64 {
	return float64(s.Uint64()>>11) * (1.0 / (1 << 53))
}

// Intn returns a uniform value in [0, n); n must be positive.
func (s *Stream) Intn(n int) int {
	if n <= 0 {
		panic("rng: Intn with n <= 0")
	}
	// Lemire's multiply-shift with rejection: unbiased for every n.
	un := uint64(n)
	for {
		x := s.Uint64()
		hi, lo := mul64(x, un)
		if lo >= un || lo >= (-un)%un {
			return int(hi)
		}
	}
}

func mul64(x, y uint64) (hi, lo uint64) {
	const mask32 = 1<<32 - 1
	x0, x1 := x&mask32, x>>32
	y0, y1 := y&mask32, y>>32
	w0 := x0 * y0
	t := x1*y0 + w0>>32
	w1 := t&mask32 + x0*y1
	hi = x1*y1 + t>>32 + w1>>32
	lo = x * y
	return
}

// NormFloat64 returns a standard normal value (Box-Muller; two uniforms per value, so the stream
// position after n draws is always 2n).
func (s *Stream) NormFloat64() float64 {
	u1 := s.Float64()
	u2 := s.Float64()
	return math.Sqrt(-2*math.Log(1-u1)) * math.Cos(2*math.Pi*u2)
}

// Perm returns a uniformly random permutation of [0, n) (Fisher-Yates).
func (s *Stream) Perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := s.Intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}
