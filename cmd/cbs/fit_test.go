package main

import (
	"bytes"
	"encoding/json"
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
	code, stdout, stderr := analysisCLI(t, "fit", dir, "--bootstrap", "40", "--eps", "0.1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	t.Log("\n" + stdout)
	for _, want := range []string{"metric: eval_loss, compared at 8Mi tokens", "tolerance rule (eps 0.1): CBS in [16Ki, 32Ki)", "steps to target", "knee of L(B)", "gradient noise scale B_simple", "not the CBS"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q", want)
		}
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
	if res.CodeVersion == "" || res.Options.Eps != 0.1 || res.Bootstrap.Resamples != 40 || len(res.Ladder) != 6 {
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

func TestFitTable(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "steps.csv")
	os.WriteFile(csv, []byte("batch_size,steps\n8Ki,12000\n16Ki,7000\n32Ki,4500\n64Ki,3250\n128Ki,2625\n"), 0o644)
	code, stdout, stderr := analysisCLI(t, "fit", "--table", csv, "--bootstrap", "20")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// S = 2000 (1 + 40960/B): B_crit = 40K.
	if !strings.Contains(stdout, "41K") {
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
		{[]string{"fit", empty, "--eps", "-1"}, 2, "eps = -1: must be a loss difference > 0"},
		{[]string{"fit", empty, "--targets", "3.1,x"}, 2, `--targets: "x" is not a number`},
		{[]string{"fit", empty, "--ref-batch", "lots"}, 2, `--ref-batch: "lots" is not a token count`},
		{[]string{"fit", empty, "--metric", "acc"}, 2, `metric = "acc": allowed auto, eval_loss, train_loss_ema`},
		{[]string{"fit", empty}, 1, "no branches directory"},
		{[]string{"fit", "--table", csv}, 1, `bad.csv line 3: column loss = "three": not a number`},
	} {
		code, _, stderr := analysisCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d with %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}
