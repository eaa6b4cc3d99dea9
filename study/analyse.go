package study

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"cbs/analysis"
	"cbs/analysis/figure"
	"cbs/internal/atomicio"
	"cbs/report"
	"cbs/sweep"
)

// analyse fits, plots and reports the sweep in runDir (its run directory, or the run records
// kept under results) into resDir with the [analysis] options the sweep recorded, then calls
// keep, when given, to keep the run records.
func (r *runner) analyse(runDir, resDir, fingerprint string, keep func() error) (summary, fp string, fit *analysis.Result, err error) {
	opts, ok := report.SweepOptions(runDir)
	if !ok {
		return "", "", nil, fmt.Errorf("%s holds no sweep (no readable %s): run the study without --refit", runDir, sweep.ResolvedFile)
	}
	run, d, res, err := report.Fit(runDir, "", opts, false, r.o.CodeVersion)
	if err != nil {
		return "", "", nil, fmt.Errorf("fit %s: %w", runDir, err)
	}
	paths := []string{filepath.Join(resDir, "cbs.json")}
	if keep != nil {
		paths = append(paths, filepath.Join(runDir, "fit", "cbs.json"))
	}
	for _, path := range paths {
		if err := report.WriteJSON(path, res); err != nil {
			return "", "", nil, err
		}
	}
	figDir := filepath.Join(resDir, "figures")
	paths, skipped, err := report.Figures(run, d, res, figDir, "svg", figure.Full, r.o.Log)
	if err != nil {
		return "", "", nil, err
	}
	pngs, _, err := report.Figures(run, d, res, figDir, "png", figure.Full, io.Discard)
	if err != nil {
		return "", "", nil, err
	}
	var rep strings.Builder
	report.WriteMarkdown(&rep, run, res, paths, skipped, resDir)
	reportPath := filepath.Join(resDir, "report.md")
	if err := atomicio.WriteFile(reportPath, []byte(rep.String()), 0o644); err != nil {
		return "", "", nil, err
	}
	if keep != nil {
		if err := keep(); err != nil {
			return "", "", nil, err
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "== %s\n", runDir)
	report.WriteText(&sb, res)
	fmt.Fprintf(&sb, "\nreport:  %s\nfit:     %s\nfigures:\n", reportPath, filepath.Join(resDir, "cbs.json"))
	for i := range paths {
		fmt.Fprintf(&sb, "  %s\n", paths[i])
		if i < len(pngs) {
			fmt.Fprintf(&sb, "  %s\n", pngs[i])
		}
	}
	return sb.String(), fingerprint, res, nil
}
