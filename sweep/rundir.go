package sweep

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"cbs/branch"
	"cbs/internal/atomicio"
	"cbs/model"
	"cbs/runfmt"
)

// Files of a sweep's run directory, besides those of runfmt (the manifest and the branches).
const (
	SweepFile    = "sweep.toml"
	ResolvedFile = "resolved.toml"
)

// BranchDir is the directory of branch id.
func BranchDir(out, id string) string { return filepath.Join(out, runfmt.BranchesDir, id) }

// Resolved renders the config with every default filled in.
func (p *Plan) Resolved() ([]byte, error) {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if err := enc.Encode(p.Config); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// comparableKey reports whether a key may change without making old and new branches
// incomparable: how a sweep runs ([run], [slurm], where an external trainer runs), how it is
// analysed ([analysis]) and where it lives. The external trainer's command is not one of them.
func comparableKey(k string) bool {
	return strings.HasPrefix(k, "run.") || strings.HasPrefix(k, "analysis.") || strings.HasPrefix(k, "slurm.") ||
		k == "experiment.out" || k == "external.via" || k == "external.workdir" || k == "data.cache_dir" ||
		// Copies of experiment.seed and eval.tokens that resolved configs once recorded.
		k == "data.seed" || k == "data.eval_tokens"
}

// identify names the parent checkpoint of a flattened resolved config by its content, so that
// the same checkpoint under another path is the same parent.
func identify(flat map[string]string) {
	if p := flat["parent.checkpoint"]; p != "" {
		flat["parent.checkpoint"] = branch.CheckpointIdentity(p)
	}
}

// Fingerprint identifies the parts of the resolved config that determine the numbers.
func (p *Plan) Fingerprint() (string, error) {
	res, err := p.Resolved()
	if err != nil {
		return "", err
	}
	flat, err := flatten(res)
	if err != nil {
		return "", err
	}
	identify(flat)
	keys := make([]string, 0, len(flat))
	for k := range flat {
		if !comparableKey(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, flat[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func flatten(text []byte) (map[string]string, error) {
	var m map[string]any
	if _, err := toml.Decode(string(text), &m); err != nil {
		return nil, err
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if t, ok := v.(map[string]any); ok {
			for k, e := range t {
				key := k
				if prefix != "" {
					key = prefix + "." + k
				}
				walk(key, e)
			}
			return
		}
		out[prefix] = fmt.Sprintf("%v", v)
	}
	walk("", m)
	return out, nil
}

// DiffKeys lists the keys whose values differ between two resolved configs and that would make
// the results incomparable.
func DiffKeys(oldText, newText []byte) ([]string, error) {
	a, err := flatten(oldText)
	if err != nil {
		return nil, err
	}
	b, err := flatten(newText)
	if err != nil {
		return nil, err
	}
	identify(a)
	identify(b)
	var diff []string
	for k, v := range a {
		if w, ok := b[k]; (!ok || w != v) && !comparableKey(k) {
			diff = append(diff, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok && !comparableKey(k) {
			diff = append(diff, k)
		}
	}
	sort.Strings(diff)
	return diff, nil
}

// extendsLadder reports whether the plan only adds batch sizes to the sweep recorded in old
// (resolved TOML), with the same reference batch and a scaling rule that is not a list: then
// every existing branch keeps its spec, and the new ones are comparable with them.
func (p *Plan) extendsLadder(old []byte) bool {
	var prev Config
	if _, err := toml.Decode(string(old), &prev); err != nil {
		return false
	}
	ob, nb := prev.Branches.BatchSizes, p.Config.Branches.BatchSizes
	if len(ob) == 0 || len(nb) <= len(ob) || p.Config.Branches.LRScaling.Rule == "list" {
		return false
	}
	for _, b := range ob {
		if !slices.Contains(nb, b) {
			return false
		}
	}
	ref := prev.Branches.ReferenceBatch
	if ref == 0 {
		ref = ob[0]
	}
	return ref == p.Reference
}

// ErrChangedConfig is returned when a run directory holds a sweep of a different config.
var ErrChangedConfig = errors.New("config changed")

// acquire creates the run directory, locks it for this process and prepares it; the caller
// closes the lock when done.
func (p *Plan) acquire() (io.Closer, error) {
	if err := os.MkdirAll(p.Out, 0o755); err != nil {
		return nil, err
	}
	lk, err := lock(p.Out)
	if err != nil {
		return nil, err
	}
	if err := p.prepare(); err != nil {
		lk.Close()
		return nil, err
	}
	return lk, nil
}

// prepare creates or checks the run directory: the same config (up to [run] and [analysis])
// resumes; a changed one is refused with the differing keys.
func (p *Plan) prepare() error {
	if err := os.MkdirAll(filepath.Join(p.Out, runfmt.BranchesDir), 0o755); err != nil {
		return err
	}
	res, err := p.Resolved()
	if err != nil {
		return err
	}
	old, err := os.ReadFile(filepath.Join(p.Out, ResolvedFile))
	switch {
	case err == nil:
		diff, err := DiffKeys(old, res)
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(p.Out, ResolvedFile), err)
		}
		if p.extendsLadder(old) {
			diff = slices.DeleteFunc(diff, func(k string) bool { return k == "branches.batch_sizes" || k == "branches.reference_batch" })
		}
		if slices.Contains(diff, "parent.checkpoint") && p.sameParentAsRecorded() {
			diff = slices.DeleteFunc(diff, func(k string) bool { return k == "parent.checkpoint" })
		}
		if len(diff) > 0 && !p.anyBranchStarted() {
			// Nothing was trained under the old config (every branch failed before its first
			// step, say): there is nothing to compare with, and the corrected config starts over.
			if err := os.RemoveAll(filepath.Join(p.Out, runfmt.BranchesDir)); err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(p.Out, runfmt.BranchesDir), 0o755); err != nil {
				return err
			}
			diff = nil
		}
		if len(diff) > 0 {
			return fmt.Errorf("%w: %s holds a sweep whose results would not be comparable with this config; differing keys: %s (use another experiment.out, or remove the directory)",
				ErrChangedConfig, p.Out, strings.Join(diff, ", "))
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if err := atomicio.WriteFile(filepath.Join(p.Out, SweepFile), p.Raw, 0o644); err != nil {
		return err
	}
	return atomicio.WriteFile(filepath.Join(p.Out, ResolvedFile), res, 0o644)
}

// anyBranchStarted reports whether some branch of the run directory completed a step: a state
// past step 0, a checkpoint or a metrics line.
func (p *Plan) anyBranchStarted() bool {
	dir := filepath.Join(p.Out, runfmt.BranchesDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	for _, e := range entries {
		b := filepath.Join(dir, e.Name())
		if st, _ := runfmt.ReadState(b); st.Step > 0 {
			return true
		}
		if _, err := os.Stat(filepath.Join(b, branch.CkptDir)); err == nil {
			return true
		}
		if fi, err := os.Stat(filepath.Join(b, runfmt.MetricsFile)); err == nil && fi.Size() > 0 {
			return true
		}
	}
	return false
}

// sameParentAsRecorded reports whether the parent's weights are those the manifest recorded:
// a parent moved since the sweep started is no longer where the resolved config says, but it
// is the same parent.
func (p *Plan) sameParentAsRecorded() bool {
	raw, err := os.ReadFile(filepath.Join(p.Out, runfmt.ManifestFile))
	if err != nil || len(p.Branches) == 0 || p.Branches[0].Parent == "" {
		return false
	}
	var m Manifest
	if json.Unmarshal(raw, &m) != nil || m.ParentSHA256 == "" {
		return false
	}
	sum, err := model.WeightsSHA256(p.Branches[0].Parent)
	return err == nil && sum == m.ParentSHA256
}
