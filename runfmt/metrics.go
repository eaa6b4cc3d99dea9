package runfmt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Metrics is one line of metrics.jsonl: one optimizer step, with the eval keys when the step
// falls on an eval mark. Only values that the config and seed determine go here. A key that a line
// does not carry is nil; an integer key, and lr, which cbs always writes, are 0.
//
// The struct is the whole definition of the line: its json tags are the keys, the Go type of a
// field is the JSON type a key must have (an integer, a number or a list of numbers), and the
// required tag says which keys every line must carry: "all" for any line, "trainer" for a line
// another trainer wrote (docs/executors.md).
type Metrics struct {
	Tokens       int64     `json:"tokens" required:"all"`
	Step         int       `json:"step" required:"trainer"`
	LR           float64   `json:"lr"`
	TrainLoss    *float64  `json:"train_loss,omitempty" required:"trainer"`
	EvalLoss     *float64  `json:"eval_loss,omitempty"`
	EvalShards   []float64 `json:"eval_shards,omitempty"`
	GradNorm     *float64  `json:"grad_norm,omitempty"`
	GNSSmallSq   *float64  `json:"gns_small_sq,omitempty"`
	GNSBigSq     *float64  `json:"gns_big_sq,omitempty"`
	GNSBSmall    int64     `json:"gns_b_small,omitempty"`
	GNSBBig      int64     `json:"gns_b_big,omitempty"`
	GNSTraceEMA  *float64  `json:"gns_trace_ema,omitempty"`
	GNSGradSqEMA *float64  `json:"gns_grad_sq_ema,omitempty"`
	GNSBSimple   *float64  `json:"gns_b_simple,omitempty"`
}

// Perf is one line of perf.jsonl: the throughput of a step and the wall time since the run
// started, cumulative across resumes.
type Perf struct {
	Step       int     `json:"step"`
	Tokens     int64   `json:"tokens"`
	TokensPerS float64 `json:"tokens_per_s"`
	WallS      float64 `json:"wall_s"`
}

// ErrNonFinite marks a metrics line whose loss is NaN or infinite. JSON has no such numbers, so a
// trainer that writes them produces a line no JSON parser accepts; the error says so plainly.
var ErrNonFinite = errors.New("non-finite number")

// A metricField is one key of a metrics line, as the Metrics struct declares it.
type metricField struct {
	key      string
	index    int
	want     string // what its value must be, in words
	required string // "", "all" or "trainer"
}

// metricFields are the keys of Metrics, in the order of its fields.
var metricFields = func() []metricField {
	t := reflect.TypeFor[Metrics]()
	fields := make([]metricField, t.NumField())
	for i := range fields {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		var want string
		switch f.Type {
		case reflect.TypeFor[int](), reflect.TypeFor[int64]():
			want = "an integer"
		case reflect.TypeFor[float64](), reflect.TypeFor[*float64]():
			want = "a number"
		case reflect.TypeFor[[]float64]():
			want = "a list of numbers"
		default:
			panic("runfmt: Metrics." + f.Name + " has a type no metrics line can hold")
		}
		fields[i] = metricField{key: key, index: i, want: want, required: f.Tag.Get("required")}
	}
	return fields
}()

// trainerKeys lists the keys every line of another trainer must carry, for messages.
var trainerKeys = func() string {
	var keys []string
	for _, f := range metricFields {
		if f.required != "" {
			keys = append(keys, f.key)
		}
	}
	return strings.Join(keys, ", ")
}()

// ParseMetrics parses one line of metrics.jsonl as the analysis reads it: a JSON object with an
// integer tokens key >= 0, a step >= 0 when present, and every key that Metrics declares of its
// type; eval_shards needs eval_loss, and an empty list counts as absent. A key whose value is null counts as absent, and keys that
// Metrics does not declare are ignored. A NaN or infinite number gives an error wrapping
// ErrNonFinite.
func ParseMetrics(line []byte) (Metrics, error) { return parseMetrics(line, false) }

// CheckMetrics is ParseMetrics for a line another trainer wrote, held to the contract of
// docs/executors.md: it must also carry tokens, step (>= 1) and train_loss, and no declared key
// may be null. Errors name the first key that is missing or of the wrong type.
func CheckMetrics(line []byte) (Metrics, error) { return parseMetrics(line, true) }

func parseMetrics(line []byte, trainer bool) (Metrics, error) {
	var m Metrics
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&obj); err != nil {
		if word := nonFiniteWord(line); word != "" {
			return m, fmt.Errorf("%w %s: losses and metrics must be finite JSON numbers", ErrNonFinite, word)
		}
		return m, fmt.Errorf("not a JSON object: %v: %s", err, snippet(line))
	}
	if dec.More() {
		return m, fmt.Errorf("more than one JSON value on the line: %s", snippet(line))
	}
	v := reflect.ValueOf(&m).Elem()
	for _, f := range metricFields {
		raw, ok := obj[f.key]
		null := ok && string(bytes.TrimSpace(raw)) == "null"
		switch {
		case ok && null && trainer:
			return m, fmt.Errorf("%s = null, want %s", f.key, f.want)
		case !ok || null:
			if f.required == "all" || (trainer && f.required == "trainer") {
				if trainer {
					return m, fmt.Errorf("missing key %s (every line needs %s)", f.key, trainerKeys)
				}
				return m, fmt.Errorf("missing key %s", f.key)
			}
			continue
		}
		dst := v.Field(f.index)
		target := dst.Addr().Interface()
		if dst.Kind() == reflect.Pointer {
			dst.Set(reflect.New(dst.Type().Elem()))
			target = dst.Interface()
		}
		if json.Unmarshal(raw, target) != nil {
			return m, fmt.Errorf("%s = %s, want %s", f.key, snippet(raw), f.want)
		}
	}
	if len(m.EvalShards) == 0 {
		m.EvalShards = nil
	}
	switch {
	case m.Tokens < 0:
		return m, fmt.Errorf("tokens = %d, want >= 0", m.Tokens)
	case trainer && m.Step < 1:
		return m, fmt.Errorf("step = %d, want >= 1 (steps done after this line's update)", m.Step)
	case m.Step < 0:
		return m, fmt.Errorf("step = %d, want >= 0", m.Step)
	case len(m.EvalShards) > 0 && m.EvalLoss == nil:
		return m, errors.New("eval_shards without eval_loss")
	}
	return m, nil
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

// snippet is the start of b, for messages.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}
