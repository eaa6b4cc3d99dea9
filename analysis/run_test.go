package analysis_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"cbs/analysis"
	"cbs/analysis/synth"
	"cbs/runfmt"
)

// cbsSpec is a small sweep with a true B_crit of 64Ki tokens inside an 8-rung ladder.
func cbsSpec() synth.Spec {
	return synth.Spec{
		Batches:   []int64{4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10},
		Budget:    16 << 20,
		EvalEvery: 512 << 10,
		Shards:    4,
		Bcrit:     64 << 10,
		Seed:      1,
	}
}

func TestPipelineRecoversBcrit(t *testing.T) {
	dir := t.TempDir()
	if err := synth.Write(dir, cbsSpec()); err != nil {
		t.Fatal(err)
	}
	run, err := analysis.LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := analysis.Defaults()
	opts.Bootstrap = 0
	// Losses at 16Mi tokens from 4Ki up: 2.8305, 2.8527, 2.8948, 2.9716, 3.1028, ...; with
	// eps = 3.5% of the 4Ki loss (0.099) the rule passes 8Ki (+0.022) and 16Ki (+0.064) and stops
	// at 32Ki (+0.141).
	opts.Eps = 0.035
	_, res, err := analysis.FitRun(run, opts, "test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Metric != analysis.MetricEval || res.CompareTokens != 16<<20 {
		t.Errorf("metric %s at %v tokens", res.Metric, res.CompareTokens)
	}
	if len(res.Hyperbola.Targets) != opts.NumTargets {
		t.Fatalf("%d targets", len(res.Hyperbola.Targets))
	}
	for _, tf := range res.Hyperbola.Targets {
		if tf.Error != "" {
			t.Errorf("target %v: %s", tf.Target, tf.Error)
			continue
		}
		// Noise-free curves: only the interpolation between eval marks separates the crossings from
		// the exact hyperbola.
		if got := float64(tf.Bcrit); math.Abs(got/(64<<10)-1) > 0.05 {
			t.Errorf("target %v: B_crit %v, want 64Ki within 5%%", tf.Target, got)
		}
	}
	// At equal tokens the loss rises with batch: small steps first, then clearly past B_crit.
	if res.Tolerance.Lower != 16<<10 || res.Tolerance.Upper != 32<<10 {
		t.Errorf("tolerance rule: %s", res.Tolerance.Statement)
	}
	// The token overhead is a straight line in B here: CBS(0.2) = 0.2 B_noise + 1.2 B_ref.
	p := res.Primary
	if want := 0.2*(64<<10) + 1.2*(4<<10); p.Error != "" || p.Censored != analysis.NotCensored || math.Abs(float64(p.CBS)/want-1) > 0.05 {
		t.Errorf("primary: %s; want CBS %.0f within 5%%", p.Statement, want)
	}
	if !strings.HasPrefix(res.Knee.Error, "not applicable") {
		t.Errorf("final loss rises with batch, but the knee fit says %s", res.Knee.Statement)
	}
}

func TestDiffusionLikeLadderIsCensoredAbove(t *testing.T) {
	// Loss keeps falling with batch up to the largest batch, as in the diffusion report: every
	// estimator must say "CBS >= largest", none a number.
	spec := synth.Spec{
		Batches:   []int64{1 << 20, 2 << 20, 4 << 20, 8 << 20},
		Budget:    64 << 20,
		EvalEvery: 8 << 20,
		// A B_crit far beyond the ladder makes progress a function of tokens alone; the batch
		// effect then makes the loss fall with batch.
		Bcrit:       1 << 40,
		Progress:    func(x float64) float64 { return synth.DefaultProgress(x * (1 << 20)) },
		BatchEffect: func(b float64) float64 { return 40 * math.Pow(b, -0.3) },
		Seed:        2,
	}
	dir := t.TempDir()
	if err := synth.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	run, err := analysis.LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := analysis.Defaults()
	opts.Bootstrap = 50
	_, res, err := analysis.FitRun(run, opts, "test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Tolerance.Censored != analysis.CensoredAbove || !strings.HasPrefix(res.Tolerance.Statement, "CBS >= 8Mi tokens") {
		t.Errorf("tolerance: %s", res.Tolerance.Statement)
	}
	if res.Knee.Censored != analysis.CensoredAbove || res.Knee.Knee.Valid() {
		t.Errorf("knee: %s", res.Knee.Statement)
	}
	if !strings.Contains(res.Knee.Statement, "1 degree(s) of freedom") {
		t.Errorf("knee statement hides its degrees of freedom: %s", res.Knee.Statement)
	}
	if res.Bootstrap.Method != "residual" {
		t.Errorf("bootstrap method %s with one replicate and no shards", res.Bootstrap.Method)
	}
}

func TestBootstrapIsReproducible(t *testing.T) {
	dir := t.TempDir()
	spec := cbsSpec()
	spec.Batches = spec.Batches[2:]
	spec.EvalNoise = 0.01
	if err := synth.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	run, err := analysis.LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	fit := func(seed uint64) []byte {
		opts := analysis.Defaults()
		opts.Bootstrap, opts.Seed = 40, seed
		_, res, err := analysis.FitRun(run, opts, "test")
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b, c := fit(3), fit(3), fit(4)
	if !bytes.Equal(a, b) {
		t.Error("same seed gave different results")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds gave identical intervals")
	}
	var res analysis.Result
	if err := json.Unmarshal(a, &res); err != nil {
		t.Fatalf("cbs.json does not read back: %v", err)
	}
	if res.Bootstrap.Method != "data" || res.Bootstrap.Shards != 4 {
		t.Errorf("bootstrap %+v", res.Bootstrap)
	}
}

func TestMalformedRuns(t *testing.T) {
	writeBranch := func(t *testing.T, dir, id, metrics string) {
		t.Helper()
		b := filepath.Join(dir, "branches", id)
		if err := os.MkdirAll(b, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(b, "branch.json"), []byte(`{"id":"`+id+`","batch_tokens":1024}`), 0o644)
		if metrics != "-" {
			os.WriteFile(filepath.Join(b, "metrics.jsonl"), []byte(metrics), 0o644)
		}
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"empty directory", func(t *testing.T, dir string) {}, "no branches directory"},
		{"no branches", func(t *testing.T, dir string) { os.MkdirAll(filepath.Join(dir, "branches"), 0o755) }, "no branches found"},
		{"no metrics file", func(t *testing.T, dir string) {
			writeBranch(t, dir, "b1", "-")
			os.WriteFile(filepath.Join(dir, "branches", "b1", "state.json"), []byte(`{"state":"done"}`), 0o644)
		}, "branch b1: no metrics.jsonl"},
		{"empty metrics", func(t *testing.T, dir string) { writeBranch(t, dir, "b1", "\n") }, "has no metrics lines"},
		{"NaN loss", func(t *testing.T, dir string) {
			writeBranch(t, dir, "b1", "{\"tokens\":1024,\"train_loss\":3}\n{\"tokens\":2048,\"train_loss\":NaN}\n")
		}, "metrics.jsonl line 2: non-finite number NaN"},
		{"text line", func(t *testing.T, dir string) { writeBranch(t, dir, "b1", "step 1 loss 3\n") }, "line 1: not a JSON object"},
		{"no tokens", func(t *testing.T, dir string) { writeBranch(t, dir, "b1", "{\"train_loss\":3}\n") }, "line 1: missing key tokens"},
		{"bad state", func(t *testing.T, dir string) {
			writeBranch(t, dir, "b1", "{\"tokens\":1024,\"train_loss\":3}\n")
			os.WriteFile(filepath.Join(dir, "branches", "b1", "state.json"), []byte(`{"state":"finished"}`), 0o644)
		}, `state = "finished": allowed`},
		{"only diverged", func(t *testing.T, dir string) {
			writeBranch(t, dir, "b1", "{\"tokens\":1024,\"train_loss\":NaN}\n")
			os.WriteFile(filepath.Join(dir, "branches", "b1", "state.json"), []byte(`{"state":"diverged","reason":"loss is NaN"}`), 0o644)
		}, "no branch to analyse; excluded: [b1: diverged (loss is NaN)]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			_, err := analysis.LoadRun(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestZeroLossIsRejected(t *testing.T) {
	dir := t.TempDir()
	b := filepath.Join(dir, "branches", "x")
	os.MkdirAll(b, 0o755)
	os.WriteFile(filepath.Join(b, "branch.json"), []byte(`{"id":"x","batch_tokens":1024}`), 0o644)
	os.WriteFile(filepath.Join(b, "metrics.jsonl"), []byte("{\"tokens\":1024,\"eval_loss\":0}\n"), 0o644)
	run, err := analysis.LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = analysis.FitRun(run, analysis.Defaults(), "test")
	if err == nil || !strings.Contains(err.Error(), "branch x: eval_loss = 0 at tokens 1024: losses must be finite and > 0") {
		t.Errorf("err = %v", err)
	}
}

func TestResumedMetricsKeepTheFinishedHistory(t *testing.T) {
	in := "{\"tokens\":1,\"train_loss\":5}\n{\"tokens\":2,\"train_loss\":4}\n{\"tokens\":3,\"train_loss\":9}\n{\"tokens\":2,\"train_loss\":4.5}\n{\"tokens\":3,\"train_loss\":3}\n"
	recs, err := analysis.ReadMetrics(strings.NewReader(in), "m")
	if err != nil {
		t.Fatal(err)
	}
	var got []float64
	for _, r := range recs {
		got = append(got, *r.TrainLoss)
	}
	if len(got) != 3 || got[0] != 5 || got[1] != 4.5 || got[2] != 3 {
		t.Errorf("losses after a resume: %v, want [5 4.5 3]", got)
	}
	// Read from a run directory, the step back is said in the fit's notes.
	dir := t.TempDir()
	b := filepath.Join(dir, "branches", "x")
	os.MkdirAll(b, 0o755)
	os.WriteFile(filepath.Join(b, "branch.json"), []byte(`{"id":"x","batch_tokens":1}`), 0o644)
	os.WriteFile(filepath.Join(b, "metrics.jsonl"), []byte(in), 0o644)
	run, err := analysis.LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := analysis.FromRun(run, analysis.MetricTrainEMA, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(d.Notes, "\n"), "line 4 goes back from 3 to 2 tokens") {
		t.Errorf("notes %q do not say where the metrics went back", d.Notes)
	}
}

// The end-of-training noise scale recovers the true tr(Sigma)/|G|^2 when the per-step norms are
// informative, and says "too noisy" instead of a number when they are not.
func TestEndNoiseScale(t *testing.T) {
	tests := []struct {
		name      string
		batch     int64
		bSimple   float64
		wantNoisy bool
	}{
		// 16Ki batches of 64-token micro-batches against a B_simple of 8Ki: both norms move.
		{"informative", 16 << 10, 8 << 10, false},
		// B_simple of 2 tokens: the batch gradient's noise term is negligible against |G|^2 and the
		// micro-batch's barely above it, so the 30% noise of the small norm swamps tr(Sigma).
		{"swamped", 16 << 10, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			spec := synth.Spec{Batches: []int64{tc.batch}, Budget: 512 * tc.batch, EvalEvery: 64 * tc.batch, Bcrit: 1 << 20, GNS: true, BSimple: tc.bSimple, Seed: 3}
			if err := synth.Write(dir, spec); err != nil {
				t.Fatal(err)
			}
			run, err := analysis.LoadRun(dir)
			if err != nil {
				t.Fatal(err)
			}
			e, ok := analysis.EndNoiseScale(run.Branches[0], float64(128*tc.batch), 200, 1, 0.9)
			if !ok {
				t.Fatal("no gradient-noise fields found")
			}
			if e.TooNoisy != tc.wantNoisy {
				t.Fatalf("too noisy = %v, want %v (estimate %.4g, interval [%.4g, %.4g], %.0f%% of |G|^2 <= 0)", e.TooNoisy, tc.wantNoisy, e.BSimple, e.Lo, e.Hi, 100*e.NonPositive)
			}
			if !tc.wantNoisy && (math.Abs(e.BSimple/tc.bSimple-1) > 0.15 || e.Lo > tc.bSimple || e.Hi < tc.bSimple) {
				t.Errorf("B_simple %.4g, interval [%.4g, %.4g]; want %.4g within 15%% and inside the interval", e.BSimple, e.Lo, e.Hi, tc.bSimple)
			}
		})
	}
}

// unfinishedSweep is a ladder of 1Ki to 8Ki with 1Ki micro-batches, in which the 4Ki branch is
// running at half its budget, the 8Ki branch has not started (no state.json, no metrics: a sweep
// writes every branch.json first), and the manifest names a 16Ki branch whose directory does
// not exist yet.
func unfinishedSweep(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := synth.Write(dir, synth.Spec{Batches: []int64{1 << 10, 2 << 10, 4 << 10, 8 << 10}, Budget: 256 << 10, EvalEvery: 32 << 10,
		Shards: 4, Bcrit: 4 << 10, MicroBatch: 1 << 10, GNS: true, BSimple: 4000, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	truncateBranch(t, filepath.Join(dir, "branches", synth.ID(4<<10, 0)), 128<<10, "running")
	b8 := filepath.Join(dir, "branches", synth.ID(8<<10, 0))
	for _, f := range []string{"metrics.jsonl", "state.json"} {
		if err := os.Remove(filepath.Join(b8, f)); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, b := range []int64{1 << 10, 2 << 10, 4 << 10, 8 << 10, 16 << 10} {
		ids = append(ids, synth.ID(b, 0))
	}
	m, _ := json.Marshal(map[string]any{"experiment": "x", "branches": ids})
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// truncateBranch keeps the metrics lines of a branch up to tokens and sets its state.
func truncateBranch(t *testing.T, bdir string, tokens int64, state string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(bdir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var r struct{ Tokens int64 }
		if json.Unmarshal([]byte(l), &r) == nil && r.Tokens <= tokens {
			kept = append(kept, l)
		}
	}
	if err := os.WriteFile(filepath.Join(bdir, "metrics.jsonl"), []byte(strings.Join(kept, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bdir, "state.json"), []byte(`{"state":"`+state+`","step":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestUnfinishedBranches(t *testing.T) {
	dir := unfinishedSweep(t)
	run, err := analysis.LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []analysis.Unfinished{
		{ID: "b0004Ki-r0", Batch: 4 << 10, State: "running", Tokens: 128 << 10, Budget: 256 << 10, Analysed: true},
		{ID: "b0008Ki-r0", Batch: 8 << 10, State: "pending", Reason: "not started", Budget: 256 << 10},
		{ID: "b0016Ki-r0", State: "pending", Reason: "no branch directory yet"},
	}
	if !reflect.DeepEqual(run.Unfinished, want) {
		t.Errorf("unfinished %+v\nwant %+v", run.Unfinished, want)
	}
	if run.Total != 5 || len(run.Branches) != 3 {
		t.Errorf("%d branches in all, %d analysed; want 5 and 3", run.Total, len(run.Branches))
	}
	if got := run.Unfinished[0].Line(); got != "b0004Ki-r0 (running, 128Ki of 256Ki tokens)" {
		t.Errorf("line %q", got)
	}
	opts := analysis.Defaults()
	opts.Bootstrap = 0
	_, res, err := analysis.FitRun(run, opts, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Partial || res.Branches != 5 || len(res.Unfinished) != 3 || res.PartialNote() != "partial: 3 of 5 branches unfinished" {
		t.Errorf("partial %v, %d branches, unfinished %v, note %q", res.Partial, res.Branches, res.Unfinished, res.PartialNote())
	}
	if res.CompareTokens != 128<<10 {
		t.Errorf("compared at %v tokens, want the running branch's 128Ki", res.CompareTokens)
	}
	notes := strings.Join(res.Notes, "\n")
	for _, n := range []string{"unfinished b0004Ki-r0 (running, 128Ki of 256Ki tokens): analysed as far as it got",
		"unfinished b0008Ki-r0 (pending: not started, 0 of 256Ki tokens): left out, no metrics yet"} {
		if !strings.Contains(notes, n) {
			t.Errorf("notes lack %q:\n%s", n, notes)
		}
	}
	// The 1Ki branch trains one micro-batch per step: no noise scale, and the fit says why.
	if ns := res.NoiseScale; ns == nil || len(ns.Missing) != 1 || ns.Missing[0].ID != "b0001Ki-r0" || ns.Missing[0].Reason != analysis.NoGNSOneMicroBatch {
		t.Errorf("noise scale gaps %+v", res.NoiseScale)
	}

	// A finished sweep is not partial.
	fin := t.TempDir()
	if err := synth.Write(fin, synth.Spec{Batches: []int64{1 << 10, 2 << 10}, Budget: 64 << 10, EvalEvery: 16 << 10, Bcrit: 4 << 10, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	frun, err := analysis.LoadRun(fin)
	if err != nil {
		t.Fatal(err)
	}
	if _, fres, err := analysis.FitRun(frun, opts, "test"); err != nil || fres.Partial || len(fres.Unfinished) != 0 || fres.PartialNote() != "" {
		t.Errorf("a finished sweep: err %v, partial %v", err, fres != nil && fres.Partial)
	}
}

// TestUnfinishedWithoutState: a branch without state.json, as another trainer may leave, is
// finished when its metrics reach its budget and unfinished when they stop short.
func TestUnfinishedWithoutState(t *testing.T) {
	dir := t.TempDir()
	if err := synth.Write(dir, synth.Spec{Batches: []int64{1 << 10, 2 << 10}, Budget: 64 << 10, EvalEvery: 16 << 10, Bcrit: 4 << 10, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	b2 := filepath.Join(dir, "branches", synth.ID(2<<10, 0))
	truncateBranch(t, b2, 32<<10, "done")
	for _, id := range []string{synth.ID(1<<10, 0), synth.ID(2<<10, 0)} {
		os.Remove(filepath.Join(dir, "branches", id, "state.json"))
	}
	run, err := analysis.LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Unfinished) != 1 || run.Unfinished[0].ID != "b0002Ki-r0" || !run.Unfinished[0].Analysed || run.Unfinished[0].Tokens != 32<<10 {
		t.Errorf("unfinished %+v", run.Unfinished)
	}
}

// TestNothingToFitYet: a sweep none of whose branches has logged a step loads, with every branch
// unfinished, and the fit says that nothing has metrics yet rather than naming a missing file.
func TestNothingToFitYet(t *testing.T) {
	dir := t.TempDir()
	if err := synth.Write(dir, synth.Spec{Batches: []int64{1 << 10, 2 << 10}, Budget: 64 << 10, EvalEvery: 16 << 10, Bcrit: 4 << 10, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{synth.ID(1<<10, 0), synth.ID(2<<10, 0)} {
		os.Remove(filepath.Join(dir, "branches", id, "metrics.jsonl"))
		os.WriteFile(filepath.Join(dir, "branches", id, "state.json"), []byte(`{"state":"pending"}`), 0o644)
	}
	run, err := analysis.LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Branches) != 0 || len(run.Unfinished) != 2 {
		t.Fatalf("%d analysed, %d unfinished", len(run.Branches), len(run.Unfinished))
	}
	_, _, err = analysis.FitRun(run, analysis.Defaults(), "test")
	if err == nil || !strings.Contains(err.Error(), "no branch has metrics yet; unfinished: b0001Ki-r0 (pending: not started, 0 of 64Ki tokens)") {
		t.Errorf("err = %v", err)
	}
}

// TestNoiseScaleBreaks: steps whose |G|^2 estimate is not positive leave a break in the B_simple
// series, so that no line is drawn across them.
func TestNoiseScaleBreaks(t *testing.T) {
	var lines []string
	for i := 1; i <= 8; i++ {
		v := "1000"
		if i == 3 || i == 4 || i == 6 {
			v = "-5"
		}
		lines = append(lines, fmt.Sprintf(`{"tokens":%d,"train_loss":3,"gns_trace_ema":%s,"gns_grad_sq_ema":1}`, i*1024, v))
		if i == 5 {
			lines = append(lines, `{"tokens":5120,"eval_loss":3}`) // an eval line, not a gap
		}
	}
	recs, err := analysis.ReadMetrics(strings.NewReader(strings.Join(lines, "\n")), "m")
	if err != nil {
		t.Fatal(err)
	}
	s, ok := analysis.NoiseScale(&analysis.Branch{Spec: runfmt.Branch{ID: "x", BatchTokens: 1024}, Records: recs}, 1)
	if !ok {
		t.Fatal("no series")
	}
	if want := []float64{1024, 2048, 5120, 7168, 8192}; !reflect.DeepEqual(s.Tokens, want) || !reflect.DeepEqual(s.Breaks, []int{2, 3}) {
		t.Errorf("tokens %v breaks %v; want %v and [2 3]", s.Tokens, s.Breaks, want)
	}
}
