package figure

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"cbs/analysis"
	"cbs/runfmt"
)

// Overhead draws the primary estimate: each rung's token overhead T_B(L) / T_ref(L) against batch
// size with its bootstrap interval, the limit 1 + tau, and the CBS with its interval shaded, or,
// when the ladder does not bracket it, an arrow from the bound labelled as the statement words it.
func Overhead(res *analysis.Result, width vg.Length) (*Figure, error) {
	pf := res.Primary
	if pf == nil {
		return nil, errors.New("token overhead: the result has no token-overhead fit")
	}
	if pf.Error != "" {
		return nil, fmt.Errorf("token overhead: %s", pf.Error)
	}
	rs := readRungs(pf)
	if len(rs.pts.XYs) == 0 {
		return nil, errors.New("token overhead: no batch size has a finite overhead")
	}
	p := newPlot(width, "batch size (tokens, Ki = 1024)",
		fmt.Sprintf("token overhead vs %s at loss %.4g", runfmt.FormatTokens(pf.ReferenceBatch), float64(pf.LossLevel)))
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, tokenTicks{}
	leg := newOuterLegend(p)
	limit := 1 + pf.Tau

	arrows := 0
	if pf.Censored == analysis.CensoredAbove || pf.Censored == analysis.CensoredBelow {
		arrows = 1
	}
	ymin, ymax := math.Min(rs.ymin, 1), math.Max(rs.ymax, limit)
	room := setRanges(p, rs.bmin, rs.bmax, ymin, ymax, arrows, rs.unreached())
	band, lineX := cbsMarks(p, pf)

	red, blue := okabeIto[1], okabeIto[0]
	if band != nil {
		band.Color = color.NRGBA{213, 94, 0, 45}
		p.Add(band)
	}
	tl, err := hline(p, limit, okabeIto[6])
	if err != nil {
		return nil, err
	}
	p.Add(tl)
	thumb, unreached, err := rs.draw(p, blue, draw.CircleGlyph{}, nil, room.neverY())
	if err != nil {
		return nil, err
	}
	name := "token overhead"
	if rs.bars {
		name += fmt.Sprintf(", %.0f%% interval", 100*pf.Level)
	}
	leg.Add(name, thumb)
	if unreached != nil {
		leg.Add("did not reach the loss", unreached)
	}
	leg.Add(tauLabel(pf.Tau), tl)
	dash := []vg.Length{vg.Points(3), vg.Points(2)}
	switch pf.Censored {
	case analysis.CensoredAbove, analysis.CensoredBelow:
		if err := boundArrow(p, float64(pf.Bound), pf.Censored, room.arrowY(0), red, claim(pf), dash); err != nil {
			return nil, err
		}
	default:
		if !math.IsNaN(lineX) {
			v, err := vertical(p, lineX, red, dash)
			if err != nil {
				return nil, err
			}
			p.Add(v)
			leg.Add(claim(pf), v)
		}
	}
	if band != nil {
		leg.Add(intervalText(pf), band)
	}
	f := &Figure{Name: "overhead_vs_batch", Plot: p, Width: width, Inputs: map[string]any{"primary": pf}, legend: leg}
	f.Height = height(width) + leg.height(width)
	return f, nil
}

// rungSet is one ladder's overheads as they are drawn.
type rungSet struct {
	pts errPoints
	// lo and hi are the interval ends as given, clamped to the axes when drawn.
	lo, hi []float64
	bars   bool
	// never are the rungs that never reached the loss (overhead +Inf).
	never                  []float64
	bmin, bmax, ymin, ymax float64
	// segs are runs of adjacent rungs with finite overheads, joined linearly in B as the CBS is
	// interpolated, so that the line crosses 1 + tau exactly at the CBS.
	segs []plotter.XYs
}

func readRungs(pf *analysis.PrimaryFit) rungSet {
	rs := rungSet{bmin: math.Inf(1), bmax: math.Inf(-1), ymin: math.Inf(1), ymax: math.Inf(-1), bars: pf.Resampled > 0}
	var seg plotter.XYs
	for _, r := range pf.Rungs {
		rs.bmin, rs.bmax = math.Min(rs.bmin, r.Batch), math.Max(rs.bmax, r.Batch)
		o := float64(r.Overhead)
		if !r.Overhead.Valid() {
			if math.IsInf(o, 1) {
				rs.never = append(rs.never, r.Batch)
			}
			if len(seg) > 1 {
				rs.segs = append(rs.segs, seg)
			}
			seg = nil
			continue
		}
		rs.pts.XYs = append(rs.pts.XYs, plotter.XY{X: r.Batch, Y: o})
		rs.lo, rs.hi = append(rs.lo, float64(r.Lo)), append(rs.hi, float64(r.Hi))
		rs.ymin, rs.ymax = math.Min(rs.ymin, o), math.Max(rs.ymax, o)
		if r.Lo.Valid() {
			rs.ymin = math.Min(rs.ymin, float64(r.Lo))
		}
		if r.Hi.Valid() {
			rs.ymax = math.Max(rs.ymax, float64(r.Hi))
		}
		if n := len(seg); n > 0 {
			a := seg[n-1]
			for k := 1; k <= 16; k++ {
				f := float64(k) / 16
				seg = append(seg, plotter.XY{X: a.X + f*(r.Batch-a.X), Y: a.Y + f*(o-a.Y)})
			}
		} else {
			seg = plotter.XYs{{X: r.Batch, Y: o}}
		}
	}
	if len(seg) > 1 {
		rs.segs = append(rs.segs, seg)
	}
	return rs
}

func (rs rungSet) unreached() bool { return len(rs.never) > 0 }

// draw adds the points, their interval bars (an end that is not finite runs to the axis), the
// line through them and markers at the top edge for rungs that never reached the loss. It returns
// the legend thumbnails of the points and of the markers (nil when there are none).
func (rs rungSet) draw(p *plot.Plot, c color.Color, shape draw.GlyphDrawer, dashes []vg.Length, neverY float64) (plot.Thumbnailer, plot.Thumbnailer, error) {
	for _, s := range rs.segs {
		l, err := plotter.NewLine(s)
		if err != nil {
			return nil, nil, err
		}
		l.Color, l.Width, l.Dashes = c, vg.Points(0.7), dashes
		p.Add(l)
	}
	glyph := draw.GlyphStyle{Color: c, Radius: vg.Points(2), Shape: shape}
	line := draw.LineStyle{Color: c, Width: vg.Points(0.7)}
	if rs.bars {
		pts := errPoints{XYs: rs.pts.XYs}
		for i, xy := range rs.pts.XYs {
			lo, hi := rs.lo[i], rs.hi[i]
			if !(lo > p.Y.Min) {
				lo = p.Y.Min // -Inf or unknown: open to the bottom edge
			}
			if math.IsInf(hi, 1) || math.IsNaN(hi) || hi > p.Y.Max {
				hi = p.Y.Max
			}
			pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{math.Max(xy.Y-lo, 0), math.Max(hi-xy.Y, 0)})
		}
		eb, err := plotter.NewYErrorBars(pts)
		if err != nil {
			return nil, nil, err
		}
		eb.LineStyle, eb.CapWidth = line, vg.Points(3)
		p.Add(eb)
	}
	sc, err := plotter.NewScatter(rs.pts.XYs)
	if err != nil {
		return nil, nil, err
	}
	sc.GlyphStyle = glyph
	p.Add(sc)
	var thumb plot.Thumbnailer = sc
	if rs.bars {
		thumb = errThumb{line: line, glyph: glyph}
	}
	if len(rs.never) == 0 {
		return thumb, nil, nil
	}
	var top plotter.XYs
	for _, b := range rs.never {
		top = append(top, plotter.XY{X: b, Y: neverY})
	}
	up, err := plotter.NewScatter(top)
	if err != nil {
		return nil, nil, err
	}
	up.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(2.5), Shape: draw.PyramidGlyph{}}
	p.Add(up)
	return thumb, up, nil
}

// headroom is the space setRanges leaves above the data: rows for the arrows of censored
// estimates, then one for the markers of rungs that never reached the loss, so that neither
// lands on a point.
type headroom struct {
	top, row float64 // the data's top; the height of one row
	arrows   int
}

// rowHeight is the height of one headroom row, as a fraction of the data's span.
const rowHeight = 0.14

func setRanges(p *plot.Plot, bmin, bmax, ymin, ymax float64, arrows int, unreached bool) headroom {
	p.X.Min, p.X.Max = padLog(bmin, bmax, 1.3)
	lo, hi := padLin(ymin, ymax, 0.08)
	h := headroom{top: hi, row: rowHeight * (hi - lo), arrows: arrows}
	rows := float64(arrows)
	if unreached {
		rows++
	}
	p.Y.Min, p.Y.Max = lo, hi+rows*h.row
	return h
}

// arrowY is the height of arrow k: low in its row, as its label goes above it.
func (h headroom) arrowY(k int) float64 { return h.top + h.row*(float64(k)+0.3) }

// neverY is the height of the markers of rungs that never reached the loss.
func (h headroom) neverY() float64 { return h.top + h.row*(float64(h.arrows)+0.5) }

// cbsMarks widens the x axis for a censored estimate's arrow and returns the shaded interval of
// the CBS (nil when there is none to shade) and the x of its line (NaN when censored).
func cbsMarks(p *plot.Plot, pf *analysis.PrimaryFit) (*plotter.Polygon, float64) {
	switch pf.Censored {
	case analysis.CensoredAbove:
		p.X.Max = math.Max(p.X.Max, float64(pf.Bound)*2.6)
	case analysis.CensoredBelow:
		p.X.Min = math.Min(p.X.Min, float64(pf.Bound)/2.6)
	}
	x := math.NaN()
	if pf.Censored != analysis.CensoredAbove && pf.Censored != analysis.CensoredBelow && pf.CBS.Valid() {
		x = float64(pf.CBS)
	}
	if pf.Resampled == 0 {
		return nil, x
	}
	lo, hi := float64(pf.Interval[0]), float64(pf.Interval[1])
	if math.IsNaN(lo) && math.IsNaN(hi) {
		return nil, x // no interval at all, not an unbounded one
	}
	// An end that is not finite is unbounded on its side: it runs to the axis. Both ends at +Inf
	// (or -Inf) put the whole interval past the ladder, with nothing to shade.
	if math.IsInf(lo, 1) || math.IsInf(hi, -1) {
		return nil, x
	}
	if !(lo > p.X.Min) {
		lo = p.X.Min
	}
	if !(hi < p.X.Max) {
		hi = p.X.Max
	}
	if !(hi > lo) {
		return nil, x
	}
	poly, err := plotter.NewPolygon(plotter.XYs{{X: lo, Y: p.Y.Min}, {X: hi, Y: p.Y.Min}, {X: hi, Y: p.Y.Max}, {X: lo, Y: p.Y.Max}})
	if err != nil {
		return nil, x
	}
	poly.LineStyle.Width = 0
	return poly, x
}

func hline(p *plot.Plot, y float64, c color.Color) (*plotter.Line, error) {
	l, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: y}, {X: p.X.Max, Y: y}})
	if err != nil {
		return nil, err
	}
	l.Color, l.Width, l.Dashes = c, vg.Points(0.8), []vg.Length{vg.Points(4), vg.Points(2)}
	return l, nil
}

func vertical(p *plot.Plot, x float64, c color.Color, dashes []vg.Length) (*plotter.Line, error) {
	l, err := plotter.NewLine(plotter.XYs{{X: x, Y: p.Y.Min}, {X: x, Y: p.Y.Max}})
	if err != nil {
		return nil, err
	}
	l.Color, l.Width, l.Dashes = c, vg.Points(1), dashes
	return l, nil
}

func tauLabel(tau float64) string { return fmt.Sprintf("1 + tau = %g", 1+tau) }

// claim is the head of the estimate's statement ("CBS >= 8Ki" of "CBS >= 8Ki tokens: ..."), so
// that a figure labels the estimate in exactly the words the text uses.
func claim(pf *analysis.PrimaryFit) string {
	if c := statementHead(pf.Statement); c != "" {
		return c
	}
	switch pf.Censored {
	case analysis.CensoredAbove:
		return "CBS >= " + runfmt.FormatTokens(float64(pf.Bound))
	case analysis.CensoredBelow:
		return "CBS < " + runfmt.FormatTokens(float64(pf.Bound))
	}
	return "CBS = " + runfmt.FormatSI(float64(pf.CBS))
}

// statementHead is a statement up to " tokens" when it opens with an estimate ("CBS ...",
// "B_crit ..."), else "".
func statementHead(s string) string {
	i := strings.Index(s, " tokens")
	if i <= 0 || !(strings.HasPrefix(s, "CBS ") || strings.HasPrefix(s, "B_crit ")) {
		return ""
	}
	return s[:i]
}

// intervalText is the interval clause of the statement ("90% interval [22.1K, 23.7K]").
func intervalText(pf *analysis.PrimaryFit) string {
	if i := strings.LastIndex(pf.Statement, "% interval ["); i >= 0 {
		if j := strings.LastIndex(pf.Statement[:i], "; "); j >= 0 {
			return pf.Statement[j+2:]
		}
	}
	return fmt.Sprintf("%.0f%% interval", 100*pf.Level)
}
