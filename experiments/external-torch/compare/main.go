// Command compare puts a sweep that cbs trained beside the same sweep trained by another trainer
// (experiments/external-torch/train.py): per batch size, whether both read the same tokens, the
// final eval losses and the largest gap along the eval curves against the eval set's own noise,
// the per-step training losses, and the critical batch size `cbs fit` finds in each. It writes
// comparison.json, comparison.md and three figures into --out.
//
//	go run ./experiments/external-torch/compare --native runs/quickstart/sweep --torch runs/external-torch --out experiments/external-torch/comparison
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"cbs/analysis"
	"cbs/analysis/figure"
	"cbs/model"
	fitreport "cbs/report"
	"cbs/runfmt"
	"cbs/sweep"
)

func main() {
	native := flag.String("native", "runs/quickstart/sweep", "the sweep cbs trained")
	torch := flag.String("torch", "runs/external-torch", "the same sweep trained by the other trainer")
	out := flag.String("out", "experiments/external-torch/comparison", "where to write the comparison")
	flag.Parse()
	if err := run(*native, *torch, *out); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// sweepFit is one sweep loaded and fitted with its own [analysis] options, as cbs fit does.
type sweepFit struct {
	dir  string
	run  *analysis.Run
	data *analysis.Data
	res  *analysis.Result
}

func fit(dir string) (*sweepFit, error) {
	opts, ok := fitreport.SweepOptions(dir)
	if !ok {
		return nil, fmt.Errorf("%s: no readable %s (the sweep's fit options)", dir, sweep.ResolvedFile)
	}
	r, err := analysis.LoadRun(dir)
	if err != nil {
		return nil, err
	}
	if len(r.Unfinished) > 0 || len(r.Excluded) > 0 {
		return nil, fmt.Errorf("%s: every branch must be done; unfinished %v, excluded %v", dir, analysis.UnfinishedLines(r.Unfinished), r.Excluded)
	}
	d, res, err := analysis.FitRun(r, opts, "")
	if err != nil {
		return nil, err
	}
	return &sweepFit{dir: dir, run: r, data: d, res: res}, nil
}

// rung compares one batch size.
type rung struct {
	Batch      float64 `json:"batch_tokens"`
	NativeID   string  `json:"native_id"`
	TorchID    string  `json:"torch_id"`
	StreamHash string  `json:"stream_hash"` // of the training tokens both read
	// Eval loss at the last mark, and torch minus native.
	NativeFinal float64 `json:"native_final_eval_loss"`
	TorchFinal  float64 `json:"torch_final_eval_loss"`
	FinalGap    float64 `json:"final_gap"`
	// The largest |torch - native| over the eval marks, the mark it is at, and the noise scale it
	// is read against: the standard error of the native eval loss at that mark from its eval
	// shards (the noise the fit's bootstrap resamples).
	MaxGap       float64 `json:"max_abs_gap"`
	MaxGapTokens float64 `json:"max_gap_tokens"`
	EvalSE       float64 `json:"native_eval_se"`
	GapOverSE    float64 `json:"max_gap_over_se"`
	// Per-step training losses: the largest and the mean |torch - native|.
	Steps         int     `json:"steps"`
	TrainMaxGap   float64 `json:"train_loss_max_abs_gap"`
	TrainMeanGap  float64 `json:"train_loss_mean_abs_gap"`
	TrainRelMax   float64 `json:"train_loss_max_rel_gap"`
	nativeCurve   analysis.Replicate
	torchCurve    analysis.Replicate
	nativeShardSE []float64
}

type primary struct {
	CBS       analysis.Num    `json:"cbs_tokens"`
	Interval  [2]analysis.Num `json:"interval"`
	Level     float64         `json:"level"`
	Censored  string          `json:"censored"`
	LossLevel analysis.Num    `json:"loss_level"`
	Statement string          `json:"statement"`
}

type report struct {
	Native string  `json:"native"`
	Torch  string  `json:"torch"`
	Metric string  `json:"metric"`
	Rungs  []*rung `json:"rungs"`
	// The loss change per doubling of the batch at equal tokens natively: the size of the
	// differences the CBS is read from.
	LossPerDoubling analysis.Num `json:"native_loss_per_doubling"`
	CBS             struct {     // the token-overhead CBS of each sweep, and torch's over native's
		Native primary           `json:"native"`
		Torch  primary           `json:"torch"`
		Ratio  analysis.RatioFit `json:"ratio_torch_over_native"`
	} `json:"cbs"`
	Note string `json:"note"`
}

func run(nativeDir, torchDir, out string) error {
	nat, err := fit(nativeDir)
	if err != nil {
		return err
	}
	tor, err := fit(torchDir)
	if err != nil {
		return err
	}
	rep := &report{Native: nativeDir, Torch: torchDir, Metric: nat.data.Metric}
	if nat.data.Metric != analysis.MetricEval || tor.data.Metric != analysis.MetricEval {
		return fmt.Errorf("both sweeps need eval losses at common marks: the metrics are %s and %s", nat.data.Metric, tor.data.Metric)
	}
	if len(nat.data.Groups) != len(tor.data.Groups) {
		return fmt.Errorf("%d batch sizes in %s, %d in %s", len(nat.data.Groups), nativeDir, len(tor.data.Groups), torchDir)
	}
	for i, ng := range nat.data.Groups {
		tg := tor.data.Groups[i]
		if ng.Batch != tg.Batch || len(ng.Replicates) != 1 || len(tg.Replicates) != 1 {
			return fmt.Errorf("batch %v: want one replicate in each sweep at the same batch sizes", ng.Batch)
		}
		r, err := compareRung(nat, tor, ng.Batch, ng.Replicates[0], tg.Replicates[0])
		if err != nil {
			return err
		}
		rep.Rungs = append(rep.Rungs, r)
	}
	rep.LossPerDoubling = analysis.Num(math.NaN())
	if nat.res.Slope != nil {
		rep.LossPerDoubling = nat.res.Slope.PerDoubling
	}
	rep.CBS.Native, rep.CBS.Torch = summary(nat.res.Primary), summary(tor.res.Primary)
	rep.CBS.Ratio = analysis.CBSRatio(tor.res.Primary, nat.res.Primary, nat.res.Primary.Level)
	rep.Note = "Both sweeps are fitted with the same options and bootstrap seed, so their resamples draw the same eval shards: the ratio's interval pairs them and covers only how the curves differ, not eval-set noise."
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "comparison.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	md := markdown(rep)
	fmt.Print(md)
	if err := os.WriteFile(filepath.Join(out, "comparison.md"), []byte(md), 0o644); err != nil {
		return err
	}
	return figures(rep, nat, tor, out)
}

// compareRung compares the branches of one batch size, after checking that they read the same
// tokens: the native branch's state.json and the torch trainer's checkpoint record the hash of
// every training token each consumed, in order.
func compareRung(nat, tor *sweepFit, batch float64, nc, tc analysis.Replicate) (*rung, error) {
	r := &rung{Batch: batch, NativeID: nc.ID, TorchID: tc.ID, nativeCurve: nc, torchCurve: tc}
	st, err := runfmt.ReadState(filepath.Join(nat.dir, "branches", nc.ID))
	if err != nil {
		return nil, err
	}
	ts, err := model.LoadTrainerState(filepath.Join(tor.dir, "branches", tc.ID, "ckpt"))
	if err != nil || ts == nil {
		return nil, fmt.Errorf("%s: the torch trainer's checkpoint: %v", tc.ID, err)
	}
	if st.StreamHash == "" || st.StreamHash != ts.StreamHash {
		return nil, fmt.Errorf("batch %v: the native branch read tokens with hash %q, the torch one %q: not the same data (a native run from another corpus or parent?)",
			batch, st.StreamHash, ts.StreamHash)
	}
	r.StreamHash = st.StreamHash
	if len(nc.Tokens) != len(tc.Tokens) {
		return nil, fmt.Errorf("batch %v: %d eval marks natively, %d in torch", batch, len(nc.Tokens), len(tc.Tokens))
	}
	for i := range nc.Tokens {
		if nc.Tokens[i] != tc.Tokens[i] {
			return nil, fmt.Errorf("batch %v: eval mark %d at %v tokens natively, %v in torch", batch, i, nc.Tokens[i], tc.Tokens[i])
		}
		se := shardSE(nc.Shards, i)
		r.nativeShardSE = append(r.nativeShardSE, se)
		if g := math.Abs(tc.Loss[i] - nc.Loss[i]); g >= r.MaxGap {
			r.MaxGap, r.MaxGapTokens, r.EvalSE = g, nc.Tokens[i], se
		}
	}
	n := len(nc.Tokens) - 1
	r.NativeFinal, r.TorchFinal, r.FinalGap = nc.Loss[n], tc.Loss[n], tc.Loss[n]-nc.Loss[n]
	r.GapOverSE = r.MaxGap / r.EvalSE
	nm, err := analysis.ReadMetricsFile(filepath.Join(nat.dir, "branches", nc.ID, runfmt.MetricsFile))
	if err != nil {
		return nil, err
	}
	tm, err := analysis.ReadMetricsFile(filepath.Join(tor.dir, "branches", tc.ID, runfmt.MetricsFile))
	if err != nil {
		return nil, err
	}
	if len(nm) != len(tm) {
		return nil, fmt.Errorf("batch %v: %d steps natively, %d in torch", batch, len(nm), len(tm))
	}
	r.Steps = len(nm)
	var sum float64
	for i := range nm {
		a, b := *nm[i].TrainLoss, *tm[i].TrainLoss
		g := math.Abs(b - a)
		sum += g
		r.TrainMaxGap = math.Max(r.TrainMaxGap, g)
		r.TrainRelMax = math.Max(r.TrainRelMax, g/math.Abs(a))
	}
	r.TrainMeanGap = sum / float64(len(nm))
	return r, nil
}

// shardSE is the standard error of the eval loss at mark i: the standard deviation of its
// shards' losses over the square root of their number.
func shardSE(shards [][]float64, i int) float64 {
	if i >= len(shards) || len(shards[i]) < 2 {
		return math.NaN()
	}
	s := shards[i]
	var mean, ss float64
	for _, v := range s {
		mean += v / float64(len(s))
	}
	for _, v := range s {
		ss += (v - mean) * (v - mean)
	}
	return math.Sqrt(ss/float64(len(s)-1)) / math.Sqrt(float64(len(s)))
}

func summary(p *analysis.PrimaryFit) primary {
	return primary{CBS: p.CBS, Interval: p.Interval, Level: p.Level, Censored: string(p.Censored), LossLevel: p.LossLevel, Statement: p.Statement}
}

func tokens(v analysis.Num) string {
	if !v.Valid() {
		return "-"
	}
	return runfmt.FormatTokens(float64(v))
}

func markdown(rep *report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Native (cbs): `%s`; torch (train.py): `%s`; metric %s.\n\n", rep.Native, rep.Torch, rep.Metric)
	b.WriteString("| batch | steps | native final eval | torch final eval | torch - native | max \\|gap\\| on the curve (at) | native eval SE there | max gap / SE | train loss max \\|gap\\| (relative) |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rep.Rungs {
		fmt.Fprintf(&b, "| %s | %d | %.5f | %.5f | %+.1e | %.1e (%s) | %.4f | %.1e | %.1e (%.1e) |\n",
			runfmt.FormatTokens(r.Batch), r.Steps, r.NativeFinal, r.TorchFinal, r.FinalGap, r.MaxGap,
			runfmt.FormatTokens(r.MaxGapTokens), r.EvalSE, r.GapOverSE, r.TrainMaxGap, r.TrainRelMax)
	}
	row := func(name string, p primary) {
		fmt.Fprintf(&b, "| %s | %s | [%s, %s] | %.4f |\n", name, tokens(p.CBS), tokens(p.Interval[0]), tokens(p.Interval[1]), float64(p.LossLevel))
	}
	fmt.Fprintf(&b, "\n| CBS (token overhead, tau 0.2) | CBS | %.0f%% interval | loss level |\n| --- | --- | --- | --- |\n", 100*rep.CBS.Native.Level)
	row("native (cbs)", rep.CBS.Native)
	row("torch (train.py)", rep.CBS.Torch)
	if r := rep.CBS.Ratio; r.Ratio.Valid() {
		fmt.Fprintf(&b, "\nCBS, torch over native: %.4f, %.0f%% interval [%.4f, %.4f] (paired resamples).\n", float64(r.Ratio), 100*r.Level, float64(r.Interval[0]), float64(r.Interval[1]))
	} else {
		fmt.Fprintf(&b, "\nCBS, torch over native: %s.\n", r.Statement)
	}
	fmt.Fprintf(&b, "Native loss change per doubling of the batch at equal tokens: %+.4f.\n", float64(rep.LossPerDoubling))
	return b.String()
}

// ---------------------------------------------------------------------------------------------
// Figures, column width, in the style of cbs plot.

var palette = []color.Color{
	color.RGBA{0, 114, 178, 255}, color.RGBA{213, 94, 0, 255}, color.RGBA{0, 158, 115, 255},
	color.RGBA{204, 121, 167, 255}, color.RGBA{230, 159, 0, 255}, color.RGBA{86, 180, 233, 255},
}

func newPlot(xlabel, ylabel string) *plot.Plot {
	p := plot.New()
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font.Size = 8
		a.Tick.Label.Font.Size = 7
		a.Tick.Length = vg.Points(3)
	}
	p.X.Label.Text, p.Y.Label.Text = xlabel, ylabel
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, powersOfTwo{}
	p.Legend.TextStyle.Font.Size = 7
	p.Legend.ThumbnailWidth = vg.Points(14)
	p.Legend.Padding = vg.Points(1)
	return p
}

// powersOfTwo ticks a log token axis at powers of two, written as 128Ki, 1Mi.
type powersOfTwo struct{}

func (powersOfTwo) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(math.Log2(lo)); e <= math.Ceil(math.Log2(hi)); e++ {
		if v := math.Exp2(e); v >= lo*(1-1e-9) && v <= hi*(1+1e-9) {
			ts = append(ts, plot.Tick{Value: v, Label: runfmt.FormatTokens(v)})
		}
	}
	return ts
}

func line(xs, ys []float64, c color.Color, dashed bool, glyph draw.GlyphDrawer) (*plotter.Line, *plotter.Scatter, error) {
	xy := make(plotter.XYs, len(xs))
	for i := range xs {
		xy[i] = plotter.XY{X: xs[i], Y: ys[i]}
	}
	l, err := plotter.NewLine(xy)
	if err != nil {
		return nil, nil, err
	}
	l.Color, l.Width = c, vg.Points(1)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(3), vg.Points(2)}
	}
	s, err := plotter.NewScatter(xy)
	if err != nil {
		return nil, nil, err
	}
	s.Color, s.Shape, s.Radius = c, glyph, vg.Points(2.2)
	return l, s, nil
}

func figures(rep *report, nat, tor *sweepFit, out string) error {
	inputs := map[string]any{"native": rep.Native, "torch": rep.Torch, "metric": rep.Metric}
	loss, err := lossFigure(rep, inputs)
	if err != nil {
		return err
	}
	gap, err := gapFigure(rep, nat, inputs)
	if err != nil {
		return err
	}
	// The token overheads and CBS of both sweeps, as cbs plot draws them.
	cmp, err := figure.Compare([]figure.CompareInput{{Label: "cbs", Result: nat.res}, {Label: "PyTorch", Result: tor.res}}, figure.Column)
	if err != nil {
		return err
	}
	cmp.Name = "cbs_native_vs_torch"
	for _, f := range []*figure.Figure{loss, gap, cmp} {
		if _, err := f.Save(out, "png", nat.res); err != nil {
			return err
		}
	}
	return nil
}

// lossFigure draws the eval loss against tokens of both sweeps.
func lossFigure(rep *report, inputs map[string]any) (*figure.Figure, error) {
	// Eval loss against tokens: cbs solid with circles, torch dashed with crosses.
	p := newPlot("tokens", "eval loss (nats/token)")
	for i, r := range rep.Rungs {
		c := palette[i%len(palette)]
		nl, ns, err := line(r.nativeCurve.Tokens, r.nativeCurve.Loss, c, false, draw.RingGlyph{})
		if err != nil {
			return nil, err
		}
		tl, ts, err := line(r.torchCurve.Tokens, r.torchCurve.Loss, c, true, draw.CrossGlyph{})
		if err != nil {
			return nil, err
		}
		p.Add(nl, ns, tl, ts)
		p.Legend.Add(runfmt.FormatTokens(r.Batch), nl)
	}
	grey := color.Gray{Y: 90}
	kn, ksn, _ := line([]float64{1, 2}, []float64{0, 0}, grey, false, draw.RingGlyph{})
	kt, kst, _ := line([]float64{1, 2}, []float64{0, 0}, grey, true, draw.CrossGlyph{})
	p.Legend.Add("cbs", kn, ksn)
	p.Legend.Add("PyTorch", kt, kst)
	p.Legend.Top, p.Legend.Left = false, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(4), vg.Points(2)
	return &figure.Figure{Name: "loss_native_vs_torch", Plot: p, Width: figure.Column, Height: figure.Column * 3 / 4, Inputs: inputs}, nil
}

// gapFigure draws |torch - native| at every eval mark.
func gapFigure(rep *report, nat *sweepFit, inputs map[string]any) (*figure.Figure, error) {
	// |torch - native| at every eval mark, on a log axis beside the two scales a difference
	// would have to reach to matter: the standard error of the native eval loss (the largest of
	// the batch sizes' at each mark), and the loss change per doubling of the batch at the end.
	g := newPlot("tokens", "|eval loss, PyTorch - cbs| (nats/token)")
	g.Y.Scale, g.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: 1}
	marks := rep.Rungs[0].nativeCurve.Tokens
	const floor = 1e-9 // a gap of exactly 0 has no place on a log axis
	for i, r := range rep.Rungs {
		gaps := make([]float64, len(r.nativeCurve.Loss))
		for j := range gaps {
			gaps[j] = math.Max(floor, math.Abs(r.torchCurve.Loss[j]-r.nativeCurve.Loss[j]))
		}
		l, s, err := line(marks, gaps, palette[i%len(palette)], false, draw.CircleGlyph{})
		if err != nil {
			return nil, err
		}
		g.Add(l, s)
		g.Legend.Add(runfmt.FormatTokens(r.Batch), l)
	}
	se := make([]float64, len(marks))
	for i := range marks {
		for _, r := range rep.Rungs {
			se[i] = math.Max(se[i], r.nativeShardSE[i])
		}
	}
	sel, _, err := line(marks, se, color.Gray{Y: 60}, true, draw.CircleGlyph{})
	if err != nil {
		return nil, err
	}
	g.Add(sel)
	g.Legend.Add("eval loss SE", sel)
	if sl := nat.res.Slope; sl != nil && sl.PerDoubling.Valid() {
		d := math.Abs(float64(sl.PerDoubling))
		dl, _, err := line([]float64{marks[0], marks[len(marks)-1]}, []float64{d, d}, color.Gray{Y: 60}, false, draw.CircleGlyph{})
		if err != nil {
			return nil, err
		}
		dl.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
		g.Add(dl)
		g.Legend.Add("loss per batch doubling", dl)
	}
	g.Y.Min, g.Y.Max = floor, 1
	// Between the scales above and the gaps below.
	g.Legend.Top, g.Legend.Left = true, true
	g.Legend.XOffs, g.Legend.YOffs = vg.Points(6), -vg.Points(42)
	return &figure.Figure{Name: "gap_vs_tokens", Plot: g, Width: figure.Column, Height: figure.Column * 3 / 4, Inputs: inputs}, nil
}
