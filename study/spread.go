package study

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"cbs/analysis"
	"cbs/analysis/figure"
	"cbs/runfmt"
)

// checkSpread refuses a spread stage whose runs are not earlier train stages with one label
// each, or whose reference (the runs labelled like the first) has fewer than two runs or
// leaves nothing to compare.
func checkSpread(st Stage, seen map[string]string) error {
	if len(st.Labels) != len(st.Runs) {
		return fmt.Errorf("a spread stage needs one label per run (%d runs, %d labels)", len(st.Runs), len(st.Labels))
	}
	ref := 0
	for i, name := range st.Runs {
		if seen[name] != KindTrain {
			return fmt.Errorf("runs: %q is not an earlier train stage", name)
		}
		if st.Labels[i] == st.Labels[0] {
			ref++
		}
	}
	if len(st.Runs) == 0 {
		return errors.New("a spread stage needs runs: two or more reference runs (labelled like the first) and one or more labelled otherwise")
	}
	if ref < 2 || ref == len(st.Runs) {
		return fmt.Errorf("a spread stage needs two or more runs labelled %q (the reference) and one or more labelled otherwise", st.Labels[0])
	}
	return nil
}

// spreadRecord is a spread stage's spread.json: the reference band, where each other run lies
// in it, and every curve compared (a refit draws again from these).
type spreadRecord struct {
	Band   analysis.Band          `json:"band"`
	Checks []analysis.SpreadCheck `json:"checks"`
	Groups []analysis.CurveGroup  `json:"groups"`
}

// spreadStage places the eval-loss curves of a spread stage's runs in the run-to-run spread of
// its reference runs, writes spread.json and the figure into dir, and returns its summary. A
// refit reads the curves from the spread.json already in dir.
func spreadStage(st Stage, outs map[string]string, refit bool, dir string) (string, error) {
	groups, err := spreadGroups(st, outs, refit, dir)
	if err != nil {
		return "", err
	}
	band, err := analysis.NewBand(groups[0])
	if err != nil {
		return "", err
	}
	rec := spreadRecord{Band: band, Groups: groups}
	var b strings.Builder
	fmt.Fprintf(&b, "%-12s %d runs, %d eval marks: replicates stray up to %.4g from their mean\n", band.Label, len(groups[0].Curves), len(band.Tokens), band.MaxDeviation)
	for _, g := range groups[1:] {
		for _, c := range g.Curves {
			s, err := band.Check(g.Label, c, groups[0].Curves)
			if err != nil {
				return "", err
			}
			rec.Checks = append(rec.Checks, s)
			within := "within the spread"
			if !s.WithinSpread {
				within = "outside the spread"
			}
			fmt.Fprintf(&b, "%-12s %s: inside [min, max] at %d of %d marks, up to %.4g from the %s mean (%s); closest to %s (up to %.4g apart)\n",
				g.Label, c.Run, s.Inside, s.Marks, s.MaxDeviation, band.Label, within, s.Closest, s.ClosestDiff)
		}
	}
	f, err := figure.Spread(band, groups[0].Curves, groups[1:], figure.Full)
	if err != nil {
		return "", err
	}
	paths, err := saveStageFigure(f, dir)
	if err != nil {
		return "", err
	}
	if err := writeJSONFile(filepath.Join(dir, "spread.json"), rec); err != nil {
		return "", err
	}
	return fmt.Sprintf("== %s\n%s\nfigures:\n  %s", st.Name, strings.TrimRight(b.String(), "\n"), strings.Join(paths, "\n  ")), nil
}

// spreadGroups reads each run's eval-loss curve and groups the runs by label, the reference
// first.
func spreadGroups(st Stage, outs map[string]string, refit bool, dir string) ([]analysis.CurveGroup, error) {
	if refit {
		var rec spreadRecord
		raw, err := os.ReadFile(filepath.Join(dir, "spread.json"))
		if err == nil {
			err = json.Unmarshal(raw, &rec)
		}
		if err != nil {
			return nil, fmt.Errorf("refit of spread stage %s: %w (reproduce must have made it first)", st.Name, err)
		}
		return rec.Groups, nil
	}
	var groups []analysis.CurveGroup
	index := map[string]int{}
	for i, name := range st.Runs {
		c, err := evalCurve(name, filepath.Join(outs[name], runfmt.MetricsFile))
		if err != nil {
			return nil, err
		}
		k, ok := index[st.Labels[i]]
		if !ok {
			k = len(groups)
			index[st.Labels[i]] = k
			groups = append(groups, analysis.CurveGroup{Label: st.Labels[i]})
		}
		groups[k].Curves = append(groups[k].Curves, c)
	}
	return groups, nil
}

// evalCurve is the eval loss at each eval mark of the run whose metrics are at path.
func evalCurve(name, path string) (analysis.Curve, error) {
	recs, err := analysis.ReadMetricsFile(path)
	if err != nil {
		return analysis.Curve{}, err
	}
	c := analysis.Curve{Run: name}
	for _, r := range recs {
		if r.EvalLoss != nil {
			c.Tokens = append(c.Tokens, float64(r.Tokens))
			c.Loss = append(c.Loss, *r.EvalLoss)
		}
	}
	if len(c.Tokens) == 0 {
		return c, errors.New(path + ": no eval loss (the run evaluated nothing)")
	}
	return c, nil
}
