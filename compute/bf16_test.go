package compute

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// bigBF16 is an independent reference: the nearest bfloat16 by exact rational arithmetic, ties
// to the even mantissa, for finite f.
func bigBF16(f float32) uint16 {
	b := math.Float32bits(f)
	lo, hi := b&0xffff0000, (b&0xffff0000)+0x10000 // the two candidates around f (same sign)
	x := new(big.Float).SetFloat64(float64(f))
	cl := new(big.Float).SetFloat64(float64(math.Float32frombits(lo)))
	var chi *big.Float
	if hi&0x7fffffff == 0x7f800000 {
		// Past the largest bfloat16 the next candidate is infinity; rounding treats it as the
		// power of two 2^128 (IEEE's rule).
		chi = new(big.Float).SetMantExp(big.NewFloat(1), 128)
		if b>>31 == 1 {
			chi.Neg(chi)
		}
	} else {
		chi = new(big.Float).SetFloat64(float64(math.Float32frombits(hi)))
	}
	dl := new(big.Float).Abs(new(big.Float).Sub(x, cl))
	dh := new(big.Float).Abs(new(big.Float).Sub(x, chi))
	switch dl.Cmp(dh) {
	case -1:
		return uint16(lo >> 16)
	case 1:
		return uint16(hi >> 16)
	}
	if (lo>>16)&1 == 0 {
		return uint16(lo >> 16)
	}
	return uint16(hi >> 16)
}

func TestBF16Special(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	for _, tc := range []struct {
		name string
		in   uint32 // float32 bits
		want uint16
	}{
		{"+0", 0x00000000, 0x0000},
		{"-0", 0x80000000, 0x8000},
		{"1", 0x3f800000, 0x3f80},
		{"-2", 0xc0000000, 0xc000},
		{"+inf", math.Float32bits(inf), 0x7f80},
		{"-inf", math.Float32bits(-inf), 0xff80},
		{"quiet nan", math.Float32bits(nan), 0x7fc0},
		{"nan with low payload only", 0x7f800001, 0x7fc0},
		{"negative nan", 0xff800001, 0xffc0},
		{"nan keeps high payload", 0x7fa50000, 0x7fe5},
		{"tie, even below: round down", 0x3f808000, 0x3f80},
		{"tie, odd below: round up", 0x3f818000, 0x3f82},
		{"just above tie", 0x3f808001, 0x3f81},
		{"just below tie", 0x3f807fff, 0x3f80},
		{"negative tie, odd: away from zero", 0xbf818000, 0xbf82},
		{"max float32 overflows to inf", 0x7f7fffff, 0x7f80},
		{"largest bf16 stays", 0x7f7f0000, 0x7f7f},
		{"tie below inf (odd) rounds to inf", 0x7f7f8000, 0x7f80},
		{"subnormal kept", 0x00010000, 0x0001},
		{"subnormal tie, even: down", 0x00008000, 0x0000},
		{"subnormal tie, odd: up", 0x00018000, 0x0002},
		{"smallest subnormal rounds to 0", 0x00000001, 0x0000},
		{"subnormal to smallest normal", 0x007fffff, 0x0080},
	} {
		if got := BF16(math.Float32frombits(tc.in)); got != tc.want {
			t.Errorf("%s: BF16(%#08x) = %#04x, want %#04x", tc.name, tc.in, got, tc.want)
		}
	}
	if f := FromBF16(BF16(nan)); !math.IsNaN(float64(f)) {
		t.Errorf("NaN round trip gave %v", f)
	}
}

// TestBF16MatchesExactRounding checks BF16 against exact rational rounding on random bit
// patterns, ties and neighbours of every exponent.
func TestBF16MatchesExactRounding(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(bits uint32) {
		f := math.Float32frombits(bits)
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return
		}
		if got, want := BF16(f), bigBF16(f); got != want {
			t.Fatalf("BF16(%#08x) = %#04x, exact rounding %#04x", bits, got, want)
		}
	}
	for range 200000 {
		check(r.Uint32())
	}
	for e := uint32(0); e < 255; e++ {
		for _, low := range []uint32{0, 1, 0x7fff, 0x8000, 0x8001, 0xffff} {
			for _, m := range []uint32{0, 1 << 16, 0x7f << 16, 0x3a << 16} {
				for _, sign := range []uint32{0, 1 << 31} {
					check(sign | e<<23 | m | low)
				}
			}
		}
	}
}

func TestFromBF16Exact(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := FromBF16(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if BF16(f) != uint16(h) {
			t.Fatalf("BF16(FromBF16(%#04x)) = %#04x", h, BF16(f))
		}
	}
	dst := make([]uint16, 3)
	RoundBF16(dst, []float32{1, 1.00390625, -3})
	if dst[0] != 0x3f80 || dst[1] != 0x3f80 || dst[2] != 0xc040 {
		t.Errorf("RoundBF16 = %#04x", dst)
	}
}

func TestParsePrecision(t *testing.T) {
	for s, want := range map[string]Precision{"": PrecisionFP32, "fp32": PrecisionFP32, "bf16": PrecisionBF16} {
		if p, err := ParsePrecision(s); err != nil || p != want {
			t.Errorf("ParsePrecision(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"tf32", "BF16", "fp16"} {
		if _, err := ParsePrecision(s); err == nil {
			t.Errorf("ParsePrecision(%q) accepted", s)
		}
	}
	if PrecisionBF16.String() != "bf16" || PrecisionFP32.String() != "fp32" {
		t.Error("String")
	}
}
