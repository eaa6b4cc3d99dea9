package study

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"

	"cbs/analysis"
	"cbs/branch"
	"cbs/internal/atomicio"
	"cbs/model"
	"cbs/runfmt"
	"cbs/sweep"
)

// stageRecord is the provenance of one stage.
type stageRecord struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Config string `json:"config"`
	Out    string `json:"out"`
	// TrainS is the training wall time recorded in the stage's runs (perf.jsonl), summed over
	// branches: what the stage cost when it ran, even when this invocation skipped it.
	TrainS   float64 `json:"train_s"`
	Results  string  `json:"results,omitempty"`
	Fingerpr string  `json:"config_fingerprint,omitempty"`
	// BranchTokens is, for a sweep, the training tokens of its parent at the branch point.
	BranchTokens analysis.Num `json:"branch_tokens,omitempty"`
}

// provenance is a study's provenance.json: the code, machine and BLAS library it ran with, and
// the record of every stage.
type provenance struct {
	Study string  `json:"study"`
	Scale float64 `json:"scale"`
	// Refit is set when the sweeps were fitted again from their kept run records, with no
	// training; the stages' train_s are then those recorded when they ran.
	Refit       bool          `json:"refit,omitempty"`
	CodeVersion string        `json:"code_version"`
	Machine     sweep.Machine `json:"machine"`
	Go          string        `json:"go"`
	BLAS        string        `json:"blas"`
	Stages      []stageRecord `json:"stages"`
}

// recordedWall sums the final wall_s of every perf.jsonl under dir: a train run has one, a
// sweep one per branch.
func recordedWall(dir string) float64 {
	var total float64
	filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Name() != runfmt.PerfFile {
			return nil
		}
		var last float64
		runfmt.EachLine(path, func(b []byte) {
			var p runfmt.Perf
			if json.Unmarshal(b, &p) == nil {
				last = p.WallS
			}
		})
		total += last
		return nil
	})
	return total
}

// keepRunRecords copies what a sweep's numbers can be re-derived from into the results: the
// config as given and resolved, the manifest, and each branch's spec, state and metrics
// (checkpoints stay in runs/). `cbs fit` and `cbs plot` work on the copy.
func keepRunRecords(runDir, dst string) error {
	// The records name checkpoints and caches by absolute path; kept under results/, they name
	// them relative to the directory the study ran from, which is the repository's root.
	var root []byte
	if wd, err := os.Getwd(); err == nil {
		root = []byte(wd + string(filepath.Separator))
	}
	copyFile := func(rel string) error {
		b, err := os.ReadFile(filepath.Join(runDir, rel))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(root) > 1 {
			b = bytes.ReplaceAll(b, root, nil)
		}
		if err := mkdirFor(filepath.Join(dst, rel)); err != nil {
			return err
		}
		return atomicio.WriteFile(filepath.Join(dst, rel), b, 0o644)
	}
	for _, f := range []string{sweep.SweepFile, sweep.ResolvedFile, runfmt.ManifestFile} {
		if err := copyFile(f); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(filepath.Join(runDir, runfmt.BranchesDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		for _, f := range []string{runfmt.SpecFile, runfmt.StateFile, runfmt.MetricsFile, runfmt.PerfFile, runfmt.SegmentsFile} {
			if err := copyFile(filepath.Join(runfmt.BranchesDir, e.Name(), f)); err != nil {
				return err
			}
		}
	}
	return nil
}

// stage returns the record of the named stage, or nil.
func (p *provenance) stage(name string) *stageRecord {
	for i := range p.Stages {
		if p.Stages[i].Name == name {
			return &p.Stages[i]
		}
	}
	return nil
}

func (p *provenance) branchTokens(name string) analysis.Num {
	if r := p.stage(name); r != nil {
		return r.BranchTokens
	}
	return analysis.Num(math.NaN())
}

func (p *provenance) trainS(name string) float64 {
	if r := p.stage(name); r != nil {
		return r.TrainS
	}
	return 0
}

// trainedTokens is how many training tokens a train stage's checkpoint lineage has read: its data
// cursor (sequences from the start of the stream) times its sequence length; NaN when the run
// directory does not say.
func trainedTokens(runDir string) float64 {
	st, err := model.LoadTrainerState(filepath.Join(runDir, branch.CkptDir))
	if err != nil || st == nil {
		return math.NaN()
	}
	spec, err := branch.LoadSpec(runDir)
	if err != nil {
		return math.NaN()
	}
	return float64(st.DataCursor) * float64(spec.SeqLen())
}

// fromWorkingDir names path relative to the working directory when it lies below it.
func fromWorkingDir(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if rel, err := filepath.Rel(wd, path); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return rel
	}
	return path
}

func mkdirFor(path string) error { return os.MkdirAll(filepath.Dir(path), 0o755) }
