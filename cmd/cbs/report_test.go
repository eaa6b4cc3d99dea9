package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	dir := analysisRun(t)
	code, stdout, stderr := analysisCLI(t, "report", dir, "--bootstrap", "20", "--eps", "0.1")
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
	for _, want := range []string{"## Plan", "| b0008Ki-r0 | 8Ki | 128 | 1 x 128 | 1024 | 8Mi | default 0.001 | 0 | done |",
		"## Estimates", "| tolerance rule (eps 0.1) | CBS in [16Ki, 32Ki) tokens", "not the CBS", "## Figures"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// Every figure is linked by a relative path that exists.
	links := regexp.MustCompile(`!\[[^\]]*\]\(([^)]+)\)`).FindAllStringSubmatch(report, -1)
	if len(links) != 5 {
		t.Errorf("%d figures linked", len(links))
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
