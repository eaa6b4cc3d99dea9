package figure_test

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gonum.org/v1/plot"

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
	labels := func(ticks []plot.Tick) string {
		var l []string
		for _, tk := range ticks {
			if tk.Label != "" {
				l = append(l, tk.Label)
			}
		}
		return strings.Join(l, " ")
	}
	for _, tc := range []struct {
		name     string
		min, max float64
		marker   plot.Ticker
		want     string
	}{
		{"tokens, seven powers", 3000, 300000, figure.TokenTicks{}, "4Ki 8Ki 16Ki 32Ki 64Ki 128Ki 256Ki"},
		{"tokens, many powers", 3000, 3e7, figure.TokenTicks{}, "4Ki 16Ki 64Ki 256Ki 1Mi 4Mi 16Mi"},
		// Two octaves hold two powers only: halves join them.
		{"tokens, narrow", 300e3, 1.2e6, figure.TokenTicks{}, "384Ki 512Ki 768Ki 1Mi"},
		{"tokens, very narrow", 1.1e6, 1.9e6, figure.TokenTicks{}, "1.25Mi 1.5Mi 1.75Mi"},
		{"steps, decades", 2e5, 3e8, figure.CountTicks{}, "1e6 1e7 1e8"},
		{"steps, 1-2-5", 40, 700, figure.CountTicks{}, "50 100 200 500"},
		{"steps, narrow", 210, 480, figure.CountTicks{}, "300 400"},
	} {
		if got := labels(tc.marker.Ticks(tc.min, tc.max)); got != tc.want {
			t.Errorf("%s: labels %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestGoldenNoiseGaps: a branch whose |G|^2 estimate was not positive for a while is drawn in
// pieces, with a dot where one value stands alone between two gaps, never a line across a gap;
// a batch size without any noise scale is named in a note with the reason; there is no title.
func TestGoldenNoiseGaps(t *testing.T) {
	var tokens, values []float64
	for i := 1; i <= 40; i++ {
		tokens = append(tokens, float64(i*2048))
		values = append(values, 6000*(1+0.3*math.Sin(float64(i))))
	}
	// Steps 9 to 12 and 14 to 15 had no positive value: points 8 and 9 are the two sides of the
	// first gap, point 10 stands alone before the second.
	gapped := analysis.NoiseSeries{ID: "b0002Ki-r0", Batch: 2048, Source: "gns_b_simple", Breaks: []int{9, 10}}
	for i := range tokens {
		if (i >= 9 && i < 13) || (i >= 14 && i < 16) {
			continue
		}
		gapped.Tokens, gapped.BSimple = append(gapped.Tokens, tokens[i]), append(gapped.BSimple, values[i])
	}
	whole := analysis.NoiseSeries{ID: "b0004Ki-r0", Batch: 4096, Source: "gns_b_simple"}
	for i := 1; i <= 20; i++ {
		whole.Tokens, whole.BSimple = append(whole.Tokens, float64(i*4096)), append(whole.BSimple, 9000*(1+0.2*math.Cos(float64(i))))
	}
	gaps := []analysis.NoiseGap{{ID: "b0001Ki-r0", Batch: 1024, Reason: analysis.NoGNSOneMicroBatch}, {ID: "b0001Ki-r1", Batch: 1024, Reason: analysis.NoGNSOneMicroBatch}}
	f, err := figure.NoiseScale([]analysis.NoiseSeries{gapped, whole}, gaps, figure.Column)
	if err != nil {
		t.Fatal(err)
	}
	f.Name += "_gaps"
	svg := checkGolden(t, f)
	if n := strings.Count(svg, "1Ki: no B_simple (one micro-batch per step)"); n != 1 {
		t.Errorf("the note on the 1Ki branches appears %d times, want once", n)
	}
	if strings.Contains(svg, "predictor") {
		t.Error("the figure has a title; its caption says what it shows")
	}
	// The 2Ki branch: points 0-8, a dot at point 9 and points 10-33, so lines of 9 and 24
	// points, and the legend's thumbnail of 2.
	var lines []int
	for _, l := range regexp.MustCompile(`<path d="([^"]+)" style="fill:none;stroke:#440154;stroke-width:0.8"`).FindAllStringSubmatch(svg, -1) {
		lines = append(lines, strings.Count(l[1], "L")+1)
	}
	slices.Sort(lines)
	if !slices.Equal(lines, []int{2, 9, 24}) {
		t.Errorf("the gapped branch is drawn as lines of %v points, want [2 9 24] (the legend's thumbnail, then the two pieces)", lines)
	}
}

// TestPartialNoteOnEveryFigure: a fit of an unfinished sweep says so in every figure.
func TestPartialNoteOnEveryFigure(t *testing.T) {
	d, res, noise := cbsScenario(t)
	res.Partial, res.Branches = true, 12
	res.Unfinished = []analysis.Unfinished{{ID: "b0256Ki-r1", Batch: 256 << 10, State: "running", Tokens: 4 << 20, Budget: 8 << 20, Analysed: true}}
	figs, skipped := figure.All(d, res, noise, figure.Column)
	if len(skipped) > 0 || len(figs) != 6 {
		t.Fatalf("drew %d figures, skipped %v", len(figs), skipped)
	}
	for _, f := range figs {
		var buf bytes.Buffer
		if err := f.Encode(&buf, "svg"); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "partial: 1 of 12 branches unfinished (b0256Ki-r1 at 4Mi of 8Mi tokens)") {
			t.Errorf("%s does not say that the fit is partial", f.Name)
		}
	}
}

// TestOneUnitConvention: every token count on every figure, on the axes and in the legends and
// notes alike, is written with a binary suffix (Ki, Mi), never with a bare K or M that would mean
// 1024 in one place and 1000 in another.
func TestOneUnitConvention(t *testing.T) {
	d, res, noise := cbsScenario(t)
	figs, _ := figure.All(d, res, noise, figure.Column)
	dd, dres, _ := diffusionScenario(t)
	dfigs, _ := figure.All(dd, dres, nil, figure.Full)
	bare := regexp.MustCompile(`[0-9][KMGT]([^i]|$)`)
	binary := regexp.MustCompile(`[0-9][KMG]i`)
	for _, f := range append(figs, dfigs...) {
		var buf bytes.Buffer
		if err := f.Encode(&buf, "svg"); err != nil {
			t.Fatal(err)
		}
		var texts []string
		for _, m := range regexp.MustCompile(`>([^<>]*)</text>`).FindAllStringSubmatch(buf.String(), -1) {
			texts = append(texts, m[1])
		}
		all := strings.Join(texts, " | ")
		if m := bare.FindString(all); m != "" {
			t.Errorf("%s writes a count with a bare suffix (%q): %s", f.Name, m, all)
		}
		if strings.Contains(all, "K = 1024") {
			t.Errorf("%s still explains K as 1024: %s", f.Name, all)
		}
		if !binary.MatchString(all) {
			t.Errorf("%s writes no token count in Ki or Mi: %s", f.Name, all)
		}
	}
}

// TestStepsTokensLabelsBatches: each batch size's points are labelled with the batch, the legend
// sits above the data, and the token axis has at least four labels.
func TestStepsTokensLabelsBatches(t *testing.T) {
	_, res, _ := cbsScenario(t)
	f, err := figure.StepsTokens(res, figure.Column)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := f.Encode(&buf, "svg"); err != nil {
		t.Fatal(err)
	}
	svg := buf.String()
	for _, b := range []string{"8Ki", "16Ki", "32Ki", "64Ki", "128Ki", "256Ki"} {
		if !strings.Contains(svg, ">"+b+"</text>") {
			t.Errorf("no label %s", b)
		}
	}
	labels := 0
	for _, tk := range f.Plot.Y.Tick.Marker.Ticks(f.Plot.Y.Min, f.Plot.Y.Max) {
		if tk.Label != "" {
			labels++
		}
	}
	if labels < 4 {
		t.Errorf("the token axis has %d labels", labels)
	}
	// The legend's strip lies above the data area: its first entry is higher than the top of
	// the y axis.
	top := regexp.MustCompile(`<path d="M[0-9.]+,[0-9.]+L[0-9.]+,([0-9.]+)" style="fill:none;stroke:#000000;stroke-width:0.5"`).FindAllStringSubmatch(svg, -1)
	entry := regexp.MustCompile(`<text x="[0-9.]+" y="-([0-9.]+)"[^>]*>L = `).FindStringSubmatch(svg)
	if len(top) == 0 || entry == nil {
		t.Fatal("no axis or no legend entry found")
	}
	axisTop := 0.0
	for _, m := range top {
		v, _ := strconv.ParseFloat(m[1], 64)
		axisTop = math.Max(axisTop, v)
	}
	if y, _ := strconv.ParseFloat(entry[1], 64); y <= axisTop {
		t.Errorf("the legend (at y %v) is inside the data area (top %v)", y, axisTop)
	}
}
