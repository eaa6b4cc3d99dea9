// Package study runs a reproducible study: the stages of an experiment.toml (training runs,
// sweeps, and comparisons of sweeps) in order, each sweep fitted, plotted and reported into a
// results directory, with the provenance of every stage. A run resumes where it stopped: stages
// whose outputs are complete are skipped and interrupted ones continue.
package study

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"cbs/branch"
)

// The kinds of error Run and Load return, for errors.Is; the message is the underlying error's.
var (
	// ErrUsage is a study file or stage config that cannot be run as written.
	ErrUsage = errors.New("study: bad study or config")
	// ErrFailed is a stage some of whose branches failed or diverged.
	ErrFailed = errors.New("study: some branches failed")
	// ErrInterrupted is a run stopped by its context; running it again continues it.
	ErrInterrupted = errors.New("study: interrupted")
)

// kindError is err, marked as one of the kinds above.
type kindError struct {
	kind, err error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

func usageErrorf(format string, args ...any) error {
	return &kindError{kind: ErrUsage, err: fmt.Errorf(format, args...)}
}

// Stage kinds.
const (
	KindTrain      = "train"
	KindSweep      = "sweep"
	KindCompare    = "compare"
	KindTrajectory = "trajectory"
	KindSpread     = "spread"
)

// Study is a study's experiment.toml: the stages of a reproducible study.
type Study struct {
	Name  string `toml:"name"`
	Title string `toml:"title"`
	// Runs names the directory under runs/ the stages write to (default: the study's name);
	// studies that share stages share it, so a shared stage runs once.
	Runs   string  `toml:"runs"`
	Stages []Stage `toml:"stage"`
	// Dir is the directory the study was read from; stage configs are relative to it.
	Dir string `toml:"-"`
}

// Stage is one step: a train run or a sweep, optionally starting from an earlier stage's
// checkpoint, or a comparison of earlier sweeps.
type Stage struct {
	Name   string `toml:"name"`
	Kind   string `toml:"kind"` // train, sweep, compare, trajectory or spread
	Config string `toml:"config"`
	Parent string `toml:"parent"` // name of an earlier train stage
	// Sweeps and Labels: the earlier sweep stages a compare stage draws on one figure (the
	// first is the denominator of the CBS ratios), or a trajectory stage draws against the
	// tokens each had trained when it branched (sweeps with the same label form one arm).
	Sweeps []string `toml:"sweeps"`
	// Runs: the earlier train stages a spread stage compares, with one label each in Labels;
	// the runs labelled like the first form the reference whose run-to-run spread the others'
	// eval-loss curves are placed in.
	Runs   []string `toml:"runs"`
	Labels []string `toml:"labels"`
}

// Load reads dir/experiment.toml and checks its stages. A missing study is an ErrUsage error
// that lists the studies beside it.
func Load(dir string) (*Study, error) {
	path := filepath.Join(dir, "experiment.toml")
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, usageErrorf("reproduce: no study %q (%s not found); studies: %s", filepath.Base(dir), path, strings.Join(studiesBeside(dir), ", "))
		}
		return nil, err
	}
	var s Study
	if err := branch.DecodeStrict(path, string(raw), &s, "study file"); err != nil {
		return nil, &kindError{kind: ErrUsage, err: err}
	}
	if err := s.check(path); err != nil {
		return nil, err
	}
	s.Dir = dir
	return &s, nil
}

// studiesBeside names the studies in dir's parent directory.
func studiesBeside(dir string) []string {
	entries, _ := os.ReadDir(filepath.Dir(dir))
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(filepath.Dir(dir), e.Name(), "experiment.toml")); err == nil {
			names = append(names, e.Name())
		}
	}
	return names
}

// check refuses a stage without a name or a config, of an unknown kind, or naming a parent or
// sweeps that are not earlier stages of the right kind.
func (s *Study) check(path string) error {
	seen := map[string]string{}
	for i, st := range s.Stages {
		switch {
		case st.Name == "":
			return usageErrorf("%s: stage[%d].name is required", path, i)
		case st.Kind != KindTrain && st.Kind != KindSweep && st.Kind != KindCompare && st.Kind != KindTrajectory && st.Kind != KindSpread:
			return usageErrorf("%s: stage[%d].kind = %q, want train, sweep, compare, trajectory or spread", path, i, st.Kind)
		case st.Kind == KindSpread:
			if err := checkSpread(st, seen); err != nil {
				return usageErrorf("%s: stage[%d]: %v", path, i, err)
			}
		case st.Kind == KindCompare || st.Kind == KindTrajectory:
			if len(st.Sweeps) < 2 || len(st.Labels) != len(st.Sweeps) {
				return usageErrorf("%s: stage[%d]: a %s stage needs two or more sweeps and one label each", path, i, st.Kind)
			}
			for _, name := range st.Sweeps {
				if seen[name] != KindSweep {
					return usageErrorf("%s: stage[%d].sweeps: %q is not an earlier sweep stage", path, i, name)
				}
			}
		case st.Config == "":
			return usageErrorf("%s: stage[%d].config is required", path, i)
		case st.Parent != "" && seen[st.Parent] != KindTrain:
			return usageErrorf("%s: stage[%d].parent = %q, want the name of an earlier train stage", path, i, st.Parent)
		}
		seen[st.Name] = st.Kind
	}
	if len(s.Stages) == 0 {
		return usageErrorf("%s: no [[stage]] tables", path)
	}
	return nil
}
