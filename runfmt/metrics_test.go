package runfmt

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// fullMetrics is a Metrics with every field set, whatever fields it has.
func fullMetrics() Metrics {
	var m Metrics
	v := reflect.ValueOf(&m).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(i + 1))
		case reflect.Float64:
			f.SetFloat(float64(i) + 0.5)
		case reflect.Pointer:
			x := float64(i) + 0.25
			f.Set(reflect.ValueOf(&x))
		case reflect.Slice:
			f.Set(reflect.ValueOf([]float64{float64(i), 0.5}))
		}
	}
	return m
}

// TestMetricsRoundTrip: a line the writer marshals reads back whole, as the analysis reads it and
// as a trainer's line is checked; so does a line with only the required keys.
func TestMetricsRoundTrip(t *testing.T) {
	loss := 3.5
	for _, m := range []Metrics{fullMetrics(), {Tokens: 1024, Step: 1, TrainLoss: &loss}} {
		line, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		for name, parse := range map[string]func([]byte) (Metrics, error){"ParseMetrics": ParseMetrics, "CheckMetrics": CheckMetrics} {
			got, err := parse(line)
			if err != nil || !reflect.DeepEqual(got, m) {
				t.Errorf("%s(%s) = %+v, %v; want %+v", name, line, got, err, m)
			}
		}
	}
}

func TestParseMetricsErrors(t *testing.T) {
	for _, tc := range []struct {
		line            string
		reader, trainer string // "" when accepted
	}{
		{`{"tokens": 1024, "step": 1, "train_loss": 3}`, "", ""},
		{`{"tokens": 1024, "train_loss": 3, "other": "kept"}`, "", "missing key step (every line needs tokens, step, train_loss)"},
		{`{"tokens": 1024, "step": 1}`, "", "missing key train_loss"},
		{`{"train_loss": 3}`, "missing key tokens", "missing key tokens"},
		{`{"tokens": null, "step": 1, "train_loss": 3}`, "missing key tokens", "tokens = null, want an integer"},
		{`{"tokens": 1024, "step": 1, "train_loss": null}`, "", "train_loss = null, want a number"},
		{`{"tokens": 1024, "step": 1.5, "train_loss": 3}`, "step = 1.5, want an integer", "step = 1.5, want an integer"},
		{`{"tokens": 1024, "step": 0, "train_loss": 3}`, "", "step = 0, want >= 1"},
		{`{"tokens": -1, "step": 1, "train_loss": 3}`, "tokens = -1, want >= 0", "tokens = -1, want >= 0"},
		{`{"tokens": 1024, "step": 1, "train_loss": "low"}`, `train_loss = "low", want a number`, `train_loss = "low", want a number`},
		{`{"tokens": 1024, "step": 1, "train_loss": 3, "eval_shards": [1, "x"]}`, "eval_shards = [1, \"x\"], want a list of numbers", "want a list of numbers"},
		{`{"tokens": 1024, "step": 1, "train_loss": 3, "eval_shards": [1, 2]}`, "eval_shards without eval_loss", "eval_shards without eval_loss"},
		{`{"tokens": 1024, "step": 1, "train_loss": NaN}`, "non-finite number NaN", "non-finite number NaN"},
		{`step 1 loss 3`, "not a JSON object", "not a JSON object"},
		{`[1, 2]`, "not a JSON object", "not a JSON object"},
		{`{"tokens": 1} {"tokens": 2}`, "more than one JSON value", "more than one JSON value"},
	} {
		for _, p := range []struct {
			name  string
			parse func([]byte) (Metrics, error)
			want  string
		}{{"ParseMetrics", ParseMetrics, tc.reader}, {"CheckMetrics", CheckMetrics, tc.trainer}} {
			_, err := p.parse([]byte(tc.line))
			switch {
			case p.want == "" && err != nil:
				t.Errorf("%s(%s): %v", p.name, tc.line, err)
			case p.want != "" && (err == nil || !strings.Contains(err.Error(), p.want)):
				t.Errorf("%s(%s): %v, want an error containing %q", p.name, tc.line, err, p.want)
			case err != nil && errors.Is(err, ErrNonFinite) != strings.Contains(tc.line, "NaN"):
				t.Errorf("%s(%s): %v: wraps ErrNonFinite %v", p.name, tc.line, err, errors.Is(err, ErrNonFinite))
			}
		}
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add(`{"tokens":1024,"step":1,"train_loss":3.2}`)
	f.Add(`{"tokens":2048,"eval_loss":3.0,"eval_shards":[2.9,3.1]}`)
	f.Add(`{"tokens":1,"train_loss":NaN}`)
	f.Add(`{"tokens":-1}`)
	f.Add(`{"tokens":1,"gns_small_sq":1e300,"gns_b_small":64}`)
	f.Fuzz(func(t *testing.T, line string) {
		for _, parse := range []func([]byte) (Metrics, error){ParseMetrics, CheckMetrics} {
			r, err := parse([]byte(line))
			if err != nil {
				continue
			}
			if r.Tokens < 0 || r.Step < 0 {
				t.Fatalf("accepted negative counts: %+v", r)
			}
			if len(r.EvalShards) > 0 && r.EvalLoss == nil {
				t.Fatalf("shards without eval_loss: %+v", r)
			}
		}
	})
}
