package figure

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"cbs/analysis"
)

func ladderResult(losses []float64, lower, upper float64) *analysis.Result {
	res := &analysis.Result{Tolerance: &analysis.ToleranceFit{Eps: 0.01, Lower: analysis.Num(lower), Upper: analysis.Num(upper)}}
	for i, l := range losses {
		res.Ladder = append(res.Ladder, analysis.LadderRow{Batch: float64(int(1024) << i), Replicates: 1,
			Loss: analysis.Num(l), LossMin: analysis.Num(l), LossMax: analysis.Num(l)})
	}
	return res
}

func TestCompare(t *testing.T) {
	ar := ladderResult([]float64{1.50, 1.505, 1.53, 1.58}, 2048, 4096)
	mdm := ladderResult([]float64{2.10, 2.102, 2.104, 2.108}, 8192, analysisInf())
	f, err := Compare([]CompareInput{{"ar", ar}, {"mdm", mdm}}, Full)
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
	for _, want := range []string{"ar: CBS in [2K, 4K)", "mdm: CBS &gt;= 8K", "tolerance eps = 0.01"} {
		if !strings.Contains(a.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if _, err := Compare([]CompareInput{{"ar", ar}}, Full); err == nil {
		t.Error("a comparison of one sweep was accepted")
	}
}

func analysisInf() float64 { return math.Inf(1) }

func TestLinearTicksAreDistinct(t *testing.T) {
	for _, r := range [][2]float64{{3.08, 3.21}, {0, 1}, {2.03, 2.06}, {-0.01, 0.09}, {1200, 5400}} {
		seen := map[string]bool{}
		labels := 0
		for _, tk := range (linTicks{}).Ticks(r[0], r[1]) {
			if tk.Label == "" {
				continue
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
