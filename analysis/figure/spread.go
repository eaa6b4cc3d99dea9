package figure

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"cbs/analysis"
)

// Spread draws each curve's eval loss minus the reference band's mean against tokens: the
// band's run-to-run spread as a shaded area around zero, its runs as thin grey lines, and the
// other groups' runs in colour. Differences are what such a comparison is about; the losses
// themselves would lie on top of each other.
func Spread(band analysis.Band, ref []analysis.Curve, others []analysis.CurveGroup, width vg.Length) (*Figure, error) {
	if len(band.Tokens) == 0 {
		return nil, errors.New("spread: the reference band has no marks")
	}
	p := newPlot(width, "tokens", fmt.Sprintf("eval loss - %s mean (nats/token)", band.Label))
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, tokenTicks{}
	var lo, hi plotter.XYs
	for i, t := range band.Tokens {
		if t > 0 {
			lo = append(lo, plotter.XY{X: t, Y: band.Min[i] - band.Mean[i]})
			hi = append(hi, plotter.XY{X: t, Y: band.Max[i] - band.Mean[i]})
		}
	}
	if len(lo) == 0 {
		return nil, errors.New("spread: no mark with tokens > 0")
	}
	back := slices.Clone(hi)
	slices.Reverse(back)
	area := append(slices.Clone(lo), back...)
	poly, err := plotter.NewPolygon(area)
	if err != nil {
		return nil, err
	}
	poly.Color = color.Gray{Y: 225}
	poly.LineStyle.Width = 0
	p.Add(poly)
	p.Legend.Add(band.Label+" min to max", poly)
	ymin, ymax := 0.0, 0.0
	for _, xy := range area {
		ymin, ymax = math.Min(ymin, xy.Y), math.Max(ymax, xy.Y)
	}
	add := func(c analysis.Curve, style draw.LineStyle) (*plotter.Line, error) {
		var xys plotter.XYs
		for i, t := range band.Tokens {
			for j, ct := range c.Tokens {
				if ct == t && t > 0 {
					d := c.Loss[j] - band.Mean[i]
					xys = append(xys, plotter.XY{X: t, Y: d})
					ymin, ymax = math.Min(ymin, d), math.Max(ymax, d)
				}
			}
		}
		if len(xys) == 0 {
			return nil, fmt.Errorf("spread: run %s has no mark of the band", c.Run)
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.LineStyle = style
		p.Add(l)
		return l, nil
	}
	for i, c := range ref {
		l, err := add(c, draw.LineStyle{Color: color.Gray{Y: 110}, Width: vg.Points(0.7)})
		if err != nil {
			return nil, err
		}
		if i == 0 {
			p.Legend.Add(band.Label+" runs", l)
		}
	}
	for gi, g := range others {
		for ci, c := range g.Curves {
			l, err := add(c, draw.LineStyle{Color: okabeIto[(gi+1)%len(okabeIto)], Width: vg.Points(1.4)})
			if err != nil {
				return nil, err
			}
			if ci == 0 {
				p.Legend.Add(g.Label, l)
			}
		}
	}
	p.X.Min, p.X.Max = lo[0].X, lo[len(lo)-1].X
	p.Y.Min, p.Y.Max = padLin(ymin, ymax, 0.08)
	p.Legend.Top, p.Legend.Left = true, false
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(4), -vg.Points(2)
	return &Figure{Name: "loss_spread", Plot: p, Width: width, Height: height(width),
		Inputs: map[string]any{"band": band, "others": others}}, nil
}
