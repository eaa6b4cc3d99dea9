// Package runfmt defines the run-directory format of docs/results-format.md in one place: the
// files of a branch directory and the records they hold (branch.json, state.json, metrics.jsonl,
// perf.jsonl, segments.jsonl), and the Tokens unit their counts are in, with its parser and its
// formatter for people.
//
// The trainer (package branch) writes these records, the analysis reads them and the sweep
// checks what another trainer wrote against them; none of the three declares a record of its
// own. A metric is added to metrics.jsonl by adding a field to Metrics: the writer can set it,
// the reader returns it, and a trainer's line is checked for its type.
//
// The package imports nothing of cbs, so any of its packages can use it.
package runfmt

import (
	"bufio"
	"os"
)

// The layout of a sweep's run directory: one directory per branch under BranchesDir, and
// ManifestFile beside it.
const (
	BranchesDir  = "branches"
	ManifestFile = "manifest.json"
)

// The files of a branch directory (a train run's directory has the same). Its checkpoint, in
// the directory branch.CkptDir names, is the trainer's own.
const (
	SpecFile    = "branch.json"
	StateFile   = "state.json"
	MetricsFile = "metrics.jsonl"
	// PerfFile holds throughput and wall time, kept apart so that metrics.jsonl is reproducible
	// to the byte.
	PerfFile = "perf.jsonl"
	// SegmentsFile records, one line per start or resume of a run, the step it started from and
	// the backend that trained from there.
	SegmentsFile = "segments.jsonl"
	LogFile      = "log.txt"
)

// EachLine calls f with every line of the JSON-lines file at path (metrics.jsonl, perf.jsonl),
// for readers that take what they can: an unreadable file has no lines, and reading stops at a
// line over 64 MiB. f must not keep the slice it is given.
func EachLine(path string, f func([]byte)) {
	file, err := os.Open(path)
	if err != nil {
		return
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		f(sc.Bytes())
	}
}
