package sweep

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"cbs/branch"
	"cbs/compute/blas"
	"cbs/data"
	"cbs/internal/atomicio"
	"cbs/model"
	"cbs/runfmt"
)

// Manifest is manifest.json: what a reader needs to know where the numbers came from.
type Manifest struct {
	Experiment        string     `json:"experiment"`
	ConfigFingerprint string     `json:"config_fingerprint"`
	CodeVersion       string     `json:"code_version"`
	Parent            string     `json:"parent,omitempty"`
	ParentSHA256      string     `json:"parent_sha256,omitempty"`
	Corpus            *data.Info `json:"corpus,omitempty"` // absent for an external trainer
	Machine           Machine    `json:"machine"`
	// Backend is what trained the branches of the latest invocation that had any to run: the
	// backends that the segments.jsonl of the branches it ran recorded as they started; until
	// they have run, or when nothing records a backend (an external trainer, or Slurm tasks yet
	// to run), what the executor says of itself. Backends lists every backend the run directory
	// has trained under, first to last, so a later invocation never rewrites what an earlier
	// one used.
	Backend  string   `json:"backend"`
	Backends []string `json:"backends,omitempty"`
	Branches []string `json:"branches"`
	// BranchBackends are, per branch that has started, the backends its segments.jsonl records,
	// first to last (which steps ran where, the file itself says).
	BranchBackends map[string][]string `json:"branch_backends,omitempty"`

	// segments counts the lines of each branch's segments.jsonl when the manifest was last
	// written, so that ran can tell the segments an invocation added.
	segments map[string]int
}

// Machine describes where the sweep ran.
type Machine struct {
	Hostname string `json:"hostname"`
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	OS       string `json:"os"`
}

// newManifest gathers what the manifest says of the plan, the code, the parent, the corpus and
// the machine, and the backends an earlier manifest of the run directory listed. corpora is nil
// for an external trainer, whose data cbs does not read.
func newManifest(p *Plan, version string, corpora *corpusCache) (*Manifest, error) {
	fp, err := p.Fingerprint()
	if err != nil {
		return nil, err
	}
	b0 := p.Branches[0]
	host, _ := os.Hostname()
	m := &Manifest{
		Experiment: p.Config.Experiment.Name, ConfigFingerprint: fp, CodeVersion: version,
		Machine: Machine{Hostname: host, CPU: blas.CPUInfo(), Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH},
	}
	if corpora != nil {
		corpus, err := corpora.get(b0.Data)
		if err != nil {
			return nil, err
		}
		info := corpus.Info()
		m.Corpus = &info
	}
	if b0.Parent != "" {
		m.Parent = b0.Parent
		if p.Config.Run.Executor != ExecutorExternal {
			if m.ParentSHA256, err = model.WeightsSHA256(b0.Parent); err != nil {
				return nil, err
			}
		} else if fi, err := os.Stat(b0.Parent); err == nil && fi.Mode().IsRegular() {
			// An external trainer's checkpoint is a file or a directory in its own format.
			if m.ParentSHA256, err = model.FileSHA256(b0.Parent); err != nil {
				return nil, err
			}
		}
	}
	for _, s := range p.Branches {
		m.Branches = append(m.Branches, s.ID)
	}
	var prev Manifest
	if raw, err := os.ReadFile(filepath.Join(p.Out, runfmt.ManifestFile)); err == nil && json.Unmarshal(raw, &prev) == nil {
		m.Backend, m.Backends = prev.Backend, prev.Backends
		if len(m.Backends) == 0 && prev.Backend != "" {
			m.Backends = []string{prev.Backend}
		}
	}
	return m, nil
}

// trains sets the backend of this invocation, as the executor describes it before the branches
// run; a named backend (the trainer itself) goes into Backends too.
func (m *Manifest) trains(backend string, named bool) {
	m.Backend = backend
	if named && !slices.Contains(m.Backends, backend) {
		m.Backends = append(m.Backends, backend)
	}
}

// write records the manifest in p's run directory, with every backend the branches'
// segments.jsonl name.
func (m *Manifest) write(p *Plan) error {
	m.BranchBackends, m.segments = nil, map[string]int{}
	for _, s := range p.Branches {
		segs, _ := runfmt.ReadSegments(BranchDir(p.Out, s.ID))
		m.segments[s.ID] = len(segs)
		for _, seg := range segs {
			if m.BranchBackends == nil {
				m.BranchBackends = map[string][]string{}
			}
			if !slices.Contains(m.BranchBackends[s.ID], seg.Backend) {
				m.BranchBackends[s.ID] = append(m.BranchBackends[s.ID], seg.Backend)
			}
			if !slices.Contains(m.Backends, seg.Backend) {
				m.Backends = append(m.Backends, seg.Backend)
			}
		}
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return atomicio.WriteFile(filepath.Join(p.Out, runfmt.ManifestFile), append(b, '\n'), 0o644)
}

// ran lists, first seen first, the backends of the segments that the branches of todo added to
// their segments.jsonl since the manifest was last written: what this invocation trained them on.
func (m *Manifest) ran(p *Plan, todo []*branch.Spec) []string {
	var out []string
	for _, s := range todo {
		segs, _ := runfmt.ReadSegments(BranchDir(p.Out, s.ID))
		for _, seg := range segs[min(m.segments[s.ID], len(segs)):] {
			if !slices.Contains(out, seg.Backend) {
				out = append(out, seg.Backend)
			}
		}
	}
	return out
}
