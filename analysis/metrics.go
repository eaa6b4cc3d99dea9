package analysis

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Record is one line of metrics.jsonl. Float fields that the line does not carry are NaN, integer
// fields are 0; use the Has methods rather than comparing with zero.
type Record struct {
	Tokens       int64
	Step         int64
	LR           float64
	TrainLoss    float64
	EvalLoss     float64
	EvalShards   []float64
	GradNorm     float64
	GNSSmallSq   float64
	GNSBigSq     float64
	GNSBSmall    int64
	GNSBBig      int64
	GNSTraceEMA  float64
	GNSGradSqEMA float64
	GNSBSimple   float64
	TokensPerS   float64
	WallS        float64
}

// HasTrainLoss reports whether the line carried train_loss.
func (r *Record) HasTrainLoss() bool { return !math.IsNaN(r.TrainLoss) }

// HasEvalLoss reports whether the line carried eval_loss.
func (r *Record) HasEvalLoss() bool { return !math.IsNaN(r.EvalLoss) }

// rawRecord mirrors the JSON keys; pointers tell an absent key from a zero.
type rawRecord struct {
	Tokens       *int64    `json:"tokens"`
	Step         *int64    `json:"step"`
	LR           *float64  `json:"lr"`
	TrainLoss    *float64  `json:"train_loss"`
	EvalLoss     *float64  `json:"eval_loss"`
	EvalShards   []float64 `json:"eval_shards"`
	GradNorm     *float64  `json:"grad_norm"`
	GNSSmallSq   *float64  `json:"gns_small_sq"`
	GNSBigSq     *float64  `json:"gns_big_sq"`
	GNSBSmall    *int64    `json:"gns_b_small"`
	GNSBBig      *int64    `json:"gns_b_big"`
	GNSTraceEMA  *float64  `json:"gns_trace_ema"`
	GNSGradSqEMA *float64  `json:"gns_grad_sq_ema"`
	GNSBSimple   *float64  `json:"gns_b_simple"`
	TokensPerS   *float64  `json:"tokens_per_s"`
	WallS        *float64  `json:"wall_s"`
}

// ErrNonFinite marks a metrics line whose loss is NaN or infinite. JSON has no such numbers, so a
// trainer that writes them produces a line no JSON parser accepts; the error says so plainly.
var ErrNonFinite = errors.New("non-finite number")

// ParseRecord parses one line of metrics.jsonl. The line must be a JSON object with a
// non-negative integer tokens key and finite numbers throughout.
func ParseRecord(line []byte) (Record, error) {
	var raw rawRecord
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&raw); err != nil {
		if word := nonFiniteWord(line); word != "" {
			return Record{}, fmt.Errorf("%w %s: losses and metrics must be finite JSON numbers", ErrNonFinite, word)
		}
		return Record{}, fmt.Errorf("not a JSON object with numeric fields: %v", err)
	}
	if dec.More() {
		return Record{}, errors.New("more than one JSON value on the line")
	}
	if raw.Tokens == nil {
		return Record{}, errors.New("missing key tokens")
	}
	if *raw.Tokens < 0 {
		return Record{}, fmt.Errorf("tokens = %d: must be >= 0", *raw.Tokens)
	}
	r := Record{Tokens: *raw.Tokens}
	if raw.Step != nil {
		if *raw.Step < 0 {
			return Record{}, fmt.Errorf("step = %d: must be >= 0", *raw.Step)
		}
		r.Step = *raw.Step
	}
	for _, f := range []struct {
		dst *float64
		src *float64
	}{
		{&r.LR, raw.LR}, {&r.TrainLoss, raw.TrainLoss}, {&r.EvalLoss, raw.EvalLoss},
		{&r.GradNorm, raw.GradNorm}, {&r.GNSSmallSq, raw.GNSSmallSq}, {&r.GNSBigSq, raw.GNSBigSq},
		{&r.GNSTraceEMA, raw.GNSTraceEMA}, {&r.GNSGradSqEMA, raw.GNSGradSqEMA},
		{&r.GNSBSimple, raw.GNSBSimple}, {&r.TokensPerS, raw.TokensPerS}, {&r.WallS, raw.WallS},
	} {
		*f.dst = math.NaN()
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	if raw.GNSBSmall != nil {
		r.GNSBSmall = *raw.GNSBSmall
	}
	if raw.GNSBBig != nil {
		r.GNSBBig = *raw.GNSBBig
	}
	if len(raw.EvalShards) > 0 {
		if raw.EvalLoss == nil {
			return Record{}, errors.New("eval_shards without eval_loss")
		}
		r.EvalShards = raw.EvalShards
	}
	return r, nil
}

// nonFiniteWord finds a NaN or Infinity literal outside strings, which JSON rejects.
func nonFiniteWord(line []byte) string {
	inString := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && inString:
			i++
		case c == '"':
			inString = !inString
		case !inString:
			for _, w := range []string{"NaN", "-Infinity", "Infinity", "-Inf", "Inf", "nan", "inf"} {
				if bytes.HasPrefix(line[i:], []byte(w)) {
					return w
				}
			}
		}
	}
	return ""
}

// ReadMetrics reads every line of a metrics.jsonl stream. Blank lines are skipped; a line that
// does not parse is an error naming the line number. A line whose tokens are below the previous
// line's marks a resume from an earlier checkpoint: the lines it supersedes (tokens at or past it)
// are dropped, so the result is the history of the run that finished.
func ReadMetrics(r io.Reader, name string) ([]Record, error) {
	recs, _, err := readMetrics(r, name)
	return recs, err
}

// readMetrics is ReadMetrics that also says where the stream went back, one line each.
func readMetrics(r io.Reader, name string) (recs []Record, rewinds []string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	var out []Record
	line := 0
	var last int64 = -1
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		rec, err := ParseRecord(b)
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
func ReadMetricsFile(path string) ([]Record, error) {
	recs, _, err := readMetricsFile(path)
	return recs, err
}

func readMetricsFile(path string) ([]Record, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return readMetrics(f, path)
}
