package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cbs/analysis"
	"cbs/analysis/synth"
)

// analysisCLI runs one command line in-process.
func analysisCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// analysisRun writes a small synthetic sweep with a true B_crit of 64Ki tokens, two replicates
// and eval shards, so every estimator and figure has something to show.
func analysisRun(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := synth.Write(dir, synth.Spec{
		Batches:    []int64{8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10},
		Replicates: 2,
		Budget:     8 << 20,
		EvalEvery:  256 << 10,
		Shards:     4,
		Bcrit:      64 << 10,
		EvalNoise:  0.003, ShardSpread: 0.02, ReplicateNoise: 0.002, TrainNoise: 0.05,
		GNS: true, BSimple: 20000,
		Seed: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFitRunDir(t *testing.T) {
	dir := analysisRun(t)
	code, stdout, stderr := analysisCLI(t, "fit", dir, "--bootstrap", "40", "--eps-abs", "0.1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	t.Log("\n" + stdout)
	// The primary estimate, the slope and the sensitivity table come first, in that order, and
	// the secondary estimators after them.
	last := -1
	for _, want := range []string{"metric: eval_loss, compared at 8Mi tokens",
		"primary estimate: token overhead T_B(L)/T_ref(L), tau 0.2, reference batch 8Ki", "CBS = ", "90% interval [",
		"batch  replicates  tokens to level  overhead  interval", "\n16Ki   2           ",
		"loss slope: loss at equal tokens changes by +", "sensitivity", "token_overhead  tau 0.5",
		"secondary estimators:", "tolerance rule (eps_abs 0.1): CBS in [16Ki, 32Ki)", "steps to target", "knee of L(B)", "gradient noise scale B_simple", "not the CBS"} {
		i := strings.Index(stdout, want)
		if i < 0 {
			t.Errorf("table lacks %q", want)
			continue
		}
		if i < last {
			t.Errorf("%q is out of order", want)
		}
		last = i
	}
	if strings.Contains(stderr, "warning:") {
		t.Errorf("two replicates per batch, yet stderr warns: %s", stderr)
	}
	if !strings.Contains(stderr, "wrote "+filepath.Join(dir, "fit", "cbs.json")) {
		t.Errorf("stderr: %s", stderr)
	}
	data, err := os.ReadFile(filepath.Join(dir, "fit", "cbs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res analysis.Result
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if res.CodeVersion == "" || res.Options.EpsAbs != 0.1 || res.Options.Eps != 0.01 || res.Bootstrap.Resamples != 40 || len(res.Ladder) != 6 {
		t.Errorf("cbs.json: version %q, options %+v, bootstrap %+v", res.CodeVersion, res.Options, res.Bootstrap)
	}
	for _, tf := range res.Hyperbola.Targets {
		if tf.Bcrit.Valid() && math.Abs(float64(tf.Bcrit)/(64<<10)-1) > 0.25 {
			t.Errorf("target %v: B_crit %v far from the true 64Ki", tf.Target, tf.Bcrit)
		}
	}
	// --json prints the same document.
	code, stdout, _ = analysisCLI(t, "fit", dir, "--bootstrap", "40", "--eps", "0.05", "--json", "--out", filepath.Join(t.TempDir(), "x.json"))
	if code != 0 || !json.Valid([]byte(stdout)) || !strings.Contains(stdout, `"tolerance"`) {
		t.Errorf("--json: exit %d, %.200s", code, stdout)
	}
}

// fitJSON runs cbs fit --json and decodes the primary object as a consumer of the format would,
// without the Go types.
func fitJSON(t *testing.T, args ...string) (primary map[string]any, stderr string) {
	t.Helper()
	code, stdout, stderr := analysisCLI(t, append([]string{"fit", "--json", "--out", filepath.Join(t.TempDir(), "cbs.json")}, args...)...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	p, ok := doc["primary"].(map[string]any)
	if !ok {
		t.Fatalf("%v: no top-level primary object in %.300s", args, stdout)
	}
	return p, stderr
}

func TestFitJSONPrimary(t *testing.T) {
	dir := analysisRun(t)
	p, _ := fitJSON(t, dir, "--bootstrap", "30")
	if p["estimator"] != "token_overhead" {
		t.Errorf("estimator %v", p["estimator"])
	}
	switch p["censored"] {
	case "none", "above", "below":
	default:
		t.Errorf("censored %v", p["censored"])
	}
	iv, ok := p["interval"].([]any)
	if !ok || len(iv) != 2 {
		t.Errorf("interval %v", p["interval"])
	}
	for _, key := range []string{"tau", "reference_batch_tokens", "cbs_tokens", "level", "bound_tokens", "replicates", "loss_level",
		"rungs", "resamples_used", "resamples_failed", "resamples_censored_above", "resamples_censored_below", "statement"} {
		if _, ok := p[key]; !ok {
			t.Errorf("primary lacks %q", key)
		}
	}
	if p["tau"] != 0.2 || p["reference_batch_tokens"] != 8192.0 || p["replicates"] != 2.0 || p["resamples_used"] != 30.0 {
		t.Errorf("primary %v", p)
	}
	rungs, _ := p["rungs"].([]any)
	if len(rungs) != 6 {
		t.Fatalf("%d rungs", len(rungs))
	}
	if r, _ := rungs[1].(map[string]any); r["batch_tokens"] != 16384.0 || r["replicates"] != 2.0 || r["overhead"] == nil {
		t.Errorf("rung 16Ki %v", r)
	}
}

// TestFitJSONGolden: the primary, loss_slope and sensitivity objects of `cbs fit --json` on a
// fixed synthetic sweep are a golden file (rerun with -update after a deliberate change).
func TestFitJSONGolden(t *testing.T) {
	dir := analysisRun(t)
	code, stdout, stderr := analysisCLI(t, "fit", "--json", "--bootstrap", "50", "--out", filepath.Join(t.TempDir(), "cbs.json"), dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	summary := map[string]json.RawMessage{"primary": doc["primary"], "loss_slope": doc["loss_slope"], "sensitivity": doc["sensitivity"]}
	got, err := json.MarshalIndent(summary, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "fit", "summary.golden.json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("cbs fit --json summary differs from %s; inspect it, then rerun with -update:\n%s", golden, got)
	}
}

// TestFitReferenceFromSweep: a run directory is measured against the sweep's
// branches.reference_batch unless --ref-batch says otherwise.
func TestFitReferenceFromSweep(t *testing.T) {
	dir := analysisRun(t)
	resolved := func(ref string) {
		toml := "[experiment]\nseed = 3\n\n[branches]\nbatch_sizes = [\"8Ki\", \"16Ki\", \"32Ki\", \"64Ki\", \"128Ki\", \"256Ki\"]\n" +
			"reference_batch = " + ref + "\n\n[analysis]\nmetric = \"auto\"\neps = 0.01\nnum_targets = 5\ntau = 0.2\nbootstrap = 10\nlevel = 0.9\n"
		if err := os.WriteFile(filepath.Join(dir, "resolved.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		ref  string
		args []string
		want float64
	}{
		{`"16Ki"`, nil, 16384},
		{"16384", nil, 16384},
		{`"16Ki"`, []string{"--ref-batch", "32Ki"}, 32768},
		{"0", nil, 8192},
		// The LR reference need not be on the ladder; there is then no curve to measure against.
		{`"12Ki"`, nil, 8192},
	} {
		resolved(tc.ref)
		p, _ := fitJSON(t, append([]string{dir}, tc.args...)...)
		if p["reference_batch_tokens"] != tc.want {
			t.Errorf("reference_batch = %s %v: primary reference %v, want %v", tc.ref, tc.args, p["reference_batch_tokens"], tc.want)
		}
	}
}

// TestFitReplicateTable reads a loss-curve table with replicates; with one replicate at a rung,
// the warning reaches stderr.
func TestFitReplicateTable(t *testing.T) {
	var b strings.Builder
	b.WriteString("batch_size,replicate,tokens,loss\n")
	for _, batch := range []float64{8192, 16384, 32768, 65536, 131072} {
		reps := 2
		if batch == 131072 {
			reps = 1
		}
		for r := 0; r < reps; r++ {
			for k := 1; k <= 32; k++ {
				tok := float64(k << 20)
				fmt.Fprintf(&b, "%g,seed%d,%g,%.9g\n", batch, r, tok, 2+3/math.Sqrt(tok/(1+batch/49152)/(1<<20))+0.001*float64(r))
			}
		}
	}
	csv := filepath.Join(t.TempDir(), "curves.csv")
	if err := os.WriteFile(csv, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := analysisCLI(t, "fit", "--table", csv, "--bootstrap", "20")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	t.Log("\n" + stdout)
	for _, want := range []string{"primary estimate: token overhead T_B(L)/T_ref(L), tau 0.2, reference batch 8Ki", "CBS = 19", "\n128Ki  1  "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if want := "warning: one replicate at batch 128Ki: the intervals cover eval-set noise only"; !strings.Contains(stderr, want) || !strings.Contains(stdout, want) {
		t.Errorf("stdout and stderr should both carry %q; stderr: %s", want, stderr)
	}
	p, _ := fitJSON(t, "--table", csv, "--bootstrap", "20", "--ref-batch", "16Ki")
	if p["reference_batch_tokens"] != 16384.0 || p["replicates"] != 1.0 {
		t.Errorf("--ref-batch 16Ki: %v", p)
	}
}

func TestFitTable(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "steps.csv")
	os.WriteFile(csv, []byte("batch_size,steps\n8Ki,12000\n16Ki,7000\n32Ki,4500\n64Ki,3250\n128Ki,2625\n"), 0o644)
	code, stdout, stderr := analysisCLI(t, "fit", "--table", csv, "--bootstrap", "20")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// S = 2000 (1 + 40960/B): B_crit = 40Ki.
	if !strings.Contains(stdout, "40Ki") {
		t.Errorf("table fit:\n%s", stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, "fit")); err == nil {
		t.Error("--table without --out wrote a file")
	}
}

func TestFitRejectsBadInput(t *testing.T) {
	empty := t.TempDir()
	csv := filepath.Join(t.TempDir(), "bad.csv")
	os.WriteFile(csv, []byte("batch_size,tokens,loss\n1024,2048,3.5\n1024,4096,three\n"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"fit"}, 2, "missing RUN_DIR"},
		{[]string{"fit", empty, "--table", csv}, 2, "not both"},
		{[]string{"fit", empty, "--eps", "-1"}, 2, "eps = -1: must be a fraction of the reference loss in (0, 1)"},
		{[]string{"fit", empty, "--targets", "3.1,x"}, 2, `--targets: "x" is not a number`},
		{[]string{"fit", empty, "--ref-batch", "lots"}, 2, `--ref-batch: "lots" is not a token count`},
		{[]string{"fit", empty, "--metric", "acc"}, 2, `metric = "acc": allowed auto, eval_loss, train_loss_ema`},
		{[]string{"fit", empty}, 1, "no branches directory"},
		{[]string{"fit", "--table", csv}, 1, `bad.csv line 3: column loss = "three": not a number`},
		{[]string{"fit", empty, "--eps", "1.5"}, 2, "eps = 1.5: must be a fraction of the reference loss in (0, 1)"},
		{[]string{"fit", empty, "--eps-abs", "-0.1"}, 2, "eps_abs = -0.1: must be an absolute loss tolerance >= 0"},
		{[]string{"fit", empty, "--tau", "0"}, 2, "tau = 0: must be a token overhead in (0, 10]"},
	} {
		code, _, stderr := analysisCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d with %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// unfinishedRun is analysisRun caught mid-sweep: replicate 1 of the 256Ki batch is running at
// half its budget, and replicate 1 of 128Ki has not started (no state.json and no metrics, as a
// sweep leaves a branch it has not reached).
func unfinishedRun(t *testing.T) string {
	t.Helper()
	dir := analysisRun(t)
	b256 := filepath.Join(dir, "branches", synth.ID(256<<10, 1))
	raw, err := os.ReadFile(filepath.Join(b256, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var r struct{ Tokens int64 }
		if json.Unmarshal([]byte(l), &r) == nil && r.Tokens <= 4<<20 {
			kept = append(kept, l)
		}
	}
	if err := os.WriteFile(filepath.Join(b256, "metrics.jsonl"), []byte(strings.Join(kept, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b256, "state.json"), []byte(`{"state":"running","step":16}`), 0o644); err != nil {
		t.Fatal(err)
	}
	b128 := filepath.Join(dir, "branches", synth.ID(128<<10, 1))
	for _, f := range []string{"metrics.jsonl", "state.json"} {
		if err := os.Remove(filepath.Join(b128, f)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestFitRefusesUnfinished: fit, plot and report refuse a sweep that has not finished, naming
// the unfinished branches, how far each got and the next step, with exit status 1, and write
// nothing.
func TestFitRefusesUnfinished(t *testing.T) {
	dir := unfinishedRun(t)
	for _, verb := range []string{"fit", "plot", "report"} {
		code, stdout, stderr := analysisCLI(t, verb, dir, "--bootstrap", "10")
		if code != exitError {
			t.Errorf("%s: exit %d, want %d; stderr %s", verb, code, exitError, stderr)
		}
		for _, want := range []string{
			"cbs: " + dir + ": the sweep is unfinished; 2 of 12 branches are not done:\n",
			"  b0128Ki-r1  pending (not started)  0 of 8Mi tokens\n",
			"  b0256Ki-r1  running                4Mi of 8Mi tokens\n",
			"finish the sweep first: cbs sweep --config FILE resumes it (cbs status " + dir + " shows how far it got), or fit what is there with --partial\n",
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%s: stderr lacks %q:\n%s", verb, want, stderr)
			}
		}
		if strings.Contains(stderr, "no metrics.jsonl") || stdout != "" {
			t.Errorf("%s: stdout %q, stderr %s", verb, stdout, stderr)
		}
	}
	for _, p := range []string{"fit", "figures", "report.md"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("a refused fit wrote %s", p)
		}
	}
	// With no branch that has logged a step, --partial has nothing to fit either.
	empty := t.TempDir()
	if err := synth.Write(empty, synth.Spec{Batches: []int64{1 << 10, 2 << 10}, Budget: 64 << 10, EvalEvery: 16 << 10, Bcrit: 4 << 10, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{synth.ID(1<<10, 0), synth.ID(2<<10, 0)} {
		os.Remove(filepath.Join(empty, "branches", id, "metrics.jsonl"))
		os.Remove(filepath.Join(empty, "branches", id, "state.json"))
	}
	code, _, stderr := analysisCLI(t, "fit", empty, "--partial")
	if code != exitError || !strings.Contains(stderr, "no branch has metrics yet; 2 of 2 branches unfinished") ||
		!strings.Contains(stderr, "cbs sweep --config FILE resumes it") || strings.Contains(stderr, "--partial") {
		t.Errorf("--partial with no metrics: exit %d, stderr %s", code, stderr)
	}
}

// TestFitPartial: with --partial the fit is made from what the branches logged, and the table,
// stderr and the JSON say that it is partial and which branches are unfinished.
func TestFitPartial(t *testing.T) {
	dir := unfinishedRun(t)
	code, stdout, stderr := analysisCLI(t, "fit", dir, "--partial", "--bootstrap", "20")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	t.Log("\n" + stdout)
	for _, want := range []string{
		"source: " + dir + "\npartial: 2 of 12 branches unfinished; every estimate below describes training cut short:\n",
		"  b0128Ki-r1  pending  0 of 8Mi tokens    left out: no metrics yet\n",
		"  b0256Ki-r1  running  4Mi of 8Mi tokens  analysed as far as it got\n",
		"metric: eval_loss, compared at 4Mi tokens",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if !strings.Contains(stderr, "warning: partial: 2 of 12 branches unfinished: b0128Ki-r1 (pending: not started, 0 of 8Mi tokens); b0256Ki-r1 (running, 4Mi of 8Mi tokens)") {
		t.Errorf("stderr: %s", stderr)
	}
	code, stdout, stderr = analysisCLI(t, "fit", dir, "--partial", "--bootstrap", "20", "--json")
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, stderr)
	}
	var doc struct {
		Partial    *bool `json:"partial"`
		Branches   int   `json:"branches"`
		Unfinished []struct {
			ID       string  `json:"id"`
			State    string  `json:"state"`
			Tokens   float64 `json:"tokens"`
			Budget   float64 `json:"budget_tokens"`
			Analysed bool    `json:"analysed"`
		} `json:"unfinished"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Partial == nil || !*doc.Partial || doc.Branches != 12 || len(doc.Unfinished) != 2 ||
		doc.Unfinished[0].ID != "b0128Ki-r1" || doc.Unfinished[0].State != "pending" || doc.Unfinished[0].Analysed ||
		doc.Unfinished[1].ID != "b0256Ki-r1" || doc.Unfinished[1].Tokens != 4<<20 || doc.Unfinished[1].Budget != 8<<20 || !doc.Unfinished[1].Analysed {
		t.Errorf("JSON partial %v, branches %d, unfinished %+v", doc.Partial, doc.Branches, doc.Unfinished)
	}
	// A finished sweep says "partial": false, so a reader need not take an absent key on trust.
	_, stdout, _ = analysisCLI(t, "fit", analysisRun(t), "--bootstrap", "0", "--json", "--out", filepath.Join(t.TempDir(), "x.json"))
	if !strings.Contains(stdout, `"partial": false`) || strings.Contains(stdout, `"unfinished"`) {
		t.Errorf("a finished sweep's JSON: %.400s", stdout)
	}
}
