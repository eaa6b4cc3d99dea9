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

func TestReadReplicateTable(t *testing.T) {
	// Rows in any order; labels keep the order they first appear in within each batch size.
	in := "# two seeds at 1Ki, one at 2Ki\nbatch_size,replicate,tokens,loss\n" +
		"1Ki,s1,4096,3.0\n1Ki,s1,2048,4.0\n2048,0,2048,4.3\n1024,s0,2048,4.2\n1024,s0,4Ki,3.2\n2048,0,4096,3.5\n"
	d, err := analysis.ReadTable(strings.NewReader(in), "r.csv")
	if err != nil {
		t.Fatal(err)
	}
	if d.Metric != "loss" || len(d.Groups) != 2 || d.Groups[0].Batch != 1024 || d.Groups[1].Batch != 2048 {
		t.Fatalf("groups %+v", d.Groups)
	}
	g := d.Groups[0]
	if len(g.Replicates) != 2 || g.Replicates[0].ID != "b1Ki-rs1" || g.Replicates[1].ID != "b1Ki-rs0" {
		t.Fatalf("replicates of 1Ki: %+v", g.Replicates)
	}
	if r := g.Replicates[1]; r.Tokens[0] != 2048 || r.Tokens[1] != 4096 || r.Loss[0] != 4.2 || r.Loss[1] != 3.2 {
		t.Errorf("replicate s0: %+v", r)
	}
	if tok, loss := g.Mean(nil, nil); len(tok) != 2 || math.Abs(loss[1]-3.1) > 1e-12 {
		t.Errorf("mean curve of 1Ki: %v %v", tok, loss)
	}
	if r := d.Groups[1].Replicates; len(r) != 1 || r[0].ID != "b2Ki-r0" {
		t.Errorf("replicates of 2Ki: %+v", r)
	}
}

// replicateTable writes curves L_B(T) = 2 + 3 (E/1Mi)^-1/2 with E = T / (1 + B/B_noise), the
// steps-tokens trade-off of McCandlish et al., so the token overhead against the reference B_ref
// is (1 + B/B_noise)/(1 + B_ref/B_noise) and the CBS at tau is tau B_noise + (1 + tau) B_ref.
// Each replicate shifts its curve by a small seed offset.
func replicateTable(batches []float64, reps int, bnoise float64) string {
	var b strings.Builder
	b.WriteString("batch_size,replicate,tokens,loss\n")
	for _, batch := range batches {
		for r := 0; r < reps; r++ {
			off := 0.002 * float64(r-reps/2)
			for k := 1; k <= 64; k++ {
				tok := float64(k << 20)
				fmt.Fprintf(&b, "%g,%d,%g,%.9g\n", batch, r, tok, 2+3/math.Sqrt(tok/(1+batch/bnoise)/(1<<20))+off)
			}
		}
	}
	return b.String()
}

func TestReplicateTablePrimary(t *testing.T) {
	batches := []float64{8192, 16384, 32768, 65536, 131072, 262144}
	d, err := analysis.ReadTable(strings.NewReader(replicateTable(batches, 3, 49152)), "r.csv")
	if err != nil {
		t.Fatal(err)
	}
	opts := analysis.Defaults()
	opts.Bootstrap = 40
	res, err := analysis.Analyze(d, opts, "v")
	if err != nil {
		t.Fatal(err)
	}
	p := res.Primary
	if p == nil || p.Error != "" {
		t.Fatalf("primary: %+v", p)
	}
	// tau 0.2: CBS = 0.2 * 48Ki + 1.2 * 8Ki = 19660.8 tokens, between the 16Ki and 32Ki rungs.
	if p.Estimator != "token_overhead" || p.Replicates != 3 || p.Warning != "" || p.ReferenceBatch != 8192 || p.Censored != analysis.NotCensored {
		t.Errorf("primary %+v", p)
	}
	if math.Abs(float64(p.CBS)/19660.8-1) > 0.02 {
		t.Errorf("CBS %v, want about 19661 tokens (%s)", p.CBS, p.Statement)
	}
	if lo, hi := p.Interval[0], p.Interval[1]; !lo.Valid() || !hi.Valid() || lo > p.CBS || hi < p.CBS || p.Resampled != 40 {
		t.Errorf("interval [%v, %v] from %d resamples around CBS %v", lo, hi, p.Resampled, p.CBS)
	}
	if res.Bootstrap.Method != "data" || len(p.Rungs) != len(batches) || p.Rungs[0].Replicates != 3 {
		t.Errorf("bootstrap %+v, rungs %+v", res.Bootstrap, p.Rungs)
	}

	// --ref-batch: overheads against 16Ki instead; CBS = 0.2 * 48Ki + 1.2 * 16Ki.
	opts.ReferenceBatch = 16384
	res, err = analysis.Analyze(d, opts, "v")
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Primary; p.ReferenceBatch != 16384 || math.Abs(float64(p.CBS)/29491.2-1) > 0.02 {
		t.Errorf("reference 16Ki: CBS %v (%s)", p.CBS, p.Statement)
	}

	// One replicate per rung: the estimate stands, with the warning that the intervals cover
	// eval-set noise only.
	d, err = analysis.ReadTable(strings.NewReader(replicateTable(batches, 1, 49152)), "r.csv")
	if err != nil {
		t.Fatal(err)
	}
	opts.ReferenceBatch = 0
	res, err = analysis.Analyze(d, opts, "v")
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Primary; p.Replicates != 1 || !strings.Contains(p.Warning, "eval-set noise only") {
		t.Errorf("one replicate: %+v", p)
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
		{"batch_size,tokens,loss\n1e308Ti,2048,3\n", `column batch_size = "1e308Ti": not a token count`},
		{"batch_size,replicate,tokens,loss\n1024,0,2048\n", "line 2: wrong number of fields (expected 4 columns: batch_size,replicate,tokens,loss)"},
		{"batch_size,replicate,tokens,loss\n1024, ,2048,3\n", `line 2: column replicate = "": must be a non-empty label`},
		{"batch_size,replicate,tokens,loss\n1024,0,2Ki,3\n1024,0,2048,3.1\n", `line 3: batch_size 1024, replicate "0", tokens 2048 repeats line 2`},
		{"batch_size,replicate,tokens,loss\n1024,0,2048,3\n1024,1,2048,-3\n", `line 3: column loss = "-3": must be a finite number > 0`},
		// Replicate 1 lacks the mark 4096 that replicate 0 logs at line 3.
		{"batch_size,replicate,tokens,loss\n1024,0,2048,3\n1024,0,4096,2.9\n1024,1,2048,3.1\n", `line 3: column tokens = "4096": replicate "0" of batch_size 1024 logs this mark but replicate "1" does not`},
		// Replicate b logs a mark (line 5) that replicate a lacks.
		{"batch_size,replicate,tokens,loss\n1024,a,2048,3\n2048,a,2048,3\n1024,b,2048,3.1\n1024,b,3Ki,3\n", `line 5: column tokens = "3Ki": replicate "b" of batch_size 1024 logs this mark but replicate "a" does not`},
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
	f.Add("batch_size,replicate,tokens,loss\n1024,0,2048,3.5\n1024,1,2048,3.4\n2048,0,2048,3.6\n")
	f.Add("batch_size,replicate,tokens,loss\n1Ki,a,2Ki,3\n1Ki,b,4Ki,3\n")
	f.Add("batch_size,replicate,tokens,loss\n1024,\"x,y\",2048,3\n1024,0,2048,3\n")
	f.Fuzz(func(t *testing.T, in string) {
		d, err := analysis.ReadTable(strings.NewReader(in), "f.csv")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.csv") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for i, g := range d.Groups {
			if !(g.Batch > 0) || math.IsInf(g.Batch, 0) || (i > 0 && g.Batch <= d.Groups[i-1].Batch) {
				t.Fatalf("batch sizes not positive and ascending: %+v", d.Groups)
			}
			if len(g.Replicates) == 0 {
				t.Fatalf("batch %v has no replicates", g.Batch)
			}
			for _, r := range g.Replicates {
				if len(r.Tokens) == 0 || len(r.Tokens) != len(r.Loss) || len(r.Tokens) != len(g.Replicates[0].Tokens) {
					t.Fatalf("replicate %s: %d marks, %d losses; first replicate %d marks", r.ID, len(r.Tokens), len(r.Loss), len(g.Replicates[0].Tokens))
				}
				for j, x := range r.Tokens {
					if x != g.Replicates[0].Tokens[j] || (j > 0 && x <= r.Tokens[j-1]) || math.IsInf(x, 0) {
						t.Fatalf("replicate %s: marks %v against %v", r.ID, r.Tokens, g.Replicates[0].Tokens)
					}
				}
			}
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
