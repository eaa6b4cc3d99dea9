package study

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpreadStage: a spread stage reads its runs' eval losses, writes spread.json and the
// figure, and a refit draws the same from spread.json alone.
func TestSpreadStage(t *testing.T) {
	dir := t.TempDir()
	runs := map[string][]float64{
		"a": {3.0, 2.0, 1.0}, "b": {3.2, 2.2, 1.2}, "c": {3.1, 2.1, 1.1}, "x": {3.05, 2.3, 1.1},
	}
	outs := map[string]string{}
	for name, losses := range runs {
		out := filepath.Join(dir, "runs", name)
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		var lines []string
		for i, l := range losses {
			// A training line without eval keys between the eval marks is skipped.
			lines = append(lines, fmt.Sprintf(`{"tokens":%d,"step":%d,"lr":0.001,"train_loss":4}`, 512*(2*i+1), 2*i+1))
			lines = append(lines, fmt.Sprintf(`{"tokens":%d,"step":%d,"lr":0.001,"train_loss":4,"eval_loss":%v}`, 1024*(i+1), 2*i+2, l))
		}
		if err := os.WriteFile(filepath.Join(out, "metrics.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		outs[name] = out
	}
	st := Stage{Name: "spread", Kind: KindSpread, Runs: []string{"a", "b", "c", "x"}, Labels: []string{"fp32", "fp32", "fp32", "bf16"}}
	res := filepath.Join(dir, "results", "spread")
	summary, err := spreadStage(st, outs, false, res)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"3 runs, 3 eval marks: replicates stray up to 0.1", "bf16         x: inside [min, max] at 2 of 3 marks, up to 0.2", "(outside the spread); closest to b (up to 0.15 apart)"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	var rec spreadRecord
	raw, err := os.ReadFile(filepath.Join(res, "spread.json"))
	if err == nil {
		err = json.Unmarshal(raw, &rec)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Checks) != 1 || rec.Checks[0].Inside != 2 || rec.Checks[0].WithinSpread || len(rec.Groups) != 2 {
		t.Errorf("spread.json: %+v", rec)
	}
	for _, f := range []string{"loss_spread.svg", "loss_spread.png"} {
		if _, err := os.Stat(filepath.Join(res, f)); err != nil {
			t.Error(err)
		}
	}
	again, err := spreadStage(st, nil, true, res)
	if err != nil || again != summary {
		t.Errorf("refit: %v\n%s\nwant\n%s", err, again, summary)
	}
}
