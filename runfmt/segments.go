package runfmt

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
)

// Segment is one line of segments.jsonl: a start or resume of a run, the step it started from and
// the backend that trained from there. A run resumed under another BLAS library or device
// computes the same steps in other rounding, and its segments say where.
type Segment struct {
	FromStep int    `json:"from_step"`
	Backend  string `json:"backend"`
}

// ReadSegments reads dir/segments.jsonl, first start to last. A missing file gives an error that
// errors.Is(err, fs.ErrNotExist) recognises; lines that do not parse (a torn last line) are
// skipped.
func ReadSegments(dir string) ([]Segment, error) {
	b, err := os.ReadFile(filepath.Join(dir, SegmentsFile))
	if err != nil {
		return nil, err
	}
	var segs []Segment
	for _, line := range splitLines(b) {
		var s Segment
		if json.Unmarshal(line, &s) == nil {
			segs = append(segs, s)
		}
	}
	return segs, nil
}

// splitLines splits b into its non-blank lines.
func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			lines = append(lines, l)
		}
	}
	return lines
}
