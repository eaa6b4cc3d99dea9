// Package report turns a sweep's run records, or a table from any trainer, into what cbs writes
// about them: the fit (cbs.json and plain-text tables), the figures and the Markdown report. The
// verbs fit, plot and report and a study's sweep stages share it, so that each writes the same
// bytes for the same records.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/BurntSushi/toml"

	"cbs/analysis"
	"cbs/branch"
	"cbs/internal/atomicio"
	"cbs/sweep"
)

// SweepOptions reads the [analysis] table a sweep recorded in runDir/resolved.toml, so that
// `cbs fit RUN_DIR` analyses a sweep the way its config asked; ok is false when there is none.
// The reference batch is the sweep's branches.reference_batch, the batch its learning rates were
// tuned at, so that overheads are measured against the run the others were scaled from; when
// that batch is not on the ladder no curve exists to measure against, and the smallest batch is
// used instead.
func SweepOptions(runDir string) (analysis.Options, bool) {
	raw, err := os.ReadFile(filepath.Join(runDir, sweep.ResolvedFile))
	if err != nil {
		return analysis.Options{}, false
	}
	var c struct {
		Experiment branch.Experiment `toml:"experiment"`
		Branches   struct {
			BatchSizes     []branch.Tokens `toml:"batch_sizes"`
			ReferenceBatch branch.Tokens   `toml:"reference_batch"`
		} `toml:"branches"`
		Analysis sweep.AnalysisTable `toml:"analysis"`
	}
	c.Analysis = sweep.DefaultAnalysis() // for the keys an older or foreign resolved.toml lacks
	if _, err := toml.Decode(string(raw), &c); err != nil {
		return analysis.Options{}, false
	}
	ref := 0.0
	for _, b := range c.Branches.BatchSizes {
		if b == c.Branches.ReferenceBatch && b > 0 {
			ref = float64(b)
		}
	}
	return c.Analysis.Options(c.Experiment.Seed, ref), true
}

// Fit loads a run directory, or the CSV table table names when it is not empty, and runs the
// estimators; codeVersion is recorded in the result. A sweep with unfinished branches is refused
// unless partial is set: it is then fitted as far as its branches got, and the result is marked
// partial.
func Fit(runDir, table string, opts analysis.Options, partial bool, codeVersion string) (*analysis.Run, *analysis.Data, *analysis.Result, error) {
	if table != "" {
		d, err := analysis.ReadTableFile(table)
		if err != nil {
			return nil, nil, nil, err
		}
		res, err := analysis.Analyze(d, opts, codeVersion)
		return nil, d, res, err
	}
	run, err := analysis.LoadRun(runDir)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(run.Unfinished) > 0 && (!partial || len(run.Branches) == 0) {
		return nil, nil, nil, unfinishedError(run)
	}
	d, res, err := analysis.FitRun(run, opts, codeVersion)
	return run, d, res, err
}

// unfinishedError refuses to fit a sweep some of whose branches have not finished. Their curves
// stop short, so the comparison mark, the loss level and every estimate would quietly describe
// an earlier point of training than the sweep was planned for.
func unfinishedError(run *analysis.Run) error {
	var b strings.Builder
	if len(run.Branches) == 0 {
		fmt.Fprintf(&b, "%s: no branch has metrics yet; %d of %d branches unfinished:\n", run.Dir, len(run.Unfinished), run.Total)
	} else {
		verb := "are"
		if len(run.Unfinished) == 1 {
			verb = "is"
		}
		fmt.Fprintf(&b, "%s: the sweep is unfinished; %d of %d branches %s not done:\n", run.Dir, len(run.Unfinished), run.Total, verb)
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, u := range run.Unfinished {
		state := u.State
		if u.Reason != "" {
			state += " (" + u.Reason + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", u.ID, state, u.Progress())
	}
	tw.Flush()
	fmt.Fprintf(&b, "finish the sweep first: cbs sweep --config FILE resumes it (cbs status %s shows how far it got)", run.Dir)
	if len(run.Branches) > 0 {
		b.WriteString(", or fit what is there with --partial")
	}
	return errors.New(b.String())
}

// WriteJSON writes the result as indented JSON (cbs.json), creating its directory.
func WriteJSON(path string, res *analysis.Result) error {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := mkdirFor(path); err != nil {
		return err
	}
	return atomicio.WriteFile(path, append(data, '\n'), 0o644)
}

func mkdirFor(path string) error { return os.MkdirAll(filepath.Dir(path), 0o755) }
