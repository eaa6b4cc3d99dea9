package figure

import (
	"errors"
	"fmt"
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

// Compare draws several sweeps' losses at equal tokens against batch size on one figure, each
// as its excess over its own smallest batch (L(B) - L(B_min)), so objectives with different loss
// scales share an axis; the dashed line is the tolerance eps, and each sweep's tolerance-rule
// CBS is a vertical dotted line (an arrow at the ladder's end when censored).
func Compare(inputs []CompareInput, width vg.Length) (*Figure, error) {
	if len(inputs) < 2 {
		return nil, errors.New("compare: needs at least two sweeps")
	}
	p := newPlot(width, "batch size (tokens, K = 1024)", "loss excess over the smallest batch (nats)")
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, log2Ticks{}
	bmin, bmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := 0.0, 0.0
	var eps float64
	type summary struct {
		Label    string       `json:"label"`
		Lower    analysis.Num `json:"cbs_lower_tokens"` // null when unbounded
		Upper    analysis.Num `json:"cbs_upper_tokens"`
		Censored string       `json:"censored,omitempty"`
	}
	var inputsRec []summary
	for i, in := range inputs {
		res := in.Result
		if len(res.Ladder) < 2 {
			return nil, fmt.Errorf("compare: %s has %d batch sizes, needs 2", in.Label, len(res.Ladder))
		}
		base := float64(res.Ladder[0].Loss)
		var pts errPoints
		for _, r := range res.Ladder {
			l := float64(r.Loss) - base
			pts.XYs = append(pts.XYs, plotter.XY{X: r.Batch, Y: l})
			pts.YErrors = append(pts.YErrors, struct{ Low, High float64 }{float64(r.Loss) - float64(r.LossMin), float64(r.LossMax) - float64(r.Loss)})
			bmin, bmax = math.Min(bmin, r.Batch), math.Max(bmax, r.Batch)
			ymin, ymax = math.Min(ymin, float64(r.LossMin)-base), math.Max(ymax, float64(r.LossMax)-base)
		}
		c := okabeIto[i%len(okabeIto)]
		line, points, err := plotter.NewLinePoints(pts.XYs)
		if err != nil {
			return nil, err
		}
		line.Color, points.Color = c, c
		line.Dashes = [][]vg.Length{nil, {vg.Points(4), vg.Points(2)}, {vg.Points(1), vg.Points(1.5)}}[i%3]
		points.Shape = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.BoxGlyph{}, draw.TriangleGlyph{}}[i%3]
		bars, err := plotter.NewYErrorBars(pts)
		if err != nil {
			return nil, err
		}
		bars.Color = c
		p.Add(line, points, bars)
		label := in.Label
		rec := summary{Label: in.Label}
		if t := res.Tolerance; t != nil && t.Error == "" {
			eps = t.Eps
			rec.Lower, rec.Upper, rec.Censored = t.Lower, t.Upper, string(t.Censored)
			switch {
			case t.Upper.Valid() && t.Lower.Valid() && float64(t.Lower) > 0:
				label += fmt.Sprintf(": CBS in [%s, %s)", binaryUnits(float64(t.Lower)), binaryUnits(float64(t.Upper)))
				g := math.Sqrt(float64(t.Lower) * float64(t.Upper))
				v, err := vline(g, c)
				if err != nil {
					return nil, err
				}
				p.Add(v)
			case !t.Upper.Valid():
				label += fmt.Sprintf(": CBS >= %s", binaryUnits(float64(t.Lower)))
			default:
				label += fmt.Sprintf(": CBS < %s", binaryUnits(float64(t.Upper)))
			}
		}
		p.Legend.Add(label, line, points)
		inputsRec = append(inputsRec, rec)
	}
	if eps > 0 {
		e, err := plotter.NewLine(plotter.XYs{{X: bmin / 1.3, Y: eps}, {X: bmax * 1.3, Y: eps}})
		if err != nil {
			return nil, err
		}
		e.Color, e.Dashes = okabeIto[6], []vg.Length{vg.Points(3), vg.Points(3)}
		p.Add(e)
		p.Legend.Add(fmt.Sprintf("tolerance eps = %g", eps), e)
		ymax = math.Max(ymax, eps)
	}
	pad := 0.08 * (ymax - ymin)
	p.X.Min, p.X.Max = bmin/1.3, bmax*1.3
	p.Y.Min, p.Y.Max = ymin-pad, ymax+3*pad // room for the legend above the curves
	p.Legend.Left = true
	return &Figure{Name: "cbs_compare", Plot: p, Width: width, Height: height(width), Inputs: inputsRec}, nil
}

// vline is a dotted vertical line at x across the plot's data range.
func vline(x float64, c interface{ RGBA() (r, g, b, a uint32) }) (*plotter.Line, error) {
	l, err := plotter.NewLine(plotter.XYs{{X: x, Y: -1e3}, {X: x, Y: 1e3}})
	if err != nil {
		return nil, err
	}
	l.Color, l.Dashes = c, []vg.Length{vg.Points(1), vg.Points(2)}
	return l, nil
}
