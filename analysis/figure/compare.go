package figure

import (
	"errors"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"cbs/analysis"
)

// CompareInput is one sweep in a comparison figure.
type CompareInput struct {
	Label  string
	Result *analysis.Result
}

// Compare draws several sweeps' token overheads against batch size on one figure. The overhead
// has no loss units, so objectives with different loss scales share the axis as they are. Each
// sweep has its points with bootstrap intervals, its CBS as a dotted line over its shaded
// interval (or an arrow from the bound when censored), and the limit 1 + tau is one dashed line,
// or one per sweep when their tau differ.
func Compare(inputs []CompareInput, width vg.Length) (*Figure, error) {
	if len(inputs) < 2 {
		return nil, errors.New("compare: needs at least two sweeps")
	}
	sets, ext := readSweeps(inputs)
	if ext.drawn == 0 {
		return nil, errors.New("compare: no sweep has a token-overhead estimate")
	}
	p := newPlot(width, "batch size (tokens, Ki = 1024)", "token overhead T_B(L) / T_ref(L)")
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, tokenTicks{}
	cv := compareCanvas{p: p, leg: newOuterLegend(p), shared: len(ext.taus) == 1}
	cv.room = setRanges(p, ext.bmin, ext.bmax, ext.ymin, ext.ymax, ext.arrows, ext.unreached)
	bands, lines := compareBands(p, inputs, sets)
	var tauLine *plotter.Line
	tau := 0.0
	if cv.shared {
		for t := range ext.taus {
			tau = t
		}
		var err error
		if tauLine, err = hline(p, 1+tau, okabeIto[6]); err != nil {
			return nil, err
		}
		p.Add(tauLine)
	}
	var rec []compareSummary
	for i, in := range inputs {
		pf := in.Result.Primary
		if len(sets[i].pts.XYs) == 0 {
			cv.leg.Add(in.Label + ": " + whyNotDrawn(pf))
			continue
		}
		if err := cv.drawSweep(i, in.Label, pf, sets[i], bands[i] != nil, lines[i]); err != nil {
			return nil, err
		}
		rec = append(rec, compareSummary{Label: in.Label, Tau: pf.Tau, Reference: pf.ReferenceBatch, LossLevel: pf.LossLevel, CBS: pf.CBS,
			Interval: pf.Interval, Censored: string(pf.Censored), Bound: pf.Bound, Statement: pf.Statement})
	}
	if tauLine != nil {
		cv.leg.Add(tauLabel(tau), tauLine)
	}
	f := &Figure{Name: "cbs_compare", Plot: p, Width: width, Inputs: rec, legend: cv.leg}
	f.Height = height(width) + cv.leg.height(width)
	for _, in := range inputs {
		if in.Result.Partial {
			f.AddNote(in.Label + ": " + in.Result.PartialNote())
		}
	}
	return f, nil
}

// compareSummary is what cbs_compare records of each sweep drawn.
type compareSummary struct {
	Label     string          `json:"label"`
	Tau       float64         `json:"tau"`
	Reference float64         `json:"reference_batch_tokens"`
	LossLevel analysis.Num    `json:"loss_level"`
	CBS       analysis.Num    `json:"cbs_tokens"` // null when censored
	Interval  [2]analysis.Num `json:"interval"`
	Censored  string          `json:"censored,omitempty"`
	Bound     analysis.Num    `json:"bound_tokens"`
	Statement string          `json:"statement"`
}

// sweepsExtent is what the axes of a comparison must hold: the sweeps' batches and overheads
// (with 1 and every 1 + tau), the taus, the arrows of censored estimates, whether a rung never
// reached the loss, and how many sweeps have points to draw.
type sweepsExtent struct {
	bmin, bmax, ymin, ymax float64
	taus                   map[float64]bool
	arrows                 int
	unreached              bool
	drawn                  int
}

// readSweeps reads each sweep's rungs (empty where it has no estimate) and their extent.
func readSweeps(inputs []CompareInput) ([]rungSet, sweepsExtent) {
	sets := make([]rungSet, len(inputs))
	ext := sweepsExtent{bmin: math.Inf(1), bmax: math.Inf(-1), ymin: 1, ymax: 1, taus: map[float64]bool{}}
	for i, in := range inputs {
		pf := in.Result.Primary
		if pf == nil || pf.Error != "" {
			continue
		}
		rs := readRungs(pf)
		if len(rs.pts.XYs) == 0 {
			continue
		}
		sets[i] = rs
		ext.drawn++
		ext.bmin, ext.bmax = math.Min(ext.bmin, rs.bmin), math.Max(ext.bmax, rs.bmax)
		ext.ymin, ext.ymax = math.Min(ext.ymin, rs.ymin), math.Max(ext.ymax, math.Max(rs.ymax, 1+pf.Tau))
		ext.taus[pf.Tau] = true
		ext.unreached = ext.unreached || rs.unreached()
		if pf.Censored == analysis.CensoredAbove || pf.Censored == analysis.CensoredBelow {
			ext.arrows++
		}
	}
	return sets, ext
}

// compareBands draws each sweep's shaded CBS interval in its colour and returns the intervals
// (nil where none) and the x of each sweep's CBS line (NaN where censored). A first pass widens
// the x axis for every arrow, so that the bands and lines of the second reach its final edges.
func compareBands(p *plot.Plot, inputs []CompareInput, sets []rungSet) ([]*plotter.Polygon, []float64) {
	bands := make([]*plotter.Polygon, len(inputs))
	lines := make([]float64, len(inputs))
	for i, in := range inputs {
		if len(sets[i].pts.XYs) > 0 {
			cbsMarks(p, in.Result.Primary)
		}
	}
	for i, in := range inputs {
		if len(sets[i].pts.XYs) > 0 {
			bands[i], lines[i] = cbsMarks(p, in.Result.Primary)
		}
	}
	for i := range inputs {
		if bands[i] != nil {
			r, g, b, _ := okabeIto[i%len(okabeIto)].RGBA()
			bands[i].Color = color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 40}
			p.Add(bands[i])
		}
	}
	return bands, lines
}

// whyNotDrawn says in the legend why a sweep has no points.
func whyNotDrawn(pf *analysis.PrimaryFit) string {
	switch {
	case pf == nil:
		return "no token-overhead fit"
	case pf.Error != "":
		return "not estimated"
	}
	return "no overhead"
}

// compareCanvas is the comparison figure as its sweeps are drawn on it, one after another.
type compareCanvas struct {
	p      *plot.Plot
	leg    *outerLegend
	room   headroom
	shared bool // one 1 + tau line for all sweeps
	arrows int  // arrows drawn so far, each in its own headroom row
}

// drawSweep draws sweep i: its rungs, its own 1 + tau line unless shared, and its CBS as an
// arrow from the bound when censored or a dotted line at lineX (NaN: none).
func (cv *compareCanvas) drawSweep(i int, label string, pf *analysis.PrimaryFit, rs rungSet, banded bool, lineX float64) error {
	p, leg := cv.p, cv.leg
	c := okabeIto[i%len(okabeIto)]
	dashes := [][]vg.Length{nil, {vg.Points(4), vg.Points(2)}, {vg.Points(1), vg.Points(1.5)}}[i%3]
	thumb, never, err := rs.draw(p, c, compareGlyphs[i%len(compareGlyphs)], dashes, cv.room.neverY())
	if err != nil {
		return err
	}
	name := label + ": " + claim(pf)
	if banded {
		name += ", " + intervalText(pf)
	}
	leg.Add(name, thumb)
	if never != nil {
		leg.Add(label+": did not reach the loss", never)
	}
	if !cv.shared {
		l, err := hline(p, 1+pf.Tau, c)
		if err != nil {
			return err
		}
		p.Add(l)
		leg.Add(label+": "+tauLabel(pf.Tau), l)
	}
	dot := []vg.Length{vg.Points(1), vg.Points(1.5)}
	switch pf.Censored {
	case analysis.CensoredAbove, analysis.CensoredBelow:
		if err := boundArrow(p, float64(pf.Bound), pf.Censored, cv.room.arrowY(cv.arrows), c, claim(pf), dot); err != nil {
			return err
		}
		cv.arrows++
	default:
		if !math.IsNaN(lineX) {
			v, err := vertical(p, lineX, c, dot)
			if err != nil {
				return err
			}
			p.Add(v)
		}
	}
	return nil
}

var compareGlyphs = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.BoxGlyph{}, draw.TriangleGlyph{}}
