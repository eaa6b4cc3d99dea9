package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"cbs/analysis/synth"
)

func TestReport(t *testing.T) {
	dir := analysisRun(t)
	// The title names the experiment the sweep recorded, not the directory.
	if err := os.WriteFile(filepath.Join(dir, "resolved.toml"), []byte("[experiment]\nname = \"ladder-study\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := analysisCLI(t, "report", dir, "--bootstrap", "20", "--eps-abs", "0.1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	path := strings.TrimSpace(stdout)
	if path != filepath.Join(dir, "report.md") {
		t.Fatalf("stdout %q", stdout)
	}
	md, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	report := string(md)
	if os.Getenv("CBS_REPORT_OUT") != "" {
		os.WriteFile(os.Getenv("CBS_REPORT_OUT"), md, 0o644)
	}
	// The primary estimate comes first, with its sensitivity and slope; the secondary estimators
	// after the plan.
	last := -1
	for _, want := range []string{"# Critical batch size: ladder-study\n", "## Primary estimate", "reference batch 8Ki needed", "**CBS = ", "90% interval [",
		"| batch (tokens) | replicates | tokens to L | overhead | interval |", "\n| 16Ki | 2 | ",
		"### Sensitivity", "| token_overhead | tau 0.2 | ", "### Loss slope", "per doubling of the batch",
		"## Plan", "| b0008Ki-r0 | 8Ki | 128 | 1 x 128 | 1024 | 8Mi | default 0.001 | 0 | done |",
		"## Secondary estimates", "Secondary:", "| tolerance rule (eps_abs 0.1) | CBS in [16Ki, 32Ki) tokens", "not the CBS", "## Figures"} {
		i := strings.Index(report, want)
		if i < 0 {
			t.Errorf("report lacks %q", want)
			continue
		}
		if i < last {
			t.Errorf("%q is out of order", want)
		}
		last = i
	}
	if strings.Contains(report, "Warning") {
		t.Error("two replicates per batch, yet the report warns")
	}
	// Every figure is linked by a relative path that exists.
	links := regexp.MustCompile(`!\[[^\]]*\]\(([^)]+)\)`).FindAllStringSubmatch(report, -1)
	drawn, _ := filepath.Glob(filepath.Join(dir, "figures", "*.svg"))
	if len(links) < 6 || len(links) != len(drawn) {
		t.Errorf("%d figures linked, %d drawn", len(links), len(drawn))
	}
	if !strings.Contains(report, "(figures/overhead_vs_batch.svg)\n\nToken overhead") {
		t.Error("the token-overhead figure is not linked with its caption")
	}
	for _, l := range links {
		if filepath.IsAbs(l[1]) {
			t.Errorf("absolute link %s", l[1])
		}
		if _, err := os.Stat(filepath.Join(dir, l[1])); err != nil {
			t.Errorf("linked figure missing: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "fit", "cbs.json")); err != nil {
		t.Error(err)
	}
}

// TestReportWarnsOneReplicate: with one replicate per batch the primary estimate's intervals
// miss seed-to-seed variation, and the report and stderr say so.
func TestReportWarnsOneReplicate(t *testing.T) {
	dir := t.TempDir()
	err := synth.Write(dir, synth.Spec{
		Batches:    []int64{8 << 10, 16 << 10, 32 << 10, 64 << 10},
		Replicates: 1,
		Budget:     4 << 20,
		EvalEvery:  256 << 10,
		Shards:     4,
		Bcrit:      32 << 10,
		EvalNoise:  0.003, ShardSpread: 0.02, TrainNoise: 0.05,
		Seed: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := analysisCLI(t, "report", dir, "--bootstrap", "10")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	const want = "one replicate at batch 8Ki, 16Ki, 32Ki, 64Ki: the intervals cover eval-set noise only"
	if !strings.Contains(string(md), "> **Warning:** "+want) {
		t.Errorf("report lacks the warning:\n%s", md)
	}
	if !strings.Contains(stderr, "warning: "+want) {
		t.Errorf("stderr lacks the warning: %s", stderr)
	}
}

// TestReportPartial: a report of an unfinished sweep says so in its title, at its top and in
// every figure it links.
func TestReportPartial(t *testing.T) {
	dir := unfinishedRun(t)
	code, _, stderr := analysisCLI(t, "report", dir, "--partial", "--bootstrap", "10")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	report := string(md)
	for _, want := range []string{"(partial)\n", "> **Partial:** 2 of 12 branches unfinished. The sweep was fitted before it finished",
		"> - b0128Ki-r1 (pending: not started, 0 of 8Mi tokens): left out, no metrics yet\n",
		"> - b0256Ki-r1 (running, 4Mi of 8Mi tokens): analysed as far as it got\n"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%.1500s", want, report)
		}
	}
	if i, j := strings.Index(report, "> **Partial:**"), strings.Index(report, "## Primary estimate"); i < 0 || i > j {
		t.Error("the partial warning does not come before the estimates")
	}
	svgs, _ := filepath.Glob(filepath.Join(dir, "figures", "*.svg"))
	if len(svgs) == 0 {
		t.Fatal("no figures")
	}
	for _, p := range svgs {
		if svg, _ := os.ReadFile(p); !strings.Contains(svgText(string(svg)), "partial: 2 of 12 branches unfinished") {
			t.Errorf("%s does not say that the fit is partial", filepath.Base(p))
		}
	}
}
