package figure

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"cbs/analysis"
)

// handResult is a primary fit written out by hand, for the cases a synthetic ladder cannot reach:
// a CBS censored below (the smallest batch already over the limit) and differing tau.
func handResult(tau float64, overheads []float64, ref int, cens analysis.Censoring, bound float64, statement string) *analysis.Result {
	nan := analysis.Num(math.NaN())
	pf := &analysis.PrimaryFit{Tau: tau, ReferenceBatch: float64(int(1024) << ref), CBS: nan, Interval: [2]analysis.Num{nan, nan},
		Level: 0.9, Censored: cens, Bound: analysis.Num(bound), LossLevel: 3, Statement: statement}
	for i, o := range overheads {
		pf.Rungs = append(pf.Rungs, analysis.OverheadRow{Batch: float64(int(1024) << i), Replicates: 1, Tokens: analysis.Num(o * 1e6),
			Overhead: analysis.Num(o), Lo: nan, Hi: nan})
	}
	return &analysis.Result{Primary: pf}
}

func TestCompare(t *testing.T) {
	below := handResult(0.2, []float64{1.5, 1, 1.3, math.Inf(1)}, 1, analysis.CensoredBelow, 1024,
		"CBS < 1Ki tokens: the smallest batch tried already needs more than 20% more tokens than 2Ki to reach loss 3")
	above := handResult(0.5, []float64{1, 1.1, 1.2}, 0, analysis.CensoredAbove, 4096,
		"CBS >= 4Ki tokens: every batch up to the largest tried needs at most 50% more tokens than 1Ki to reach loss 3")
	broken := &analysis.Result{Primary: &analysis.PrimaryFit{Error: "the reference batch 3Ki is not on the ladder", Statement: "not estimated"}}
	f, err := Compare([]CompareInput{{"ar", below}, {"mdm", above}, {"x", broken}}, Full)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := f.Encode(&a, "svg"); err != nil {
		t.Fatal(err)
	}
	f.Encode(&b, "svg")
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("comparison SVG is not byte-stable")
	}
	for _, want := range []string{"ar: CBS &lt; 1Ki", "mdm: CBS &gt;= 4Ki", "ar: 1 + tau = 1.2", "mdm: 1 + tau = 1.5",
		"ar: did not reach the loss", "x: not estimated"} {
		if !strings.Contains(a.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if _, err := Compare([]CompareInput{{"ar", below}}, Full); err == nil {
		t.Error("a comparison of one sweep was accepted")
	}
	if _, err := Compare([]CompareInput{{"x", broken}, {"y", &analysis.Result{}}}, Full); err == nil {
		t.Error("a comparison with no estimate was drawn")
	}
}

func TestOverheadCensoredBelow(t *testing.T) {
	res := handResult(0.2, []float64{1.5, 1, 1.3}, 1, analysis.CensoredBelow, 1024,
		"CBS < 1Ki tokens: the smallest batch tried already needs more than 20% more tokens than 2Ki to reach loss 3")
	f, err := Overhead(res, Column)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := f.Encode(&buf, "svg"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "CBS &lt; 1Ki") || strings.Contains(buf.String(), "&lt;=") {
		t.Error("the bound is not labelled as the statement words it")
	}
	if f.Plot.X.Min >= 1024/2 {
		t.Errorf("the x axis (from %g) leaves no room for the arrow below 1Ki", f.Plot.X.Min)
	}
	if _, err := Overhead(&analysis.Result{}, Column); err == nil {
		t.Error("a figure was drawn without a token-overhead fit")
	}
}

func TestLinearTicksAreDistinct(t *testing.T) {
	for _, r := range [][2]float64{{3.08, 3.21}, {0, 1}, {2.03, 2.06}, {-0.01, 0.09}, {1200, 5400}, {-0.0737, 0.124}} {
		seen := map[string]bool{}
		labels := 0
		for _, tk := range (linTicks{}).Ticks(r[0], r[1]) {
			if tk.Label == "" {
				continue
			}
			if strings.HasPrefix(tk.Label, "-") && strings.Trim(tk.Label, "-0.") == "" {
				t.Errorf("range %v: label %q, a negative zero", r, tk.Label)
			}
			if seen[tk.Label] {
				t.Errorf("range %v: label %q twice", r, tk.Label)
			}
			seen[tk.Label] = true
			labels++
		}
		if labels < 3 || labels > 11 {
			t.Errorf("range %v: %d labels, want 3 to 11", r, labels)
		}
	}
}
