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
	// A second run skips every stage and writes the same results, byte for byte: a rerun that
	// reproduces the numbers leaves a checkout clean.
	snapshot := func() map[string]string {
		files := map[string]string{}
		filepath.WalkDir(res, func(path string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				b, _ := os.ReadFile(path)
				files[path] = string(b)
			}
			return nil
		})
		return files
	}
	first := snapshot()
	code, _, stderr = cbs(t, args...)
	if code != 0 || !strings.Contains(stderr, "skipped") || !strings.Contains(stderr, "already finished") {
		t.Errorf("rerun: exit %d\n%s", code, stderr)
	}
	for path, b := range snapshot() {
		if first[path] != b {
			t.Errorf("the rerun rewrote %s", path)
		}
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

// TestReproduceCompareAndTrajectory: a study with two branch points compares its sweeps (CBS
// ratios with intervals in compare.json) and draws the CBS against the tokens trained at each
// branch point, read from the parents' checkpoints.
func TestReproduceCompareAndTrajectory(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model and two sweeps")
	}
	dir := t.TempDir()
	study := filepath.Join(dir, "experiments", "two-points")
	if err := os.MkdirAll(study, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"base.toml", "sweep.toml"} {
		b, err := os.ReadFile(filepath.Join("../../experiments/quickstart", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(study, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The base continued: a later branch point of the same model.
	more := strings.Replace(mustRead(t, filepath.Join(study, "base.toml")), "[model]", "[parent]\ncheckpoint = \"unused\"\noptimizer_state = \"keep\"\n\n[model-unused]", 1)
	more = more[:strings.Index(more, "[model-unused]")] + more[strings.Index(more, "[objective]"):]
	more = strings.Replace(more, `warmup = "64Ki"`, `warmup = "0"`, 1)
	writeConfig(t, study, "more.toml", more)
	writeConfig(t, study, "experiment.toml", `name = "two-points"
[[stage]]
name = "base"
kind = "train"
config = "base.toml"
[[stage]]
name = "sweep-early"
kind = "sweep"
config = "sweep.toml"
parent = "base"
[[stage]]
name = "more"
kind = "train"
config = "more.toml"
parent = "base"
[[stage]]
name = "sweep-late"
kind = "sweep"
config = "sweep.toml"
parent = "more"
[[stage]]
name = "compare"
kind = "compare"
sweeps = ["sweep-early", "sweep-late"]
labels = ["early", "late"]
[[stage]]
name = "trajectory"
kind = "trajectory"
sweeps = ["sweep-early", "sweep-late"]
labels = ["mdm", "mdm"]
`)
	runs, results := filepath.Join(dir, "runs"), filepath.Join(dir, "results")
	code, stdout, stderr := cbs(t, "reproduce", "two-points", "--scale", "0.25", "--experiments", filepath.Join(dir, "experiments"), "--runs", runs, "--results", results)
	if code != 0 {
		t.Fatalf("reproduce exited %d\n%s", code, stderr)
	}
	res := filepath.Join(results, "two-points-x0.25")
	for _, f := range []string{"compare/cbs_compare.svg", "compare/compare.json", "trajectory/cbs_vs_tokens.svg", "trajectory/cbs_vs_tokens.png.json"} {
		if _, err := os.Stat(filepath.Join(res, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	var cmp struct {
		Reference string `json:"reference"`
		Sweeps    []struct {
			Label string          `json:"label"`
			Ratio json.RawMessage `json:"ratio_to_reference"`
		} `json:"sweeps"`
	}
	if err := json.Unmarshal([]byte(mustRead(t, filepath.Join(res, "compare", "compare.json"))), &cmp); err != nil || cmp.Reference != "early" || len(cmp.Sweeps) != 2 || len(cmp.Sweeps[1].Ratio) == 0 {
		t.Errorf("compare.json: %+v, %v", cmp, err)
	}
	var prov struct {
		Stages []struct {
			Name         string   `json:"name"`
			BranchTokens *float64 `json:"branch_tokens"`
		} `json:"stages"`
	}
	json.Unmarshal([]byte(mustRead(t, filepath.Join(res, "provenance.json"))), &prov)
	tokens := map[string]float64{}
	for _, s := range prov.Stages {
		if s.BranchTokens != nil {
			tokens[s.Name] = *s.BranchTokens
		}
	}
	// The base trains 256Ki tokens at this scale and the continuation as many again.
	if tokens["sweep-early"] != 256<<10 || tokens["sweep-late"] != 512<<10 {
		t.Errorf("branch-point tokens %v, want 256Ki and 512Ki", tokens)
	}
	if !strings.Contains(stdout, "CBS late / early") || !strings.Contains(stdout, "mdm") {
		t.Errorf("summary lacks the ratio or the trajectory:\n%s", stdout)
	}
}
