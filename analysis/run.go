package analysis

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// BranchSpec is branch.json: the resolved spec of one branch.
type BranchSpec struct {
	ID              string             `json:"id"`
	BatchTokens     int64              `json:"batch_tokens"`
	BatchSeqs       int64              `json:"batch_seqs"`
	SeqLen          int64              `json:"seq_len"`
	MicroBatch      int64              `json:"micro_batch"`
	Accum           int64              `json:"accum"`
	BudgetTokens    int64              `json:"budget_tokens"`
	Steps           int64              `json:"steps"`
	Replicate       int                `json:"replicate"`
	Seed            int64              `json:"seed"`
	Objective       string             `json:"objective"`
	LRScale         float64            `json:"lr_scale"`
	LRPeak          map[string]float64 `json:"lr_peak"`
	EvalEveryTokens int64              `json:"eval_every_tokens"`
}

// BranchState is state.json.
type BranchState struct {
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	Step   int64  `json:"step"`
}

// Branch is one loaded branch directory.
type Branch struct {
	Dir     string
	Spec    BranchSpec
	State   BranchState // State.State is "" when the directory has no state.json
	Records []Record    // nil for failed and diverged branches, which are not analysed
}

// Run is a loaded run directory.
type Run struct {
	Dir      string
	Branches []*Branch // sorted by batch size, then replicate, then id
	// Excluded lists branches left out of the analysis (failed, diverged), with the reason.
	Excluded []string
	// Rewinds lists where a branch's metrics.jsonl went back in tokens: the later lines were
	// used, and the fit says so.
	Rewinds []string
}

// LoadRun reads every branch under dir/branches. Done branches and branches still running (or
// without a state file) are analysed; failed and diverged branches are listed in Excluded. A run
// with no branch to analyse, or an analysed branch without metrics, is an error.
func LoadRun(dir string) (*Run, error) {
	bdir := filepath.Join(dir, "branches")
	entries, err := os.ReadDir(bdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no branches directory: not a run directory (expected %s/<id>/branch.json)", dir, bdir)
	}
	if err != nil {
		return nil, err
	}
	run := &Run{Dir: dir}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		b, err := loadBranch(filepath.Join(bdir, e.Name()))
		if err != nil {
			return nil, err
		}
		switch b.State.State {
		case "failed", "diverged":
			reason := b.State.Reason
			if reason == "" {
				reason = "no reason given"
			}
			run.Excluded = append(run.Excluded, fmt.Sprintf("%s: %s (%s)", b.Spec.ID, b.State.State, reason))
			continue
		}
		var rewinds []string
		if b.Records, rewinds, err = readMetricsFile(filepath.Join(b.Dir, "metrics.jsonl")); err != nil {
			if errors.Is(err, fs.ErrNotExist) && b.State.State == "pending" {
				run.Excluded = append(run.Excluded, fmt.Sprintf("%s: pending (not started)", b.Spec.ID))
				continue
			}
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("branch %s: no metrics.jsonl in %s", b.Spec.ID, b.Dir)
			}
			return nil, fmt.Errorf("branch %s: %w", b.Spec.ID, err)
		}
		if len(b.Records) == 0 {
			return nil, fmt.Errorf("branch %s: %s has no metrics lines", b.Spec.ID, filepath.Join(b.Dir, "metrics.jsonl"))
		}
		run.Rewinds = append(run.Rewinds, rewinds...)
		run.Branches = append(run.Branches, b)
	}
	if len(run.Branches) == 0 {
		if len(run.Excluded) > 0 {
			return nil, fmt.Errorf("%s: no branch to analyse; excluded: %v", dir, run.Excluded)
		}
		return nil, fmt.Errorf("%s: no branches found under %s", dir, bdir)
	}
	sort.Slice(run.Branches, func(i, j int) bool {
		a, b := run.Branches[i].Spec, run.Branches[j].Spec
		if a.BatchTokens != b.BatchTokens {
			return a.BatchTokens < b.BatchTokens
		}
		if a.Replicate != b.Replicate {
			return a.Replicate < b.Replicate
		}
		return a.ID < b.ID
	})
	return run, nil
}

func loadBranch(dir string) (*Branch, error) {
	b := &Branch{Dir: dir}
	path := filepath.Join(dir, "branch.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: missing branch.json", dir)
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &b.Spec); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if b.Spec.ID == "" {
		b.Spec.ID = filepath.Base(dir)
	}
	if b.Spec.BatchTokens <= 0 {
		return nil, fmt.Errorf("%s: batch_tokens = %d: must be a positive number of tokens", path, b.Spec.BatchTokens)
	}
	spath := filepath.Join(dir, "state.json")
	data, err = os.ReadFile(spath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(data, &b.State); err != nil {
			return nil, fmt.Errorf("%s: %v", spath, err)
		}
		switch b.State.State {
		case "pending", "running", "done", "failed", "diverged":
		default:
			return nil, fmt.Errorf("%s: state = %q: allowed pending, running, done, failed, diverged", spath, b.State.State)
		}
	}
	return b, nil
}
