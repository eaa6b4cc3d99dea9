package runfmt

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Tokens is an exact count of tokens. In configs, flags and tables it is an integer or a string
// with a suffix, case-sensitive: K, M, B, T (powers of ten) or Ki, Mi, Gi, Ti (powers of two):
// "64K" = 64000, "4Mi" = 4194304. In JSON it is written as the exact integer.
type Tokens int64

// A unit of a token count: its suffix and its value.
type tokenUnit struct {
	s string
	v int64
}

// tokenUnits are the suffixes ParseTokens reads; the two-letter ones come first so that a suffix
// is matched whole.
var tokenUnits = []tokenUnit{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"K", 1e3}, {"M", 1e6}, {"B", 1e9}, {"T", 1e12},
}

// ParseTokens reads a token count: "12345", "64K", "1.5M", "4Mi", "5B". The value must be a
// whole number of tokens and not negative; a fraction with a suffix is fine when the product is
// whole ("0.5K").
func ParseTokens(s string) (Tokens, error) {
	bad := func(why string) (Tokens, error) {
		return 0, fmt.Errorf("%q is not a token count: %s", s, why)
	}
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range tokenUnits {
		if strings.HasSuffix(t, u.s) {
			mult, t = u.v, strings.TrimSpace(strings.TrimSuffix(t, u.s))
			break
		}
	}
	if strings.HasPrefix(t, "-") {
		return bad("a count cannot be negative")
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n > math.MaxInt64/mult {
			return bad("it overflows")
		}
		return Tokens(n * mult), nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return bad("want a whole number with an optional suffix K, M, B, T (powers of ten) or Ki, Mi, Gi, Ti (powers of two), e.g. 65536, 64Ki, 4M")
	}
	v := f * float64(mult)
	switch {
	case v > 1<<62:
		return bad("it overflows")
	case v != math.Trunc(v):
		return bad("not a whole number of tokens")
	}
	return Tokens(v), nil
}

// String formats t exactly, with the largest suffix that divides it: "64Ki", "64K", "12345".
func (t Tokens) String() string {
	v := int64(t)
	if v == 0 {
		return "0"
	}
	for _, u := range []tokenUnit{{"Ti", 1 << 40}, {"T", 1e12}, {"Gi", 1 << 30}, {"B", 1e9}, {"Mi", 1 << 20}, {"M", 1e6}, {"Ki", 1 << 10}, {"K", 1e3}} {
		if v%u.v == 0 {
			return strconv.FormatInt(v/u.v, 10) + u.s
		}
	}
	return strconv.FormatInt(v, 10)
}

// Human formats t for people, as FormatTokens does: "64Ki", "977Ki", "2.26Ki".
func (t Tokens) Human() string { return FormatTokens(float64(t)) }

// UnmarshalText accepts the string forms.
func (t *Tokens) UnmarshalText(b []byte) error {
	v, err := ParseTokens(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// MarshalText writes the exact form String gives (for TOML output).
func (t Tokens) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

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

// UnmarshalTOML accepts a TOML integer or string (BurntSushi/toml's Unmarshaler). A negative
// integer is let through to the config's checks, which name the key it belongs to.
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
	return fmt.Errorf("token count %v: want an integer or a string like \"64Ki\"", v)
}

// ConfigType says what a config accepts for a token count.
func (Tokens) ConfigType() string { return "tokens" }

// binaryUnits and siUnits are the units FormatTokens writes, largest first.
var (
	binaryUnits = []struct {
		s string
		v float64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}
	siUnits = []struct {
		s string
		v float64
	}{{"T", 1e12}, {"B", 1e9}, {"M", 1e6}, {"K", 1e3}}
)

// FormatTokens writes a token count briefly: exactly in the config's syntax when it is a whole
// multiple of a binary or SI unit ("64Ki", "5B"), else to three significant digits with a binary
// suffix ("362Ki"). Rounded counts are binary because the ladders they sit between are: a CBS of
// 2.26Ki reads at once as between 2Ki and 4Ki, where 2.31K would invite comparing 2.31 with 2.
// Counts below 1Ki are written as FormatSI writes them. It never writes an exponent.
func FormatTokens(v float64) string {
	if math.IsInf(v, 1) {
		return "inf"
	}
	if v == math.Trunc(v) && v >= 1024 {
		for _, u := range binaryUnits {
			if q := v / u.v; q >= 1 && q == math.Trunc(q) && q < 1024 {
				return strconv.FormatFloat(q, 'f', -1, 64) + u.s
			}
		}
		for _, u := range siUnits {
			if q := v / u.v; q >= 1 && q == math.Trunc(q) && q < 1000 {
				return strconv.FormatFloat(q, 'f', -1, 64) + u.s
			}
		}
	}
	a := math.Abs(v)
	for _, u := range binaryUnits {
		if a >= u.v*0.9995 {
			return strconv.FormatFloat(roundSig(v/u.v, 3), 'f', -1, 64) + u.s
		}
	}
	return FormatSI(v)
}

// FormatSI writes v to three significant digits with an SI suffix: 371K, 1.2M, 5B. It is for
// counts other than tokens, such as steps; token counts go through FormatTokens.
func FormatSI(v float64) string {
	a := math.Abs(v)
	for _, u := range siUnits {
		if a >= u.v*0.9995 {
			return strconv.FormatFloat(roundSig(v/u.v, 3), 'f', -1, 64) + u.s
		}
	}
	return strconv.FormatFloat(roundSig(v, 3), 'f', -1, 64)
}

// roundSig rounds v to n significant digits.
func roundSig(v float64, n int) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	p := math.Pow(10, float64(n)-math.Ceil(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}
