package rng

import (
	"math"
	"testing"
)

func TestStreamsAreKeyed(t *testing.T) {
	a := New(1, "mask", 7)
	b := New(1, "mask", 7)
	for i := 0; i < 100; i++ {
		if a.Uint64() != b.Uint64() {
			t.Fatal("same key gave different streams")
		}
	}
	distinct := map[uint64]bool{}
	for _, s := range []*Stream{New(1, "mask", 7), New(2, "mask", 7), New(1, "init", 7), New(1, "mask", 8)} {
		distinct[s.Uint64()] = true
	}
	if len(distinct) != 4 {
		t.Fatalf("keys differing in seed, purpose or index collided: %d distinct first values", len(distinct))
	}
}

func TestRestoreFromState(t *testing.T) {
	a := New(3, "x", 0)
	for i := 0; i < 10; i++ {
		a.Uint64()
	}
	b := &Stream{Key: a.Key, Counter: a.Counter}
	if a.Float64() != b.Float64() {
		t.Fatal("a stream restored from (Key, Counter) diverged")
	}
}

func TestMoments(t *testing.T) {
	s := New(42, "moments", 0)
	const n = 200000
	var su, su2, sn, sn2 float64
	for i := 0; i < n; i++ {
		u := s.Float64()
		if u < 0 || u >= 1 {
			t.Fatalf("Float64 = %v outside [0,1)", u)
		}
		su += u
		su2 += u * u
		z := s.NormFloat64()
		sn += z
		sn2 += z * z
	}
	tests := []struct {
		name      string
		got, want float64
		tol       float64
	}{
		{"uniform mean", su / n, 0.5, 0.005},
		{"uniform var", su2/n - (su/n)*(su/n), 1.0 / 12, 0.002},
		{"normal mean", sn / n, 0, 0.01},
		{"normal var", sn2/n - (sn/n)*(sn/n), 1, 0.015},
	}
	for _, tc := range tests {
		if math.Abs(tc.got-tc.want) > tc.tol {
			t.Errorf("%s = %v, want %v within %v", tc.name, tc.got, tc.want, tc.tol)
		}
	}
}

func TestIntnUniform(t *testing.T) {
	s := New(9, "intn", 0)
	var counts [7]int
	for i := 0; i < 70000; i++ {
		counts[s.Intn(7)]++
	}
	for k, c := range counts {
		if c < 9500 || c > 10500 {
			t.Errorf("Intn(7) gave %d %d times in 70000, want about 10000", k, c)
		}
	}
}

func TestPermIsPermutation(t *testing.T) {
	p := New(5, "perm", 0).Perm(1000)
	seen := make([]bool, 1000)
	for _, v := range p {
		if seen[v] {
			t.Fatalf("%d repeated", v)
		}
		seen[v] = true
	}
}
