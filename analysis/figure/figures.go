package figure

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"cbs/analysis"
	"cbs/runfmt"
)

// Figure is a drawn plot with its name (the file stem) and what it was drawn from.
type Figure struct {
	Name   string
	Plot   *plot.Plot
	Width  vg.Length
	Height vg.Length
	// Inputs is recorded in the provenance file beside the image.
	Inputs any
	// legend, when set, is drawn above the data area and Height already includes it.
	legend *outerLegend
	// notes are drawn in a strip above the legend (AddNote); Height includes them.
	notes []string
}

func height(width vg.Length) vg.Length {
	if width > Column {
		return width * 0.5
	}
	return width * 0.75
}

// LossCurves draws loss against tokens, one line per branch, coloured by batch size (replicates
// share a colour and a legend entry).
func LossCurves(d *analysis.Data, width vg.Length) (*Figure, error) {
	if len(d.Groups) == 0 {
		return nil, errors.New("loss curves: the data hold no loss curves")
	}
	ylabel := "loss (nats/token)"
	switch d.Metric {
	case analysis.MetricEval:
		ylabel = "eval loss (nats/token)"
	case analysis.MetricTrainEMA:
		ylabel = "training loss, EMA (nats/token)"
	}
	p := newPlot(width, "tokens", ylabel)
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, tokenTicks{}
	tmin, tmax, lmin, lmax := math.Inf(1), 0.0, math.Inf(1), math.Inf(-1)
	points := 0
	for gi, g := range d.Groups {
		col := sequential(gi, len(d.Groups))
		for ri, r := range g.Replicates {
			var xys plotter.XYs
			for i, t := range r.Tokens {
				if t <= 0 {
					continue // a mark at zero tokens has no place on a log axis
				}
				xys = append(xys, plotter.XY{X: t, Y: r.Loss[i]})
				tmin, tmax = math.Min(tmin, t), math.Max(tmax, t)
				lmin, lmax = math.Min(lmin, r.Loss[i]), math.Max(lmax, r.Loss[i])
			}
			if len(xys) == 0 {
				continue
			}
			points += len(xys)
			l, err := plotter.NewLine(xys)
			if err != nil {
				return nil, fmt.Errorf("loss curves: branch %s: %w", r.ID, err)
			}
			l.Color, l.Width = col, vg.Points(1)
			p.Add(l)
			if ri == 0 {
				p.Legend.Add(runfmt.FormatTokens(g.Batch), l)
			}
		}
	}
	if points == 0 {
		return nil, errors.New("loss curves: no mark with tokens > 0")
	}
	p.X.Min, p.X.Max = tmin, tmax
	p.Y.Min, p.Y.Max = padLin(lmin, lmax, 0.03)
	// Curves fall from the top left to the bottom right, leaving the bottom left free.
	p.Legend.Top, p.Legend.Left = false, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(4), vg.Points(2)
	return &Figure{Name: "loss_vs_tokens", Plot: p, Width: width, Height: height(width),
		Inputs: map[string]any{"source": d.Source, "metric": d.Metric, "batches": d.Batches()}}, nil
}

// errPoints carries points with asymmetric vertical error bars.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

// FinalLoss draws the loss at equal tokens against batch size: replicate means with their range
// (min-max, or +-1 SD where only that is known), the fitted L_inf + A B^-alpha with its bootstrap
// band, the tolerance rule's interval shaded, or its bound as an arrow labelled in the words of
// its statement ("CBS >= 8Ki", "CBS < 1Ki"), and the knee as a dashed line where it falls inside
// the ladder.
func FinalLoss(res *analysis.Result, width vg.Length) (*Figure, error) {
	if len(res.Ladder) == 0 || !res.Ladder[0].Loss.Valid() {
		return nil, errors.New("final loss: the result has no losses at equal tokens")
	}
	p := newPlot(width, "batch size (tokens, Ki = 1024)", fmt.Sprintf("loss at %s tokens", runfmt.FormatTokens(float64(res.CompareTokens))))
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, tokenTicks{}
	leg := newOuterLegend(p)
	bmin, bmax := res.Ladder[0].Batch, res.Ladder[len(res.Ladder)-1].Batch
	pts, bars, lmin, lmax := ladderLosses(res.Ladder)
	if k := res.Knee; k != nil && k.Error == "" && len(k.Band) > 0 {
		curve, err := addKneeFit(p, leg, k, res.Bootstrap.Level, bmin, bmax)
		if err != nil {
			return nil, err
		}
		for _, c := range curve {
			lmin, lmax = math.Min(lmin, c.Y), math.Max(lmax, c.Y)
		}
	}
	p.X.Min, p.X.Max = padLog(bmin, bmax, 1.3)
	p.Y.Min, p.Y.Max = padLin(lmin, lmax, 0.08)

	// The CBS marker. The tolerance rule is the estimate the text quotes at equal tokens, so its
	// interval or bound is drawn whenever it has one, in the words of its statement; the knee
	// adds its line when it falls inside the ladder, and its bound only when there is no rule.
	tol := res.Tolerance
	if tol != nil && tol.Error != "" {
		tol = nil
	}
	knee := res.Knee
	if knee != nil && knee.Error != "" {
		knee = nil
	}
	if tol != nil && tol.Censored == analysis.NotCensored {
		// The rule gives an interval; shade it behind the points.
		if err := addToleranceSpan(p, leg, tol); err != nil {
			return nil, err
		}
	}
	if err := addLadderLosses(p, leg, pts, bars); err != nil {
		return nil, err
	}
	dash := []vg.Length{vg.Points(3), vg.Points(2)}
	red := okabeIto[1]
	if err := addCensoredBound(p, tol, knee, bmin, bmax, red, dash); err != nil {
		return nil, err
	}
	if knee != nil && knee.Censored == analysis.NotCensored && knee.Knee.Valid() {
		v, err := plotter.NewLine(plotter.XYs{{X: float64(knee.Knee), Y: p.Y.Min}, {X: float64(knee.Knee), Y: p.Y.Max}})
		if err != nil {
			return nil, err
		}
		v.Color, v.Dashes, v.Width = red, dash, vg.Points(1)
		p.Add(v)
		leg.Add("knee at "+runfmt.FormatTokens(float64(knee.Knee)), v)
	}
	f := &Figure{Name: "final_loss_vs_batch", Plot: p, Width: width, legend: leg,
		Inputs: map[string]any{"ladder": res.Ladder, "compare_tokens": res.CompareTokens, "knee": res.Knee, "tolerance": res.Tolerance}}
	f.Height = height(width) + leg.height(width)
	return f, nil
}

// ladderLosses are the ladder's mean losses with their replicate range as error bars, whether
// any bar has a length, and the range of the losses including the bars.
func ladderLosses(ladder []analysis.LadderRow) (pts errPoints, bars bool, lmin, lmax float64) {
	lmin, lmax = math.Inf(1), math.Inf(-1)
	for _, r := range ladder {
		l := float64(r.Loss)
		lo, hi := l, l
		switch {
		case r.Replicates > 1 && r.LossMin.Valid() && r.LossMax.Valid():
			lo, hi = float64(r.LossMin), float64(r.LossMax)
		case r.Replicates > 1 && r.LossSD.Valid():
			lo, hi = l-float64(r.LossSD), l+float64(r.LossSD)
		}
		bars = bars || hi > lo
		pts.XYs = append(pts.XYs, plotter.XY{X: r.Batch, Y: l})
		pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{l - lo, hi - l})
		lmin, lmax = math.Min(lmin, lo), math.Max(lmax, hi)
	}
	return pts, bars, lmin, lmax
}

// addKneeFit draws the knee's fitted curve over the ladder's span (a little beyond its ends)
// with its bootstrap band at level, and returns the curve drawn.
func addKneeFit(p *plot.Plot, leg *outerLegend, k *analysis.KneeFit, level, bmin, bmax float64) (plotter.XYs, error) {
	var band, lower, curve plotter.XYs
	for _, b := range k.Band {
		if b.Batch < bmin/1.2 || b.Batch > bmax*1.2 {
			continue
		}
		curve = append(curve, plotter.XY{X: b.Batch, Y: float64(b.Loss)})
		if b.Lo.Valid() && b.Hi.Valid() {
			band = append(band, plotter.XY{X: b.Batch, Y: float64(b.Hi)})
			lower = append(lower, plotter.XY{X: b.Batch, Y: float64(b.Lo)})
		}
	}
	if len(band) > 1 {
		for i := len(lower) - 1; i >= 0; i-- {
			band = append(band, lower[i])
		}
		poly, err := plotter.NewPolygon(band)
		if err != nil {
			return nil, err
		}
		poly.Color = color.NRGBA{0, 114, 178, 70}
		poly.LineStyle.Width = 0
		p.Add(poly)
		leg.Add(fmt.Sprintf("%.0f%% band", 100*level), poly)
	}
	l, err := plotter.NewLine(curve)
	if err != nil {
		return nil, err
	}
	l.Color, l.Width = okabeIto[0], vg.Points(1)
	p.Add(l)
	leg.Add("fit", l)
	return curve, nil
}

// addToleranceSpan shades the tolerance rule's interval over the whole height of the plot.
func addToleranceSpan(p *plot.Plot, leg *outerLegend, tol *analysis.ToleranceFit) error {
	span, err := plotter.NewPolygon(plotter.XYs{{X: float64(tol.Lower), Y: p.Y.Min}, {X: float64(tol.Upper), Y: p.Y.Min},
		{X: float64(tol.Upper), Y: p.Y.Max}, {X: float64(tol.Lower), Y: p.Y.Max}})
	if err != nil {
		return err
	}
	span.Color, span.LineStyle.Width = color.NRGBA{213, 94, 0, 40}, 0
	p.Add(span)
	name := statementHead(tol.Statement)
	if name == "" {
		name = "CBS interval"
	}
	leg.Add(fmt.Sprintf("%s (eps = %g)", name, tol.Eps), span)
	return nil
}

// addLadderLosses draws the ladder's losses as points with their error bars.
func addLadderLosses(p *plot.Plot, leg *outerLegend, pts errPoints, bars bool) error {
	eb, err := plotter.NewYErrorBars(pts)
	if err != nil {
		return err
	}
	eb.LineStyle.Width = vg.Points(0.7)
	eb.CapWidth = vg.Points(3)
	sc, err := plotter.NewScatter(pts.XYs)
	if err != nil {
		return err
	}
	sc.GlyphStyle.Shape, sc.GlyphStyle.Radius = draw.CircleGlyph{}, vg.Points(2)
	p.Add(eb, sc)
	if bars {
		leg.Add("mean, replicate range", sc)
	} else {
		leg.Add("loss", sc)
	}
	return nil
}

// addCensoredBound draws a censored bound as an arrow: the rule's, or the knee's when there is
// no rule (tol and knee are nil where they failed). Its position is the batch its statement
// names, so the arrow starts where the label says; the x axis widens to hold the arrow.
func addCensoredBound(p *plot.Plot, tol *analysis.ToleranceFit, knee *analysis.KneeFit, bmin, bmax float64, c color.Color, dash []vg.Length) error {
	var bound float64
	var boundCens analysis.Censoring
	var boundText string
	switch {
	case tol != nil && tol.Censored == analysis.CensoredAbove:
		bound, boundCens, boundText = float64(tol.Lower), tol.Censored, statementHead(tol.Statement)
	case tol != nil && tol.Censored == analysis.CensoredBelow:
		bound, boundCens, boundText = float64(tol.Upper), tol.Censored, statementHead(tol.Statement)
	case tol == nil && knee != nil && knee.Censored == analysis.CensoredAbove:
		bound, boundCens, boundText = bmax, knee.Censored, statementHead(knee.Statement)
	case tol == nil && knee != nil && knee.Censored == analysis.CensoredBelow:
		bound, boundCens, boundText = bmin, knee.Censored, statementHead(knee.Statement)
	}
	if boundCens != "" && boundText == "" {
		if boundCens == analysis.CensoredAbove {
			boundText = "CBS >= " + runfmt.FormatTokens(bound)
		} else {
			boundText = "CBS < " + runfmt.FormatTokens(bound)
		}
	}
	switch boundCens {
	case analysis.CensoredAbove:
		p.X.Max = math.Max(p.X.Max, bound*2.6)
	case analysis.CensoredBelow:
		p.X.Min = math.Min(p.X.Min, bound/2.6)
	default:
		return nil
	}
	return boundArrow(p, bound, boundCens, p.Y.Max-(p.Y.Max-p.Y.Min)*0.55, c, boundText, dash)
}

// boundArrow draws a censored estimate's bound as a dashed line with an arrow at height y
// pointing the way the estimate lies: right when censored above, left when censored below.
func boundArrow(p *plot.Plot, bound float64, cens analysis.Censoring, y float64, c color.Color, text string, dash []vg.Length) error {
	to := bound * 2.2
	if cens == analysis.CensoredBelow {
		to = bound / 2.2
	}
	return arrow(p, bound, to, y, c, text, dash)
}

// arrow draws a dashed line at x0 and an arrow from x0 towards x1 at height y, labelled.
func arrow(p *plot.Plot, x0, x1, y float64, c color.Color, text string, dash []vg.Length) error {
	v, err := plotter.NewLine(plotter.XYs{{X: x0, Y: p.Y.Min}, {X: x0, Y: p.Y.Max}})
	if err != nil {
		return err
	}
	v.Color, v.Dashes, v.Width = c, dash, vg.Points(1)
	shaft, err := plotter.NewLine(plotter.XYs{{X: x0, Y: y}, {X: x1, Y: y}})
	if err != nil {
		return err
	}
	shaft.Color, shaft.Width = c, vg.Points(1.2)
	head, err := plotter.NewScatter(plotter.XYs{{X: x1, Y: y}})
	if err != nil {
		return err
	}
	shape := draw.GlyphDrawer(rightTriangle{})
	if x1 < x0 {
		shape = leftTriangle{}
	}
	head.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(3.5), Shape: shape}
	lab, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: x0, Y: y}}, Labels: []string{text}})
	if err != nil {
		return err
	}
	lab.TextStyle[0].Color = c
	lab.TextStyle[0].Font.Size = p.Legend.TextStyle.Font.Size
	lab.TextStyle[0].YAlign = draw.YBottom
	lab.Offset = vg.Point{X: vg.Points(2), Y: vg.Points(3)}
	if x1 < x0 {
		lab.TextStyle[0].XAlign = draw.XRight
		lab.Offset.X = -vg.Points(2)
	}
	p.Add(v, shaft, head, lab)
	return nil
}

// rightTriangle, leftTriangle and invertedPyramid are triangle glyphs pointing right, left and
// down (draw.PyramidGlyph points up).
type (
	rightTriangle   struct{}
	leftTriangle    struct{}
	invertedPyramid struct{}
)

func (rightTriangle) DrawGlyph(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point) {
	fillTriangle(c, sty, pt, [3][2]float64{{1, 0}, {-1, 0.7}, {-1, -0.7}})
}

func (leftTriangle) DrawGlyph(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point) {
	fillTriangle(c, sty, pt, [3][2]float64{{-1, 0}, {1, 0.7}, {1, -0.7}})
}

func (invertedPyramid) DrawGlyph(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point) {
	fillTriangle(c, sty, pt, [3][2]float64{{0, -1}, {1, 0.7}, {-1, 0.7}})
}

// fillTriangle fills the triangle whose corners lie at the offsets from pt given in units of
// the glyph's radius.
func fillTriangle(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point, corners [3][2]float64) {
	c.SetColor(sty.Color)
	r := sty.Radius
	var path vg.Path
	for i, k := range corners {
		p := vg.Point{X: pt.X + r*vg.Length(k[0]), Y: pt.Y + r*vg.Length(k[1])}
		if i == 0 {
			path.Move(p)
		} else {
			path.Line(p)
		}
	}
	path.Close()
	c.Fill(path)
}

// StepsTokens draws, for each target loss, the steps and tokens every batch size needed to reach
// it on log-log axes, with the fitted hyperbola (S/S_min - 1)(E/E_min - 1) = 1 traced over B for
// each target whose B_crit the ladder brackets. A batch size's points all lie on the line
// E = B S, so each batch's points are joined along it and the line is labelled with the batch:
// colour and shape say the target, the labelled line says the batch.
func StepsTokens(res *analysis.Result, width vg.Length) (*Figure, error) {
	if res.Hyperbola == nil {
		return nil, errors.New("steps vs tokens: no steps-to-target fit")
	}
	p := newPlot(width, "steps to target", "tokens to target")
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, countTicks{}
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, tokenTicks{}
	leg := newOuterLegend(p)
	smin, smax, emin, emax := math.Inf(1), 0.0, math.Inf(1), 0.0
	drawn := 0
	var inputs []analysis.TargetFit
	byBatch := map[float64]plotter.XYs{}
	var batches []float64
	var marks []plot.Plotter // the targets' points and curves, drawn over the batches' lines
	for i, t := range res.Hyperbola.Targets {
		if len(t.Points) == 0 {
			continue
		}
		inputs = append(inputs, t)
		for _, c := range t.Points {
			smin, smax = math.Min(smin, c.Steps), math.Max(smax, c.Steps)
			emin, emax = math.Min(emin, c.Tokens), math.Max(emax, c.Tokens)
			if _, ok := byBatch[c.Batch]; !ok {
				batches = append(batches, c.Batch)
			}
			byBatch[c.Batch] = append(byBatch[c.Batch], plotter.XY{X: c.Steps, Y: c.Tokens})
		}
		m, err := targetMarks(leg, t, i)
		if err != nil {
			return nil, err
		}
		marks = append(marks, m...)
		drawn++
	}
	if drawn == 0 {
		return nil, errors.New("steps vs tokens: no target was reached by any batch size")
	}
	// Room above and to the right of the data for the batches' labels, which sit past each line's
	// upper end.
	p.X.Min, p.X.Max = padLog(smin, smax, 1.25)
	p.Y.Min, p.Y.Max = padLog(emin, emax, 1.25)
	p.X.Max *= 1.5
	p.Y.Max *= 1.5
	sort.Float64s(batches)
	batchLine := draw.LineStyle{Color: color.Gray{Y: 150}, Width: vg.Points(0.6), Dashes: []vg.Length{vg.Points(1.5), vg.Points(1.5)}}
	if err := addBatchLines(p, batches, byBatch, batchLine, marks); err != nil {
		return nil, err
	}
	// A legend entry for the labelled lines, so that the figure says what they are.
	leg.Add("one batch size B: E = B S", lineThumb{batchLine})
	f := &Figure{Name: "steps_vs_tokens", Plot: p, Width: width, Inputs: inputs, legend: leg}
	f.Height = height(width) + leg.height(width)
	return f, nil
}

// targetMarks are the i-th target's points and, where its fit is uncensored, the fitted
// hyperbola traced over its batch sizes (the curve first); each gets its legend entry.
func targetMarks(leg *outerLegend, t analysis.TargetFit, i int) ([]plot.Plotter, error) {
	col := okabeIto[i%len(okabeIto)]
	var xys plotter.XYs
	for _, c := range t.Points {
		xys = append(xys, plotter.XY{X: c.Steps, Y: c.Tokens})
	}
	sc, err := plotter.NewScatter(xys)
	if err != nil {
		return nil, err
	}
	sc.GlyphStyle = draw.GlyphStyle{Color: col, Radius: vg.Points(2), Shape: glyphs[i%len(glyphs)]}
	name := "target"
	if t.Target.Valid() {
		name = fmt.Sprintf("L = %.4g", float64(t.Target))
	}
	// A censored fit's curve would draw a B_crit the data do not support.
	switch {
	case t.Error == "" && (t.Censored == analysis.CensoredAbove || t.Censored == analysis.CensoredBelow):
		if h := statementHead(t.Statement); h != "" {
			leg.Add(name+" ("+h+")", sc)
		} else {
			leg.Add(name+" (censored)", sc)
		}
	case t.Error == "":
		a, b := float64(t.SMin), float64(t.EMin)
		bl, bh := t.Points[0].Batch/2, t.Points[len(t.Points)-1].Batch*2
		var curve plotter.XYs
		for k := 0; k <= 60; k++ {
			B := bl * math.Pow(bh/bl, float64(k)/60)
			curve = append(curve, plotter.XY{X: a + b/B, Y: a*B + b})
		}
		l, err := plotter.NewLine(curve)
		if err != nil {
			return nil, err
		}
		l.Color, l.Width = col, vg.Points(0.8)
		leg.Add(name, sc, l)
		return []plot.Plotter{l, sc}, nil
	default:
		leg.Add(name+" (no fit)", sc)
	}
	return []plot.Plotter{sc}, nil
}

// addBatchLines joins each batch size's points (all on the line E = B S) in style, draws marks
// over them, and labels each line with its batch past its upper end.
func addBatchLines(p *plot.Plot, batches []float64, byBatch map[float64]plotter.XYs, style draw.LineStyle, marks []plot.Plotter) error {
	var at plotter.XYs
	var names []string
	for _, b := range batches {
		pts := byBatch[b]
		sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
		end := pts[len(pts)-1]
		if len(pts) > 1 {
			l, err := plotter.NewLine(plotter.XYs{pts[0], end})
			if err != nil {
				return err
			}
			l.Color, l.Width, l.Dashes = style.Color, style.Width, style.Dashes
			p.Add(l)
		}
		at = append(at, end)
		names = append(names, runfmt.FormatTokens(b))
	}
	p.Add(marks...)
	lab, err := plotter.NewLabels(plotter.XYLabels{XYs: at, Labels: names})
	if err != nil {
		return err
	}
	for i := range lab.TextStyle {
		lab.TextStyle[i].Font.Size = p.Legend.TextStyle.Font.Size
		lab.TextStyle[i].Color = color.Gray{Y: 90}
	}
	lab.Offset = vg.Point{X: vg.Points(3), Y: vg.Points(2)}
	p.Add(lab)
	return nil
}

// lineThumb is the legend thumbnail of a line style.
type lineThumb struct{ style draw.LineStyle }

func (t lineThumb) Thumbnail(c *draw.Canvas) {
	y := c.Center().Y
	c.StrokeLine2(t.style, c.Min.X, y, c.Max.X, y)
}

var glyphs = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.PyramidGlyph{}, draw.RingGlyph{}, draw.BoxGlyph{}, draw.CrossGlyph{}}

// BcritTarget draws B_crit of the steps-to-target fits against the target loss, with bootstrap
// intervals; censored fits are drawn as open triangles at their bound, pointing away from it.
func BcritTarget(res *analysis.Result, width vg.Length) (*Figure, error) {
	if res.Hyperbola == nil {
		return nil, errors.New("figure bcrit_vs_target: no steps-to-target fit")
	}
	p := newPlot(width, "target loss", "B_crit (tokens, Ki = 1024)")
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, tokenTicks{}
	m := bcritMarks{lo: math.Inf(1), hi: math.Inf(-1), ymin: math.Inf(1)}
	for _, t := range res.Hyperbola.Targets {
		if !t.Target.Valid() || t.Error != "" {
			continue
		}
		m.add(t)
	}
	if len(m.pts.XYs)+len(m.up)+len(m.down) == 0 {
		return nil, errors.New("figure bcrit_vs_target: no target has a fit")
	}
	if len(m.pts.XYs) > 0 {
		eb, err := plotter.NewYErrorBars(m.pts)
		if err != nil {
			return nil, err
		}
		eb.CapWidth, eb.LineStyle.Width = vg.Points(3), vg.Points(0.7)
		sc, err := plotter.NewScatter(m.pts.XYs)
		if err != nil {
			return nil, err
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: okabeIto[0], Radius: vg.Points(2.2), Shape: draw.CircleGlyph{}}
		p.Add(eb, sc)
		p.Legend.Add(fmt.Sprintf("B_crit, %.0f%% interval", 100*res.Bootstrap.Level), sc)
	}
	if err := m.addTriangles(p); err != nil {
		return nil, err
	}
	if tr := res.Hyperbola.Trend; tr != nil {
		if err := addBcritTrend(p, tr, m.lo, m.hi); err != nil {
			return nil, err
		}
	}
	p.X.Min, p.X.Max = padLin(m.lo, m.hi, 0.08)
	p.Y.Min, p.Y.Max = padLog(m.ymin, m.ymax, 1.6)
	if p.Y.Max/p.Y.Min < 5 {
		// Keep at least two powers of two on the axis so it has labels.
		mid := math.Sqrt(m.ymin * m.ymax)
		p.Y.Min, p.Y.Max = mid/2.3, mid*2.3
	}
	p.Legend.Top, p.Legend.Left = true, false
	return &Figure{Name: "bcrit_vs_target", Plot: p, Width: width, Height: height(width), Inputs: m.inputs}, nil
}

// bcritMarks are the marks of bcrit_vs_target: B_crit with its interval per target, censored
// fits at their bound, interval ends cut at the axis, and the ranges the axes must hold.
type bcritMarks struct {
	pts                errPoints
	up, down           plotter.XYs // censored above and below, at twice or half the ladder's end
	onUp, onDown       plotter.XYs // interval ends cut at the axis
	lo, hi, ymin, ymax float64
	inputs             []analysis.TargetFit
}

// add places the fit of target t.
func (m *bcritMarks) add(t analysis.TargetFit) {
	m.inputs = append(m.inputs, t)
	x := float64(t.Target)
	m.lo, m.hi = math.Min(m.lo, x), math.Max(m.hi, x)
	switch t.Censored {
	case analysis.CensoredAbove:
		y := t.Bound()
		m.up = append(m.up, plotter.XY{X: x, Y: y})
		m.ymin, m.ymax = math.Min(m.ymin, y), math.Max(m.ymax, y*1.5)
	case analysis.CensoredBelow:
		y := t.Bound()
		m.down = append(m.down, plotter.XY{X: x, Y: y})
		m.ymin, m.ymax = math.Min(m.ymin, y/1.5), math.Max(m.ymax, y)
	default:
		y := float64(t.Bcrit)
		l, h := y, y
		if t.BcritCI.Lo.Valid() && t.BcritCI.Hi.Valid() {
			l, h = math.Min(y, float64(t.BcritCI.Lo)), math.Max(y, float64(t.BcritCI.Hi))
		}
		// An interval end far outside the ladder says "unbounded there", not a number to
		// scale the axis by: it stops at a sixteenth of the smallest batch or 16 times the
		// largest, with a triangle pointing on.
		floor, ceil := t.Points[0].Batch/16, 16*t.Points[len(t.Points)-1].Batch
		if l < floor {
			l = floor
			m.onDown = append(m.onDown, plotter.XY{X: x, Y: l})
		}
		if h > ceil {
			h = ceil
			m.onUp = append(m.onUp, plotter.XY{X: x, Y: h})
		}
		m.pts.XYs = append(m.pts.XYs, plotter.XY{X: x, Y: y})
		m.pts.YErrors = append(m.pts.YErrors, struct{ Low, High float64 }{y - l, h - y})
		m.ymin, m.ymax = math.Min(m.ymin, l), math.Max(m.ymax, h)
	}
}

// addTriangles draws the censored bounds and the cut interval ends as triangles pointing away.
func (m *bcritMarks) addTriangles(p *plot.Plot) error {
	for _, c := range []struct {
		xys   plotter.XYs
		shape draw.GlyphDrawer
		color int
		name  string
	}{{m.up, draw.PyramidGlyph{}, 1, "lower bound (censored)"}, {m.down, invertedPyramid{}, 1, "upper bound (censored)"},
		{m.onUp, draw.PyramidGlyph{}, 6, "interval runs on above"}, {m.onDown, invertedPyramid{}, 6, "interval runs on below"}} {
		if len(c.xys) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(c.xys)
		if err != nil {
			return err
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: okabeIto[c.color], Radius: vg.Points(2.5), Shape: c.shape}
		p.Add(sc)
		p.Legend.Add(c.name, sc)
	}
	return nil
}

// addBcritTrend draws the power-law trend of B_crit in the target loss between lo and hi.
func addBcritTrend(p *plot.Plot, tr *analysis.BcritTrend, lo, hi float64) error {
	var curve plotter.XYs
	for k := 0; k <= 20; k++ {
		x := lo + (hi-lo)*float64(k)/20
		curve = append(curve, plotter.XY{X: x, Y: math.Exp(tr.LogC - math.Log(x)/tr.AlphaB)})
	}
	l, err := plotter.NewLine(curve)
	if err != nil {
		return err
	}
	l.Color, l.Dashes, l.Width = okabeIto[6], []vg.Length{vg.Points(3), vg.Points(2)}, vg.Points(0.8)
	p.Add(l)
	p.Legend.Add(fmt.Sprintf("trend, alpha_B = %.2g", tr.AlphaB), l)
	return nil
}

// NoiseScale draws the simple gradient noise scale against tokens, one line per branch, broken
// where a branch has no positive value (early on, the |G|^2 estimate can be negative), so that no
// segment stands for values that were never measured. A point between two breaks is drawn as a
// dot. Each branch in gaps, which has no noise scale at all, is named in a note with the reason,
// so that a batch missing from the legend is not taken for an oversight.
func NoiseScale(series []analysis.NoiseSeries, gaps []analysis.NoiseGap, width vg.Length) (*Figure, error) {
	if len(series) == 0 {
		return nil, errors.New("noise scale: no branch logged gradient-noise fields")
	}
	p := newPlot(width, "tokens", "B_simple (tokens)")
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, tokenTicks{}
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, tokenTicks{}
	leg := newOuterLegend(p)
	var batches []float64
	seen := map[float64]bool{}
	for _, s := range series {
		if !seen[s.Batch] {
			seen[s.Batch] = true
			batches = append(batches, s.Batch)
		}
	}
	sort.Float64s(batches)
	index := map[float64]int{}
	for i, b := range batches {
		index[b] = i
	}
	tmin, tmax, ymin, ymax := math.Inf(1), 0.0, math.Inf(1), 0.0
	legend := map[float64]bool{}
	for _, s := range series {
		col := sequential(index[s.Batch], len(batches))
		var thumb plot.Thumbnailer
		var dots plotter.XYs
		for _, seg := range noiseSegments(s) {
			for _, xy := range seg {
				tmin, tmax = math.Min(tmin, xy.X), math.Max(tmax, xy.X)
				ymin, ymax = math.Min(ymin, xy.Y), math.Max(ymax, xy.Y)
			}
			if len(seg) == 1 {
				dots = append(dots, seg...)
				continue
			}
			l, err := plotter.NewLine(seg)
			if err != nil {
				return nil, err
			}
			l.Color, l.Width = col, vg.Points(0.8)
			p.Add(l)
			thumb = l
		}
		if len(dots) > 0 {
			sc, err := plotter.NewScatter(dots)
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: col, Radius: vg.Points(0.8), Shape: draw.CircleGlyph{}}
			p.Add(sc)
			if thumb == nil {
				thumb = sc
			}
		}
		if thumb != nil && !legend[s.Batch] {
			legend[s.Batch] = true
			leg.Add(runfmt.FormatTokens(s.Batch), thumb)
		}
	}
	if tmax == 0 {
		return nil, errors.New("noise scale: no positive B_simple value")
	}
	p.X.Min, p.X.Max = tmin, tmax
	p.Y.Min, p.Y.Max = padLog(ymin, ymax, 1.3)
	if ymax/ymin < 4 {
		// Keep at least two powers of two on the axis so it has labels.
		mid := math.Sqrt(ymin * ymax)
		p.Y.Min, p.Y.Max = mid/2.1, mid*2.1
	}
	f := &Figure{Name: "noise_scale_vs_tokens", Plot: p, Width: width, legend: leg,
		Inputs: map[string]any{"series": series, "missing": gaps}}
	f.Height = height(width) + leg.height(width)
	for _, n := range gapNotes(gaps) {
		f.AddNote(n)
	}
	return f, nil
}

// noiseSegments splits a series at its breaks, leaving out marks at zero tokens, which have no
// place on a log axis.
func noiseSegments(s analysis.NoiseSeries) []plotter.XYs {
	var segs []plotter.XYs
	var seg plotter.XYs
	next := 0
	for i, t := range s.Tokens {
		if next < len(s.Breaks) && s.Breaks[next] == i {
			next++
			if len(seg) > 0 {
				segs = append(segs, seg)
			}
			seg = nil
		}
		if t <= 0 || !(s.BSimple[i] > 0) {
			continue
		}
		seg = append(seg, plotter.XY{X: t, Y: s.BSimple[i]})
	}
	if len(seg) > 0 {
		segs = append(segs, seg)
	}
	return segs
}

// gapNotes says, once per batch size and reason, which batches have no noise scale and why:
// "1Ki: no B_simple (one micro-batch per step)".
func gapNotes(gaps []analysis.NoiseGap) []string {
	var notes []string
	seen := map[string]bool{}
	for _, g := range gaps {
		n := fmt.Sprintf("%s: no B_simple (%s)", runfmt.FormatTokens(g.Batch), g.Reason)
		if !seen[n] {
			seen[n] = true
			notes = append(notes, n)
		}
	}
	return notes
}
