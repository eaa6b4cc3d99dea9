package runfmt

import (
	"strings"
	"testing"
)

func TestParseTokens(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Tokens
	}{
		{"0", 0}, {"12345", 12345}, {"64K", 64000}, {"64Ki", 65536}, {"4Mi", 4 << 20}, {"5B", 5e9},
		{"1.5M", 1500000}, {" 2T ", 2e12}, {"3Gi", 3 << 30}, {"0.5K", 500}, {"1e3", 1000}, {"4 Ki", 4096},
	} {
		got, err := ParseTokens(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseTokens(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	// Suffixes are case-sensitive and only those of docs/config.md; a count is never negative.
	for _, bad := range []string{"", "K", "1.5", "0.3Ki", "abc", "12X", "NaN", "Inf", "9999999999999T",
		"64k", "1G", "4ki", "-64", "-1Ki", "-0.5K", "1Q"} {
		if v, err := ParseTokens(bad); err == nil {
			t.Errorf("ParseTokens(%q) = %d, accepted", bad, v)
		} else if !strings.Contains(err.Error(), "is not a token count") {
			t.Errorf("ParseTokens(%q): %v does not say it is not a token count", bad, err)
		}
	}
}

func TestTokensString(t *testing.T) {
	for _, tc := range []struct {
		t    Tokens
		want string
	}{{65536, "64Ki"}, {64000, "64K"}, {5e9, "5B"}, {12345, "12345"}, {0, "0"}, {3 << 20, "3Mi"}} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("%d.String() = %q, want %q", int64(tc.t), got, tc.want)
		}
		back, err := ParseTokens(tc.want)
		if err != nil || back != tc.t {
			t.Errorf("round trip of %q gave %d, %v", tc.want, back, err)
		}
	}
}

// TestFormatTokens: exact counts in the config's syntax, rounded ones to three significant
// digits with a binary suffix, never with an exponent; Human is the same formatter.
func TestFormatTokens(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{65536, "64Ki"}, {8 << 20, "8Mi"}, {64000, "64K"}, {5e9, "5B"}, {370727.6, "362Ki"}, {2314.24, "2.26Ki"},
		{23142, "22.6Ki"}, {512, "512"}, {999999, "977Ki"}, {999, "999"}, {1 << 50, "1020Ti"}, {0, "0"},
	} {
		if got := FormatTokens(tc.in); got != tc.want {
			t.Errorf("FormatTokens(%v) = %q, want %q", tc.in, got, tc.want)
		}
		if tc.in == float64(int64(tc.in)) {
			if got := Tokens(tc.in).Human(); got != tc.want {
				t.Errorf("Tokens(%v).Human() = %q, want %q", tc.in, got, tc.want)
			}
		}
	}
	for v := Tokens(1); v < 1<<62; v = v*3 + 1 {
		if h := v.Human(); strings.ContainsAny(h, "eE+") {
			t.Errorf("Tokens(%d).Human() = %q has an exponent", int64(v), h)
		}
	}
}

func FuzzParseTokens(f *testing.F) {
	for _, s := range []string{"64K", "4Mi", "1.5M", "0", "-3", "1e3", "5B", "64k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseTokens(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("%q -> %d: a negative count", s, int64(v))
		}
		if h := v.Human(); strings.ContainsAny(h, "eE+") {
			t.Fatalf("%q -> %d -> Human %q has an exponent", s, int64(v), h)
		}
		if strings.ContainsAny(s, "eE") {
			return // exponent forms parse but do not round-trip through String
		}
		back, err := ParseTokens(v.String())
		if err != nil || back != v {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, int64(v), v.String(), int64(back), err)
		}
	})
}
