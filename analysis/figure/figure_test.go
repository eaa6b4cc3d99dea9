package figure_test

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/vg"

	"cbs/analysis"
	"cbs/analysis/figure"
	"cbs/analysis/synth"
)

var update = flag.Bool("update", false, "rewrite the golden SVG files under testdata/")

// scenario builds a run from known laws and fits it with a fixed seed.
func scenario(t *testing.T, spec synth.Spec, eps float64) (*analysis.Data, *analysis.Result, []analysis.NoiseSeries) {
	t.Helper()
	dir := t.TempDir()
	if err := synth.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	run, err := analysis.LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := analysis.Defaults()
	opts.Bootstrap, opts.Seed, opts.Eps = 60, 1, eps
	d, res, err := analysis.FitRun(run, opts, "golden")
	if err != nil {
		t.Fatal(err)
	}
	res.Source = "testdata" // the temporary directory's name would change every run
	return d, res, analysis.NoiseScales(run, 0)
}

// cbsScenario: a true B_crit of 64Ki, two replicates, eval shards, gradient-noise logging.
func cbsScenario(t *testing.T) (*analysis.Data, *analysis.Result, []analysis.NoiseSeries) {
	return scenario(t, synth.Spec{
		Batches:    []int64{8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10},
		Replicates: 2,
		Budget:     8 << 20,
		EvalEvery:  256 << 10,
		Shards:     4,
		Bcrit:      64 << 10,
		EvalNoise:  0.003, ShardSpread: 0.02, ReplicateNoise: 0.004,
		GNS: true, BSimple: 20000,
		Seed: 5,
	}, 0.1)
}

// diffusionScenario: loss still falls with batch at the largest batch, as in the diffusion report.
func diffusionScenario(t *testing.T) (*analysis.Data, *analysis.Result, []analysis.NoiseSeries) {
	return scenario(t, synth.Spec{
		Batches:     []int64{1 << 20, 2 << 20, 4 << 20, 8 << 20},
		Replicates:  3,
		Budget:      64 << 20,
		EvalEvery:   8 << 20,
		Bcrit:       1 << 40,
		Progress:    func(x float64) float64 { return synth.DefaultProgress(x * (1 << 20)) },
		BatchEffect: func(b float64) float64 { return 40 * math.Pow(b, -0.3) },
		EvalNoise:   0.004,
		Seed:        2,
	}, 0.01)
}

func TestGoldenSVG(t *testing.T) {
	d, res, noise := cbsScenario(t)
	figs, skipped := figure.All(d, res, noise, figure.Column)
	if len(skipped) > 0 || len(figs) != 6 {
		t.Fatalf("drew %d figures, skipped %v", len(figs), skipped)
	}
	dd, dres, _ := diffusionScenario(t)
	censored, err := figure.FinalLoss(dres, figure.Column)
	if err != nil {
		t.Fatal(err)
	}
	censored.Name += "_censored"
	full, err := figure.LossCurves(dd, figure.Full)
	if err != nil {
		t.Fatal(err)
	}
	full.Name += "_full"
	figs = append(figs, censored, full)
	out := os.Getenv("CBS_FIGURE_DIR") // set it to look at the PNGs
	for _, f := range figs {
		if f.Name == "overhead_vs_batch" {
			f.Name += "_scenario" // TestGoldenOverhead owns the plain name
		}
		var buf bytes.Buffer
		if err := f.Encode(&buf, "svg"); err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", f.Name+".golden.svg")
		if *update {
			if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./analysis/figure -update to create it)", err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s differs from %s; inspect the figure, then rerun with -update", f.Name, golden)
		}
		if out != "" {
			for _, format := range figure.Formats {
				if _, err := f.Save(out, format, res); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func TestSVGIsByteStable(t *testing.T) {
	_, res, _ := diffusionScenario(t)
	var a, b bytes.Buffer
	for _, buf := range []*bytes.Buffer{&a, &b} {
		f, err := figure.FinalLoss(res, figure.Full)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Encode(buf, "svg"); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two drawings of the same figure differ")
	}
	for _, format := range []string{"pdf", "png"} {
		var x, y bytes.Buffer
		f, _ := figure.FinalLoss(res, figure.Column)
		f.Encode(&x, format)
		f, _ = figure.FinalLoss(res, figure.Column)
		f.Encode(&y, format)
		if x.Len() == 0 || !bytes.Equal(x.Bytes(), y.Bytes()) {
			t.Errorf("%s output is empty or not reproducible (a timestamp?)", format)
		}
	}
}

func TestSaveWritesProvenance(t *testing.T) {
	_, res, _ := diffusionScenario(t)
	f, err := figure.FinalLoss(res, figure.Column)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path, err := f.Save(dir, "svg", res)
	if err != nil {
		t.Fatal(err)
	}
	prov, err := os.ReadFile(path + ".json")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"figure": "final_loss_vs_batch"`, `"code_version": "golden"`, `"width_in": 3.25`, `"knee"`} {
		if !strings.Contains(string(prov), want) {
			t.Errorf("provenance lacks %s", want)
		}
	}
	if _, err := f.Save(dir, "gif", res); err == nil || !strings.Contains(err.Error(), `format "gif": allowed svg, png, pdf`) {
		t.Errorf("unknown format: %v", err)
	}
}

func TestUnsupportedFiguresAreSkippedNotEmpty(t *testing.T) {
	d, err := analysis.ReadTable(strings.NewReader("batch_size,steps\n1024,900\n2048,500\n4096,300\n8192,220\n"), "s.csv")
	if err != nil {
		t.Fatal(err)
	}
	res, err := analysis.Analyze(d, analysis.Defaults(), "v")
	if err != nil {
		t.Fatal(err)
	}
	figs, skipped := figure.All(nil, res, nil, figure.Column)
	var names []string
	for _, f := range figs {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "steps_vs_tokens" {
		t.Errorf("drew %v from a steps table", names)
	}
	if len(skipped) != 5 {
		t.Errorf("skipped %v", skipped)
	}
	for _, s := range skipped {
		if s.Reason == "" {
			t.Errorf("%s skipped without a reason", s.Name)
		}
	}
}

func TestTicks(t *testing.T) {
	var labels []string
	for _, tk := range (figure.Log2Ticks{}).Ticks(3000, 300000) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if got := strings.Join(labels, " "); got != "4K 8K 16K 32K 64K 128K 256K" {
		t.Errorf("log2 labels %q", got)
	}
	labels = nil
	for _, tk := range (figure.Log10Ticks{}).Ticks(2e5, 3e8) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if got := strings.Join(labels, " "); got != "1M 10M 100M" {
		t.Errorf("log10 labels %q", got)
	}
	_ = vg.Inch
}
