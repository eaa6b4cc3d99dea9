package study

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"cbs/analysis"
	"cbs/analysis/figure"
	"cbs/internal/atomicio"
	"cbs/runfmt"
)

// compareStage draws a compare or trajectory stage from earlier sweeps' fits into dir and
// returns its summary: the figure, and for a compare stage compare.json with the CBS ratios.
func compareStage(st Stage, results map[string]*analysis.Result, branchTokens map[string]float64, dir string) (string, error) {
	var f *figure.Figure
	var table string
	var cmp *comparison
	var err error
	switch st.Kind {
	case KindCompare:
		var in []figure.CompareInput
		for i, name := range st.Sweeps {
			in = append(in, figure.CompareInput{Label: st.Labels[i], Result: results[name]})
		}
		if f, err = figure.Compare(in, figure.Full); err != nil {
			return "", err
		}
		var c comparison
		table, c = compareTable(in)
		cmp = &c
	default:
		var in []figure.TrajectoryInput
		arm := map[string]int{}
		for i, name := range st.Sweeps {
			k, ok := arm[st.Labels[i]]
			if !ok {
				k = len(in)
				arm[st.Labels[i]] = k
				in = append(in, figure.TrajectoryInput{Label: st.Labels[i]})
			}
			in[k].Points = append(in[k].Points, figure.TrajectoryPoint{Tokens: branchTokens[name], Result: results[name]})
		}
		if f, err = figure.Trajectory(in, figure.Full); err != nil {
			return "", err
		}
		table = trajectoryTable(in)
	}
	paths, err := saveStageFigure(f, dir)
	if err != nil {
		return "", err
	}
	if cmp != nil {
		if err := writeJSONFile(filepath.Join(dir, "compare.json"), cmp); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("== %s\n%s\nfigures:\n  %s", st.Name, table, strings.Join(paths, "\n  ")), nil
}

// comparison is a compare stage's compare.json: each sweep's primary estimate and its CBS over
// the first sweep's, with a bootstrap interval.
type comparison struct {
	Reference string          `json:"reference"`
	Sweeps    []comparedSweep `json:"sweeps"`
}

type comparedSweep struct {
	Label   string               `json:"label"`
	Primary *analysis.PrimaryFit `json:"primary"`
	Ratio   *analysis.RatioFit   `json:"ratio_to_reference,omitempty"`
}

// compareTable is each compared sweep's token-overhead CBS and its ratio to the first sweep's,
// one line each, and the same as JSON.
func compareTable(in []figure.CompareInput) (string, comparison) {
	var b strings.Builder
	cmp := comparison{Reference: in[0].Label}
	for i, c := range in {
		p := c.Result.Primary
		cs := comparedSweep{Label: c.Label, Primary: p}
		switch {
		case p == nil:
			fmt.Fprintf(&b, "%-12s no token-overhead CBS\n", c.Label)
		default:
			fmt.Fprintf(&b, "%-12s %s\n", c.Label, p.Statement)
		}
		if i > 0 {
			r := analysis.CBSRatio(p, in[0].Result.Primary, c.Result.Options.Level)
			cs.Ratio = &r
			fmt.Fprintf(&b, "%-12s CBS %s / %s: %s\n", "", c.Label, in[0].Label, r.Statement)
		}
		cmp.Sweeps = append(cmp.Sweeps, cs)
	}
	return strings.TrimRight(b.String(), "\n"), cmp
}

// trajectoryTable is each arm's CBS at each branch point, one line each.
func trajectoryTable(in []figure.TrajectoryInput) string {
	var b strings.Builder
	for _, arm := range in {
		for _, pt := range arm.Points {
			st := "no token-overhead CBS"
			if p := pt.Result.Primary; p != nil {
				st = p.Statement
			}
			fmt.Fprintf(&b, "%-12s at %s tokens: %s\n", arm.Label, runfmt.FormatTokens(pt.Tokens), st)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// saveStageFigure writes a comparison-stage figure as SVG and PNG into dir.
func saveStageFigure(f *figure.Figure, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, format := range []string{"svg", "png"} {
		path, err := f.Save(dir, format, nil)
		if err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicio.WriteFile(path, append(b, '\n'), 0o644)
}
