package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReproduceQuickstart runs the quickstart study shrunk 4x and checks that the fit table,
// the figures, the report and the provenance are produced (not their numbers).
func TestReproduceQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model and a sweep (about a minute)")
	}
	dir := t.TempDir()
	runs, results := filepath.Join(dir, "runs"), filepath.Join(dir, "results")
	args := []string{"reproduce", "quickstart", "--scale", "0.25", "--experiments", "../../experiments", "--runs", runs, "--results", results}
	code, stdout, stderr := cbs(t, args...)
	if code != 0 {
		t.Fatalf("reproduce exited %d\n%s", code, stderr)
	}
	res := filepath.Join(results, "quickstart-x0.25")
	for _, f := range []string{"sweep/cbs.json", "sweep/report.md", "sweep/figures/loss_vs_tokens.svg",
		"sweep/figures/final_loss_vs_batch.png", "sweep/figures/loss_vs_tokens.svg.json", "provenance.json",
		"sweep/run/resolved.toml", "sweep/run/manifest.json", "sweep/run/branches/b1Ki-r0/metrics.jsonl"} {
		if _, err := os.Stat(filepath.Join(res, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	var fit struct {
		Tolerance *struct {
			Statement string `json:"statement"`
		} `json:"tolerance"`
	}
	b, _ := os.ReadFile(filepath.Join(res, "sweep", "cbs.json"))
	if err := json.Unmarshal(b, &fit); err != nil || fit.Tolerance == nil || fit.Tolerance.Statement == "" {
		t.Errorf("cbs.json has no tolerance-rule estimate: %v", err)
	}
	if !strings.Contains(stdout, "tolerance rule") || !strings.Contains(stdout, "figures:") {
		t.Errorf("the summary lacks the estimate or the figure paths:\n%s", stdout)
	}
	// The kept records are enough to fit again.
	if code, _, stderr := cbs(t, "fit", filepath.Join(res, "sweep", "run"), "--out", filepath.Join(dir, "refit.json")); code != 0 {
		t.Errorf("cbs fit on the kept records: exit %d\n%s", code, stderr)
	}
	var prov struct {
		Stages []struct {
			Name   string  `json:"name"`
			TrainS float64 `json:"train_s"`
		} `json:"stages"`
	}
	b, _ = os.ReadFile(filepath.Join(res, "provenance.json"))
	if json.Unmarshal(b, &prov); len(prov.Stages) != 2 || prov.Stages[0].TrainS <= 0 || prov.Stages[1].TrainS <= 0 {
		t.Errorf("provenance stages %+v: want both with their training time", prov.Stages)
	}
	// A second run skips every stage and still writes the results.
	code, _, stderr = cbs(t, args...)
	if code != 0 || !strings.Contains(stderr, "skipped") || !strings.Contains(stderr, "already finished") {
		t.Errorf("rerun: exit %d\n%s", code, stderr)
	}
	// --refit needs no run directory: the kept records give the same fit, and the provenance
	// keeps the recorded training times.
	before, _ := os.ReadFile(filepath.Join(res, "sweep", "cbs.json"))
	if err := os.RemoveAll(runs); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = cbs(t, append(args, "--refit")...)
	if code != 0 {
		t.Fatalf("reproduce --refit: exit %d\n%s", code, stderr)
	}
	after, _ := os.ReadFile(filepath.Join(res, "sweep", "cbs.json"))
	var a, b2 map[string]any
	json.Unmarshal(before, &a)
	json.Unmarshal(after, &b2)
	delete(a, "source")
	delete(b2, "source")
	if ja, _ := json.Marshal(a); string(ja) != func() string { jb, _ := json.Marshal(b2); return string(jb) }() {
		t.Error("the refit from the kept records differs from the fit of the run")
	}
	b, _ = os.ReadFile(filepath.Join(res, "provenance.json"))
	var refit struct {
		Refit  bool `json:"refit"`
		Stages []struct {
			TrainS float64 `json:"train_s"`
		} `json:"stages"`
	}
	if json.Unmarshal(b, &refit); !refit.Refit || len(refit.Stages) != 2 || refit.Stages[0].TrainS <= 0 || refit.Stages[1].TrainS <= 0 {
		t.Errorf("refit provenance %s", b)
	}
	if _, err := os.Stat(runs); err == nil {
		t.Error("--refit created the run directory")
	}
}

func TestReproduceUnknownStudy(t *testing.T) {
	code, _, stderr := cbs(t, "reproduce", "nonesuch", "--experiments", "../../experiments")
	if code != exitUsage || !strings.Contains(stderr, "quickstart") {
		t.Errorf("exit %d, %q: want 2 listing the studies", code, stderr)
	}
	code, _, stderr = cbs(t, "reproduce", "quickstart", "--scale", "0.3", "--experiments", "../../experiments")
	if code != exitUsage || !strings.Contains(stderr, "power of two") {
		t.Errorf("--scale 0.3: exit %d, %q", code, stderr)
	}
}
