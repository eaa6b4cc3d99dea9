package analysis

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"cbs/runfmt"
)

// Branch is one loaded branch directory.
type Branch struct {
	Dir     string
	Spec    runfmt.Branch
	State   runfmt.State     // State.State is "" when the directory has no state.json
	Records []runfmt.Metrics // nil for failed and diverged branches, which are not analysed
}

// Run is a loaded run directory.
type Run struct {
	Dir      string
	Branches []*Branch // sorted by batch size, then replicate, then id
	// Excluded lists branches left out of the analysis (failed, diverged), with the reason.
	Excluded []string
	// Unfinished lists the branches that have not finished training, by batch size (unknown
	// last), then id.
	// Those with metrics are in Branches too, their curves cut short; a fit that includes them
	// is partial.
	Unfinished []Unfinished
	// Total counts every branch of the run: analysed, unfinished or excluded.
	Total int
	// Rewinds lists where a branch's metrics.jsonl went back in tokens: the later lines were
	// used, and the fit says so.
	Rewinds []string
}

// Unfinished is a branch that has not finished training: pending (not started, or interrupted)
// or running.
type Unfinished struct {
	ID     string  `json:"id"`
	Batch  float64 `json:"batch_tokens"` // 0 when unknown (a branch the manifest names without a directory)
	State  string  `json:"state"`
	Reason string  `json:"reason,omitempty"`
	Tokens float64 `json:"tokens"`        // the tokens its metrics.jsonl reaches
	Budget float64 `json:"budget_tokens"` // 0 when unknown
	// Analysed is set when its metrics, cut short, are in the analysis.
	Analysed bool `json:"analysed"`
}

// LoadRun reads every branch under dir/branches. Done branches are analysed; failed and diverged
// ones are listed in Excluded. Branches still pending or running, and those the sweep's manifest
// names without a directory, are listed in Unfinished, and those that already logged metrics are
// analysed too: refusing them, or saying that the fit is partial, is the caller's choice. A
// branch without state.json, as another trainer may leave, counts as done unless its metrics
// stop short of its budget_tokens. A run with no branch to analyse and none unfinished, or a
// finished branch without metrics, is an error.
func LoadRun(dir string) (*Run, error) {
	bdir := filepath.Join(dir, runfmt.BranchesDir)
	entries, err := os.ReadDir(bdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no branches directory: not a run directory (expected %s/<id>/branch.json)", dir, bdir)
	}
	if err != nil {
		return nil, err
	}
	run := &Run{Dir: dir}
	seen := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		seen[e.Name()] = true
		if err := run.addBranch(filepath.Join(bdir, e.Name())); err != nil {
			return nil, err
		}
	}
	for _, id := range manifestBranches(dir) {
		if !seen[id] {
			run.Total++
			run.Unfinished = append(run.Unfinished, Unfinished{ID: id, State: runfmt.StatePending, Reason: "no branch directory yet"})
		}
	}
	if len(run.Branches) == 0 && len(run.Unfinished) == 0 {
		if len(run.Excluded) > 0 {
			return nil, fmt.Errorf("%s: no branch to analyse; excluded: %v", dir, run.Excluded)
		}
		return nil, fmt.Errorf("%s: no branches found under %s", dir, bdir)
	}
	run.sort()
	return run, nil
}

// addBranch reads the branch directory bdir into the run: as excluded when it failed or
// diverged, as unfinished when it has not finished (and analysed when it logged metrics), else
// as a branch to analyse.
func (run *Run) addBranch(bdir string) error {
	b, err := loadBranch(bdir)
	if err != nil {
		return err
	}
	run.Total++
	switch b.State.State {
	case runfmt.StateFailed, runfmt.StateDiverged:
		reason := b.State.Reason
		if reason == "" {
			reason = "no reason given"
		}
		run.Excluded = append(run.Excluded, fmt.Sprintf("%s: %s (%s)", b.Spec.ID, b.State.State, reason))
		return nil
	}
	unfinished := b.State.State == runfmt.StatePending || b.State.State == runfmt.StateRunning
	var rewinds []string
	b.Records, rewinds, err = readMetricsFile(filepath.Join(b.Dir, runfmt.MetricsFile))
	switch {
	case errors.Is(err, fs.ErrNotExist) && (unfinished || b.State.State == ""):
		// Not started: a sweep writes every branch.json before it trains the first branch.
		run.Unfinished = append(run.Unfinished, unfinishedBranch(b, false))
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("branch %s: no metrics.jsonl in %s", b.Spec.ID, b.Dir)
	case err != nil:
		return fmt.Errorf("branch %s: %w", b.Spec.ID, err)
	}
	if len(b.Records) == 0 {
		if unfinished {
			run.Unfinished = append(run.Unfinished, unfinishedBranch(b, false))
			return nil
		}
		return fmt.Errorf("branch %s: %s has no metrics lines", b.Spec.ID, filepath.Join(b.Dir, runfmt.MetricsFile))
	}
	if b.State.State == "" && b.Spec.BudgetTokens > 0 && b.Records[len(b.Records)-1].Tokens < b.Spec.BudgetTokens {
		unfinished = true
	}
	if unfinished {
		run.Unfinished = append(run.Unfinished, unfinishedBranch(b, true))
	}
	run.Rewinds = append(run.Rewinds, rewinds...)
	run.Branches = append(run.Branches, b)
	return nil
}

// sort orders the unfinished branches by batch (an unknown batch last) and the branches by
// batch and replicate, each then by id.
func (run *Run) sort() {
	sort.SliceStable(run.Unfinished, func(i, j int) bool {
		a, b := run.Unfinished[i], run.Unfinished[j]
		if (a.Batch == 0) != (b.Batch == 0) {
			return b.Batch == 0 // an unknown batch goes last
		}
		if a.Batch != b.Batch {
			return a.Batch < b.Batch
		}
		return a.ID < b.ID
	})
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
}

func unfinishedBranch(b *Branch, analysed bool) Unfinished {
	u := Unfinished{ID: b.Spec.ID, Batch: float64(b.Spec.BatchTokens), State: b.State.State, Reason: b.State.Reason,
		Budget: float64(b.Spec.BudgetTokens), Analysed: analysed}
	n := len(b.Records)
	if n > 0 {
		u.Tokens = float64(b.Records[n-1].Tokens)
	}
	switch {
	case u.State == "" && n > 0:
		u.State, u.Reason = runfmt.StatePending, "no state.json, and its metrics stop short of its budget"
	case u.State == "":
		u.State, u.Reason = runfmt.StatePending, "not started"
	case u.Reason == "" && n == 0:
		u.Reason = "not started"
	}
	return u
}

// Line describes the branch in a few words: "b0128Ki-r0 (running, 96Ki of 256Ki tokens)".
func (u Unfinished) Line() string {
	s := u.ID + " (" + u.State
	if u.Reason != "" {
		s += ": " + u.Reason
	}
	return s + ", " + u.Progress() + ")"
}

// Progress is how far the branch got: "96Ki of 256Ki tokens", or "96Ki tokens" when its budget
// is unknown.
func (u Unfinished) Progress() string {
	if u.Budget > 0 {
		return runfmt.FormatTokens(u.Tokens) + " of " + runfmt.FormatTokens(u.Budget) + " tokens"
	}
	return runfmt.FormatTokens(u.Tokens) + " tokens"
}

// UnfinishedLines is Line of each branch.
func UnfinishedLines(us []Unfinished) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.Line())
	}
	return out
}

// manifestBranches are the branch ids a sweep's manifest.json lists; nil when there is none.
func manifestBranches(dir string) []string {
	raw, err := os.ReadFile(filepath.Join(dir, runfmt.ManifestFile))
	if err != nil {
		return nil
	}
	var m struct {
		Branches []string `json:"branches"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m.Branches
}

func loadBranch(dir string) (*Branch, error) {
	spec, err := runfmt.ReadBranch(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: missing %s", dir, runfmt.SpecFile)
	case err != nil:
		return nil, err
	case spec.BatchTokens <= 0:
		return nil, fmt.Errorf("%s: batch_tokens = %d: must be a positive number of tokens", filepath.Join(dir, runfmt.SpecFile), spec.BatchTokens)
	}
	b := &Branch{Dir: dir, Spec: spec}
	if b.State, err = runfmt.ReadState(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return b, nil
}
