package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestPlotRunDir(t *testing.T) {
	dir := analysisRun(t)
	code, stdout, stderr := analysisCLI(t, "plot", dir, "--bootstrap", "20", "--eps", "0.1", "--format", "png")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	paths := strings.Fields(stdout)
	if len(paths) != 6 {
		t.Fatalf("wrote %v; stderr %s", paths, stderr)
	}
	if filepath.Base(paths[0]) != "overhead_vs_batch.png" {
		t.Errorf("the primary figure is not first: %v", paths)
	}
	for _, p := range paths {
		if filepath.Dir(p) != filepath.Join(dir, "figures") || filepath.Ext(p) != ".png" {
			t.Errorf("figure at %s", p)
		}
		for _, f := range []string{p, p + ".json"} {
			if st, err := os.Stat(f); err != nil || st.Size() == 0 {
				t.Errorf("%s: %v", f, err)
			}
		}
	}
}

func TestPlotTableSkipsWithReasons(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "s.csv")
	os.WriteFile(csv, []byte("batch_size,steps\n8Ki,12000\n16Ki,7000\n32Ki,4500\n64Ki,3250\n"), 0o644)
	code, stdout, stderr := analysisCLI(t, "plot", "--table", csv, "--out", filepath.Join(dir, "figs"), "--bootstrap", "10")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.TrimSpace(stdout) != filepath.Join(dir, "figs", "steps_vs_tokens.svg") {
		t.Errorf("stdout %q", stdout)
	}
	if !strings.Contains(stderr, "skipped loss_vs_tokens: no loss curves in the input") {
		t.Errorf("stderr %q", stderr)
	}
}

func TestPlotRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"plot", dir, "--format", "gif"}, 2, `--format "gif": allowed svg, png, pdf`},
		{[]string{"plot", dir, "--width", "wide"}, 2, `--width "wide": allowed column, full`},
		{[]string{"plot", "--table", "x.csv"}, 2, "--table needs --out DIR"},
		{[]string{"plot", dir}, 1, "no branches directory"},
		{[]string{"report"}, 2, "report takes one RUN_DIR, got 0 arguments"},
		{[]string{"fit", "a", "b"}, 2, "fit takes one RUN_DIR, got 2 arguments"},
		{[]string{"report", dir}, 1, "no branches directory"},
	} {
		code, _, stderr := analysisCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d with %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// TestPlotPartial: with --partial every figure says that the sweep was unfinished.
func TestPlotPartial(t *testing.T) {
	dir := unfinishedRun(t)
	code, stdout, stderr := analysisCLI(t, "plot", dir, "--partial", "--bootstrap", "10")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	paths := strings.Fields(stdout)
	if len(paths) != 6 {
		t.Fatalf("wrote %v; stderr %s", paths, stderr)
	}
	for _, p := range paths {
		svg, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(svgText(string(svg)), "partial: 2 of 12 branches unfinished (b0128Ki-r1 at 0 of 8Mi tokens, b0256Ki-r1 at 4Mi of 8Mi tokens)") {
			t.Errorf("%s does not say that the fit is partial", filepath.Base(p))
		}
	}
	if !strings.Contains(stderr, "warning: partial: 2 of 12 branches unfinished") {
		t.Errorf("stderr: %s", stderr)
	}
}

// svgText is the text of an SVG's text elements, in order, with lines wrapped in the figure
// joined again.
func svgText(svg string) string {
	var parts []string
	for _, m := range regexp.MustCompile(`>([^<>]*)</text>`).FindAllStringSubmatch(svg, -1) {
		parts = append(parts, m[1])
	}
	return strings.Join(strings.Fields(strings.Join(parts, " ")), " ")
}
