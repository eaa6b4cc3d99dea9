// Package branch runs one training run: the Tokens unit, token-space LR schedules, the
// train/eval/checkpoint loop, and the files a run writes (metrics.jsonl and its checkpoint).
package branch

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Tokens is an exact count of tokens. In configs it is an integer or a string with a suffix:
// K, M, B, T (powers of ten) or Ki, Mi, Gi, Ti (powers of two): "64K" = 64000, "4Mi" = 4194304.
type Tokens int64

var tokenSuffixes = []struct {
	s string
	v int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"K", 1e3}, {"M", 1e6}, {"B", 1e9}, {"G", 1e9}, {"T", 1e12},
}

// ParseTokens parses "64K", "1.5M", "4Mi", "12345". The value must be a whole number of tokens.
func ParseTokens(s string) (Tokens, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty token count, want e.g. 65536, \"64K\" or \"4Mi\"")
	}
	mult := int64(1)
	for _, suf := range tokenSuffixes {
		if strings.HasSuffix(t, suf.s) {
			mult, t = suf.v, strings.TrimSpace(strings.TrimSuffix(t, suf.s))
			break
		}
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n != 0 && (n > math.MaxInt64/mult || n < math.MinInt64/mult) {
			return 0, fmt.Errorf("token count %q overflows", s)
		}
		return Tokens(n * mult), nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("token count %q: want an integer with an optional suffix K, M, B, T, Ki, Mi, Gi, Ti", s)
	}
	v := f * float64(mult)
	if v != math.Trunc(v) || math.Abs(v) > 1<<62 {
		return 0, fmt.Errorf("token count %q is not a whole number of tokens", s)
	}
	return Tokens(v), nil
}

// String formats t with the largest suffix that divides it exactly.
func (t Tokens) String() string {
	v := int64(t)
	if v == 0 {
		return "0"
	}
	for _, suf := range []struct {
		s string
		v int64
	}{{"Ti", 1 << 40}, {"T", 1e12}, {"Gi", 1 << 30}, {"B", 1e9}, {"Mi", 1 << 20}, {"M", 1e6}, {"Ki", 1 << 10}, {"K", 1e3}} {
		if v%suf.v == 0 {
			return strconv.FormatInt(v/suf.v, 10) + suf.s
		}
	}
	return strconv.FormatInt(v, 10)
}

// UnmarshalText accepts the string forms.
func (t *Tokens) UnmarshalText(b []byte) error {
	v, err := ParseTokens(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// MarshalJSON writes the exact integer.
func (t Tokens) MarshalJSON() ([]byte, error) { return []byte(strconv.FormatInt(int64(t), 10)), nil }

// UnmarshalJSON accepts an integer or a string.
func (t *Tokens) UnmarshalJSON(b []byte) error {
	s := string(b)
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	return t.UnmarshalText([]byte(s))
}

// UnmarshalTOML accepts a TOML integer or string (BurntSushi/toml's Unmarshaler).
func (t *Tokens) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		*t = Tokens(x)
		return nil
	case string:
		return t.UnmarshalText([]byte(x))
	case float64:
		if x == math.Trunc(x) {
			*t = Tokens(x)
			return nil
		}
	}
	return fmt.Errorf("token count %v: want an integer or a string like \"64K\"", v)
}

// Human formats t for people: 3 significant digits with an SI suffix ("1.05M").
func (t Tokens) Human() string {
	v := float64(t)
	for _, s := range []struct {
		s string
		v float64
	}{{"T", 1e12}, {"B", 1e9}, {"M", 1e6}, {"K", 1e3}} {
		if math.Abs(v) >= s.v {
			return strconv.FormatFloat(v/s.v, 'g', 3, 64) + s.s
		}
	}
	return strconv.FormatInt(int64(t), 10)
}

// MarshalText writes the exact form String gives (for TOML output).
func (t Tokens) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// ConfigType says what a config accepts for a token count.
func (Tokens) ConfigType() string { return "tokens" }
