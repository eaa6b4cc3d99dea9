package analysis

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

var siSuffixes = []struct {
	s string
	v float64
}{{"T", 1e12}, {"B", 1e9}, {"G", 1e9}, {"M", 1e6}, {"K", 1e3}, {"k", 1e3}}

var binSuffixes = []struct {
	s string
	v float64
}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}

// ParseTokens reads a token quantity as the config writes it: a plain number, or a number with an
// SI suffix (K, M, B or G, T: powers of ten) or a binary one (Ki, Mi, Gi, Ti: powers of two).
func ParseTokens(s string) (float64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	for _, suf := range binSuffixes {
		if strings.HasSuffix(t, suf.s) {
			t, mult = strings.TrimSuffix(t, suf.s), suf.v
			goto parse
		}
	}
	for _, suf := range siSuffixes {
		if strings.HasSuffix(t, suf.s) {
			t, mult = strings.TrimSuffix(t, suf.s), suf.v
			break
		}
	}
parse:
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, fmt.Errorf("%q is not a token count (allowed: 65536, 64Ki, 64K, 4Mi, 5B)", s)
	}
	return v * mult, nil
}

// FormatTokens writes a token count briefly: exactly in the config's syntax when it is a whole
// multiple of a binary or SI unit ("64Ki", "5B"), else to three significant digits with a binary
// suffix ("362Ki"). Rounded counts are binary because the ladders they sit between are: a CBS of
// 2.26Ki reads at once as between 2Ki and 4Ki, where 2.31K would invite comparing 2.31 with 2.
func FormatTokens(v float64) string {
	if math.IsInf(v, 1) {
		return "inf"
	}
	if v == math.Trunc(v) && v >= 1024 {
		for _, suf := range binSuffixes {
			if q := v / suf.v; q >= 1 && q == math.Trunc(q) && q < 1024 {
				return strconv.FormatFloat(q, 'f', -1, 64) + suf.s
			}
		}
		for _, suf := range siSuffixes[:5] {
			if q := v / suf.v; q >= 1 && q == math.Trunc(q) && q < 1000 {
				return strconv.FormatFloat(q, 'f', -1, 64) + suf.s
			}
		}
	}
	a := math.Abs(v)
	for _, suf := range binSuffixes {
		if a >= suf.v*0.9995 {
			return strconv.FormatFloat(roundSig(v/suf.v, 3), 'f', -1, 64) + suf.s
		}
	}
	return FormatSI(v)
}

// FormatSI writes v to three significant digits with an SI suffix: 371K, 1.2M, 5B. It is for
// counts other than tokens, such as steps; token counts go through FormatTokens.
func FormatSI(v float64) string {
	a := math.Abs(v)
	for _, suf := range []struct {
		s string
		v float64
	}{{"T", 1e12}, {"B", 1e9}, {"M", 1e6}, {"K", 1e3}} {
		if a >= suf.v*0.9995 {
			return strconv.FormatFloat(roundSig(v/suf.v, 3), 'f', -1, 64) + suf.s
		}
	}
	return strconv.FormatFloat(roundSig(v, 3), 'f', -1, 64)
}

func roundSig(v float64, n int) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	p := math.Pow(10, float64(n)-math.Ceil(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}
