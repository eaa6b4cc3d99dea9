package analysis

import (
	"math"
	"testing"

	"cbs/internal/rng"
)

func BenchmarkFits(b *testing.B) {
	for _, n := range []int{4, 8, 28} {
		s := rng.Key(1, "bench", uint64(n))
		batches := make([]float64, n)
		steps := make([]float64, n)
		losses := make([]float64, n)
		for i := range batches {
			batches[i] = 8192 * math.Pow(2, float64(i%8))
			steps[i] = 2000 * (1 + 131072/batches[i]) * math.Exp(0.05*s.NormFloat64())
			losses[i] = 2.5 + 30*math.Pow(batches[i], -0.3) + 0.002*s.NormFloat64()
		}
		b.Run("hyperbola/"+itoa(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := FitHyperbola(batches, steps); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("powerlaw/"+itoa(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := FitPowerLaw(batches, losses); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func itoa(n int) string {
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}
