package figure_test

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cbs/analysis"
	"cbs/analysis/figure"
	"cbs/runfmt"
)

// overheadResult is a ladder whose loss is a function of T/(1 + B/bnoise) alone, so that the
// tokens to any loss follow E(B) = E_min (1 + B/bnoise) (McCandlish et al.), read by
// analysis.OverheadCBS from marks every 1Mi tokens up to 32Mi. Each overhead gets a bootstrap
// interval of +-spread, and the CBS the interval iv (an end may be infinite).
func overheadResult(t *testing.T, batches []float64, bnoise, tau, spread float64, iv [2]float64) *analysis.Result {
	t.Helper()
	var tokens, losses [][]float64
	for _, b := range batches {
		var tk, ls []float64
		for k := 1; k <= 32; k++ {
			x := float64(k) * (1 << 20)
			tk = append(tk, x)
			ls = append(ls, 2+40*math.Pow(x/(1+b/bnoise), -0.3))
		}
		tokens, losses = append(tokens, tk), append(losses, ls)
	}
	o, err := analysis.OverheadCBS(batches, tokens, losses, 0, tau)
	if err != nil {
		t.Fatal(err)
	}
	ivText := func(v float64) string {
		switch {
		case math.IsInf(v, 1):
			return "inf"
		case math.IsInf(v, -1):
			return "below the ladder"
		}
		return runfmt.FormatTokens(v)
	}
	pf := &analysis.PrimaryFit{Estimator: "token_overhead", Tau: tau, ReferenceBatch: batches[0], CBS: analysis.Num(o.CBS),
		Interval: [2]analysis.Num{analysis.Num(iv[0]), analysis.Num(iv[1])}, Level: 0.9, Censored: o.Censored,
		Bound: analysis.Num(o.Bound), Replicates: 3, LossLevel: analysis.Num(o.Level), Resampled: 200,
		Statement: o.Statement(batches) + fmt.Sprintf("; 90%% interval [%s, %s]", ivText(iv[0]), ivText(iv[1]))}
	for i, b := range batches {
		v := o.Overhead[i]
		lo, hi := v*(1-spread), v*(1+spread)
		if i == 0 {
			lo, hi = 1, 1
		}
		pf.Rungs = append(pf.Rungs, analysis.OverheadRow{Batch: b, Replicates: 3, Tokens: analysis.Num(o.Tokens[i]),
			Overhead: analysis.Num(v), Lo: analysis.Num(lo), Hi: analysis.Num(hi)})
	}
	return &analysis.Result{CodeVersion: "golden", Source: "testdata", Primary: pf}
}

func ladder(from float64, n int) []float64 {
	var b []float64
	for i := range n {
		b = append(b, math.Ldexp(from, i))
	}
	return b
}

// bracketed: the CBS, 0.2 x 6Ki + 1.2 x 1Ki = 2.4Ki, lies between 2Ki and 4Ki.
func bracketed(t *testing.T) *analysis.Result {
	return overheadResult(t, ladder(1024, 6), 6<<10, 0.2, 0.02, [2]float64{2200, 2900})
}

// unbracketed: the noise scale is far past the ladder, so the CBS is censored above 16Ki, and a
// twentieth of the resamples put it at 12Ki or more.
func unbracketed(t *testing.T) *analysis.Result {
	return overheadResult(t, ladder(1024, 5), 128<<10, 0.2, 0.01, [2]float64{12 << 10, math.Inf(1)})
}

func checkGolden(t *testing.T, f *figure.Figure) string {
	t.Helper()
	var buf bytes.Buffer
	if err := f.Encode(&buf, "svg"); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", f.Name+".golden.svg")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./analysis/figure -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("%s differs from %s; inspect the figure, then rerun with -update", f.Name, golden)
	}
	if out := os.Getenv("CBS_FIGURE_DIR"); out != "" {
		for _, format := range figure.Formats {
			if _, err := f.Save(out, format, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	return buf.String()
}

func TestGoldenOverhead(t *testing.T) {
	res := bracketed(t)
	if res.Primary.Censored != analysis.NotCensored {
		t.Fatalf("the bracketed ladder is censored: %s", res.Primary.Statement)
	}
	f, err := figure.Overhead(res, figure.Column)
	if err != nil {
		t.Fatal(err)
	}
	svg := checkGolden(t, f)
	for _, want := range []string{"1 + tau = 1.2", "CBS = " + runfmt.FormatTokens(float64(res.Primary.CBS)), "90% interval [2.15Ki, 2.83Ki]", "did not reach the loss"} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}

	cres := unbracketed(t)
	if cres.Primary.Censored != analysis.CensoredAbove {
		t.Fatalf("the unbracketed ladder is not censored above: %s", cres.Primary.Statement)
	}
	f, err = figure.Overhead(cres, figure.Column)
	if err != nil {
		t.Fatal(err)
	}
	f.Name += "_censored"
	svg = checkGolden(t, f)
	if !strings.HasPrefix(cres.Primary.Statement, "CBS >= 16Ki tokens") || !strings.Contains(svg, "CBS &gt;= 16Ki") {
		t.Errorf("the bound is not labelled as the statement words it: %q", cres.Primary.Statement)
	}
}

func TestGoldenCompare(t *testing.T) {
	f, err := figure.Compare([]figure.CompareInput{{Label: "ar", Result: bracketed(t)}, {Label: "mdm", Result: unbracketed(t)}}, figure.Full)
	if err != nil {
		t.Fatal(err)
	}
	svg := checkGolden(t, f)
	for _, want := range []string{"ar: CBS = 2.4Ki, 90% interval [2.15Ki, 2.83Ki]", "mdm: CBS &gt;= 16Ki, 90% interval [12Ki, inf]", "1 + tau = 1.2"} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if strings.Contains(svg, "eps") {
		t.Error("the comparison still draws a loss tolerance")
	}
}

// TestTrajectoryGolden: two arms at two branch points, one CBS censored above (a triangle at the
// bound), the bars of the arms that share a branch point set apart.
func TestTrajectoryGolden(t *testing.T) {
	ladder := []float64{1024, 2048, 4096, 8192, 16384}
	early := overheadResult(t, ladder, 4096, 0.2, 0.1, [2]float64{1500, 3500})
	late := overheadResult(t, ladder, 16384, 0.2, 0.1, [2]float64{2500, 9000})
	beyond := overheadResult(t, ladder, 1<<22, 0.2, 0.1, [2]float64{9000, math.Inf(1)})
	f, err := figure.Trajectory([]figure.TrajectoryInput{
		{Label: "ar", Points: []figure.TrajectoryPoint{{Tokens: 2.5 * (1 << 20), Result: early}, {Tokens: 4 << 20, Result: late}}},
		{Label: "mdm", Points: []figure.TrajectoryPoint{{Tokens: 2.5 * (1 << 20), Result: early}, {Tokens: 4 << 20, Result: beyond}}},
	}, figure.Full)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "cbs_vs_tokens" {
		t.Fatalf("name %q", f.Name)
	}
	checkGolden(t, f)
}
