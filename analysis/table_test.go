package analysis_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"cbs/analysis"
)

func TestReadTable(t *testing.T) {
	steps := "# steps to reach loss 3.2\nbatch_size,steps\n8Ki,2000\n16384,1200\n32Ki, 800\n65536,600\n"
	d, err := analysis.ReadTable(strings.NewReader(steps), "s.csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Steps) != 4 || d.Steps[0].Batch != 8192 || d.Steps[2].Steps != 800 {
		t.Errorf("steps table read as %+v", d.Steps)
	}
	curves := "batch_size,tokens,loss\n1024,2048,4.0\n1024,1024,5.0\n2048,2048,4.2\n"
	d, err = analysis.ReadTable(strings.NewReader(curves), "c.csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Groups) != 2 || d.Groups[0].Replicates[0].Tokens[0] != 1024 || d.Groups[0].Replicates[0].Loss[1] != 4.0 {
		t.Errorf("curves table read as %+v", d.Groups)
	}
}

func TestReadTableRejectsMalformedRows(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty table"},
		{"batch,steps\n1,2\n", `line 1: header "batch,steps": allowed batch_size,steps or batch_size,tokens,loss`},
		{"batch_size,steps\n", "header but no rows"},
		{"batch_size,steps\n1024,300\n2048,abc\n", `t.csv line 3: column steps = "abc": not a number`},
		{"batch_size,steps\n1024,300\n\n# c\nlots,200\n", `line 5: column batch_size = "lots": not a token count`},
		{"batch_size,steps\n1024,NaN\n", `line 2: column steps = "NaN": must be a finite number > 0`},
		{"batch_size,steps\n1024,-3\n", "must be a finite number > 0"},
		{"batch_size,steps\n0,3\n", "column batch_size = \"0\": must be > 0"},
		{"batch_size,steps\n1024,300,7\n", "line 2: wrong number of fields (expected 2 columns"},
		{"batch_size,tokens,loss\n1024,2048,3\n1024,2048,3.1\n", "line 3: batch_size 1024, tokens 2048 repeats line 2"},
		{"batch_size,tokens,loss\n1024,2048,inf\n", "must be a finite number > 0"},
	} {
		_, err := analysis.ReadTable(strings.NewReader(tc.in), "t.csv")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestStepsTableFit(t *testing.T) {
	// Exact hyperbola with B_crit = 96K (between 64K and 128K rows).
	var b strings.Builder
	b.WriteString("batch_size,steps\n")
	for k := 0; k < 7; k++ {
		batch := 8192 << k
		fmt.Fprintf(&b, "%d,%g\n", batch, 1500*(1+98304/float64(batch)))
	}
	d, err := analysis.ReadTable(strings.NewReader(b.String()), "s.csv")
	if err != nil {
		t.Fatal(err)
	}
	opts := analysis.Defaults()
	opts.Bootstrap = 20
	res, err := analysis.Analyze(d, opts, "v")
	if err != nil {
		t.Fatal(err)
	}
	tf := res.Hyperbola.Targets[0]
	if math.Abs(float64(tf.Bcrit)/98304-1) > 1e-8 || tf.Censored != analysis.NotCensored {
		t.Errorf("B_crit %v (%s)", tf.Bcrit, tf.Statement)
	}
	if res.Bootstrap.Method != "residual" {
		t.Errorf("bootstrap method %q", res.Bootstrap.Method)
	}

	// Every batch below B_crit: S halves with each doubling, so the honest answer is a bound.
	b.Reset()
	b.WriteString("batch_size,steps\n")
	for k := 0; k < 5; k++ {
		batch := 1024 << k
		fmt.Fprintf(&b, "%d,%g\n", batch, 1000*(1+1e9/float64(batch)))
	}
	d, _ = analysis.ReadTable(strings.NewReader(b.String()), "s.csv")
	res, err = analysis.Analyze(d, opts, "v")
	if err != nil {
		t.Fatal(err)
	}
	tf = res.Hyperbola.Targets[0]
	if tf.Censored != analysis.CensoredAbove || tf.Bcrit.Valid() || !strings.HasPrefix(tf.Statement, "B_crit >= 32Ki tokens") {
		t.Errorf("no curvature in range: %s (B_crit %v)", tf.Statement, tf.Bcrit)
	}

	// Far past B_crit: S hardly changes; the bound is from below.
	b.Reset()
	b.WriteString("batch_size,steps\n")
	for k := 0; k < 5; k++ {
		batch := 1 << (20 + k)
		fmt.Fprintf(&b, "%d,%g\n", batch, 1000*(1+1000/float64(batch)))
	}
	d, _ = analysis.ReadTable(strings.NewReader(b.String()), "s.csv")
	res, _ = analysis.Analyze(d, opts, "v")
	tf = res.Hyperbola.Targets[0]
	if tf.Censored != analysis.CensoredBelow || !strings.HasPrefix(tf.Statement, "B_crit <= 512Ki tokens") {
		t.Errorf("flat S: %s", tf.Statement)
	}

	d, _ = analysis.ReadTable(strings.NewReader("batch_size,steps\n1024,500\n2048,300\n"), "s.csv")
	res, err = analysis.Analyze(d, opts, "v")
	if err != nil {
		t.Fatal(err)
	}
	if tf := res.Hyperbola.Targets[0]; !strings.Contains(tf.Error, "needs at least 3") {
		t.Errorf("two rows: %+v", tf)
	}
}

func FuzzReadTable(f *testing.F) {
	f.Add("batch_size,steps\n1024,300\n2048,200\n")
	f.Add("batch_size,tokens,loss\n1024,2048,3.5\n1024,4096,3.1\n")
	f.Add("batch_size,steps\n\"1,2\",3\n")
	f.Add("# x\nbatch_size,tokens,loss\n64Ki,1Mi,2.5e0\n")
	f.Fuzz(func(t *testing.T, in string) {
		d, err := analysis.ReadTable(strings.NewReader(in), "f.csv")
		if err != nil {
			return
		}
		for _, p := range d.Steps {
			if !(p.Batch > 0) || !(p.Steps > 0) || math.IsInf(p.Steps, 0) {
				t.Fatalf("accepted a bad point %+v", p)
			}
		}
		for _, g := range d.Groups {
			for _, r := range g.Replicates {
				for _, l := range r.Loss {
					if !(l > 0) || math.IsInf(l, 0) {
						t.Fatalf("accepted loss %v", l)
					}
				}
			}
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	f.Add(`{"tokens":1024,"step":1,"train_loss":3.2}`)
	f.Add(`{"tokens":2048,"eval_loss":3.0,"eval_shards":[2.9,3.1]}`)
	f.Add(`{"tokens":1,"train_loss":NaN}`)
	f.Add(`{"tokens":-1}`)
	f.Add(`{"tokens":1,"gns_small_sq":1e300,"gns_b_small":64}`)
	f.Fuzz(func(t *testing.T, line string) {
		r, err := analysis.ParseRecord([]byte(line))
		if err != nil {
			return
		}
		if r.Tokens < 0 || r.Step < 0 {
			t.Fatalf("accepted negative counts: %+v", r)
		}
		if len(r.EvalShards) > 0 && !r.HasEvalLoss() {
			t.Fatalf("shards without eval_loss: %+v", r)
		}
	})
}
