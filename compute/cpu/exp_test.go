package cpu

import (
	"math"
	"testing"
)

func TestExpf(t *testing.T) {
	worst := 0.0
	for x := -87.0; x <= 88.5; x += 0.0137 {
		got := float64(expf(float32(x)))
		want := math.Exp(float64(float32(x)))
		rel := math.Abs(got-want) / want
		worst = math.Max(worst, rel)
	}
	if worst > 3e-7 {
		t.Errorf("expf worst relative error %.3g over [-87, 88.5], want <= 3e-7", worst)
	}
	for _, tc := range []struct{ x, want float32 }{{0, 1}, {-200, 0}, {float32(math.Inf(-1)), 0}} {
		if got := expf(tc.x); got != tc.want {
			t.Errorf("expf(%v) = %v, want %v", tc.x, got, tc.want)
		}
	}
	if !math.IsInf(float64(expf(100)), 1) {
		t.Errorf("expf(100) = %v, want +Inf", expf(100))
	}
}

func BenchmarkExpf(b *testing.B) {
	xs := make([]float32, 4096)
	for i := range xs {
		xs[i] = float32(i%200)/10 - 10
	}
	b.SetBytes(4 * int64(len(xs)))
	var s float32
	for i := 0; i < b.N; i++ {
		for _, x := range xs {
			s += expf(x)
		}
	}
	_ = s
}
