package analysis

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"cbs/runfmt"
)

// ReadMetrics reads every line of a metrics.jsonl stream, each as runfmt.ParseMetrics does.
// Blank lines are skipped; a line that does not parse is an error naming the line number. A line
// whose tokens are below the previous line's marks a resume from an earlier checkpoint: the lines
// it supersedes (tokens at or past it) are dropped, so the result is the history of the run that
// finished.
func ReadMetrics(r io.Reader, name string) ([]runfmt.Metrics, error) {
	recs, _, err := readMetrics(r, name)
	return recs, err
}

// readMetrics is ReadMetrics that also says where the stream went back, one line each.
func readMetrics(r io.Reader, name string) (recs []runfmt.Metrics, rewinds []string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	var out []runfmt.Metrics
	line := 0
	var last int64 = -1
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		rec, err := runfmt.ParseMetrics(b)
		if err != nil {
			return nil, nil, fmt.Errorf("%s line %d: %w", name, line, err)
		}
		if rec.Tokens < last {
			rewinds = append(rewinds, fmt.Sprintf("%s line %d goes back from %d to %d tokens (a resume from an earlier checkpoint): the lines from %d tokens on are replaced by the later ones", name, line, last, rec.Tokens, rec.Tokens))
			keep := len(out)
			for keep > 0 && out[keep-1].Tokens >= rec.Tokens {
				keep--
			}
			out = out[:keep]
		}
		last = rec.Tokens
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s after line %d: %w", name, line, err)
	}
	return out, rewinds, nil
}

// ReadMetricsFile is ReadMetrics on a file.
func ReadMetricsFile(path string) ([]runfmt.Metrics, error) {
	recs, _, err := readMetricsFile(path)
	return recs, err
}

func readMetricsFile(path string) ([]runfmt.Metrics, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return readMetrics(f, path)
}
