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
	type summary struct {
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
	var rec []summary
	sets := make([]rungSet, len(inputs))
	bmin, bmax, ymin, ymax := math.Inf(1), math.Inf(-1), 1.0, 1.0
	taus := map[float64]bool{}
	arrows, unreached, drawn := 0, false, 0
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
		drawn++
		bmin, bmax = math.Min(bmin, rs.bmin), math.Max(bmax, rs.bmax)
		ymin, ymax = math.Min(ymin, rs.ymin), math.Max(ymax, math.Max(rs.ymax, 1+pf.Tau))
		taus[pf.Tau] = true
		unreached = unreached || rs.unreached()
		if pf.Censored == analysis.CensoredAbove || pf.Censored == analysis.CensoredBelow {
			arrows++
		}
	}
	if drawn == 0 {
		return nil, errors.New("compare: no sweep has a token-overhead estimate")
	}
	p := newPlot(width, "batch size (tokens, Ki = 1024)", "token overhead T_B(L) / T_ref(L)")
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, tokenTicks{}
	leg := newOuterLegend(p)
	room := setRanges(p, bmin, bmax, ymin, ymax, arrows, unreached)
	// A first pass widens the x axis for every arrow, so that the bands and lines of the second
	// reach its final edges.
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
	shared := len(taus) == 1
	var tauLine *plotter.Line
	tau := 0.0
	if shared {
		for t := range taus {
			tau = t
		}
		var err error
		if tauLine, err = hline(p, 1+tau, okabeIto[6]); err != nil {
			return nil, err
		}
		p.Add(tauLine)
	}
	dot := []vg.Length{vg.Points(1), vg.Points(1.5)}
	arrow0 := 0
	for i, in := range inputs {
		pf := in.Result.Primary
		if len(sets[i].pts.XYs) == 0 {
			why := "no overhead"
			if pf == nil {
				why = "no token-overhead fit"
			} else if pf.Error != "" {
				why = "not estimated"
			}
			leg.Add(in.Label + ": " + why)
			continue
		}
		c := okabeIto[i%len(okabeIto)]
		dashes := [][]vg.Length{nil, {vg.Points(4), vg.Points(2)}, {vg.Points(1), vg.Points(1.5)}}[i%3]
		thumb, never, err := sets[i].draw(p, c, compareGlyphs[i%len(compareGlyphs)], dashes, room.neverY())
		if err != nil {
			return nil, err
		}
		label := in.Label + ": " + claim(pf)
		if bands[i] != nil {
			label += ", " + intervalText(pf)
		}
		leg.Add(label, thumb)
		if never != nil {
			leg.Add(in.Label+": did not reach the loss", never)
		}
		if !shared {
			l, err := hline(p, 1+pf.Tau, c)
			if err != nil {
				return nil, err
			}
			p.Add(l)
			leg.Add(in.Label+": "+tauLabel(pf.Tau), l)
		}
		switch pf.Censored {
		case analysis.CensoredAbove, analysis.CensoredBelow:
			b := float64(pf.Bound)
			to := b * 2.2
			if pf.Censored == analysis.CensoredBelow {
				to = b / 2.2
			}
			if err := arrow(p, b, to, room.arrowY(arrow0), c, claim(pf), dot); err != nil {
				return nil, err
			}
			arrow0++
		default:
			if !math.IsNaN(lines[i]) {
				v, err := vertical(p, lines[i], c, dot)
				if err != nil {
					return nil, err
				}
				p.Add(v)
			}
		}
		rec = append(rec, summary{Label: in.Label, Tau: pf.Tau, Reference: pf.ReferenceBatch, LossLevel: pf.LossLevel, CBS: pf.CBS,
			Interval: pf.Interval, Censored: string(pf.Censored), Bound: pf.Bound, Statement: pf.Statement})
	}
	if tauLine != nil {
		leg.Add(tauLabel(tau), tauLine)
	}
	f := &Figure{Name: "cbs_compare", Plot: p, Width: width, Inputs: rec, legend: leg}
	f.Height = height(width) + leg.height(width)
	for _, in := range inputs {
		if in.Result.Partial {
			f.AddNote(in.Label + ": " + in.Result.PartialNote())
		}
	}
	return f, nil
}

var compareGlyphs = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.BoxGlyph{}, draw.TriangleGlyph{}}
