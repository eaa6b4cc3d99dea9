package figure

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"cbs/analysis"
	"cbs/runfmt"
)

// TrajectoryPoint is one sweep of an arm: where it branched and what it measured.
type TrajectoryPoint struct {
	Tokens float64 // training tokens of the parent at the branch point
	Result *analysis.Result
}

// TrajectoryInput is one arm: its sweeps at successive branch points.
type TrajectoryInput struct {
	Label  string
	Points []TrajectoryPoint
}

// Trajectory draws each arm's token-overhead CBS against the tokens its parent had trained when
// it branched, with the bootstrap interval as a bar; a CBS censored by the ladder is a triangle at
// the bound pointing the way the CBS lies (up: at least the largest batch; down: below the
// smallest).
func Trajectory(inputs []TrajectoryInput, width vg.Length) (*Figure, error) {
	if len(inputs) == 0 {
		return nil, errors.New("trajectory: no arms")
	}
	p := newPlot(width, "tokens trained at the branch point", "token-overhead CBS (tokens, Ki = 1024)")
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, tokenTicks{}
	// Arms that branch at the same tokens are set a little apart so that every bar shows.
	var points []float64
	for _, in := range inputs {
		for _, pt := range in.Points {
			points = append(points, pt.Tokens)
		}
	}
	span := slices.Max(points) - slices.Min(points)
	if span == 0 {
		span = slices.Max(points)
	}
	dodge := func(arm int) float64 { return span * 0.015 * (float64(arm) - float64(len(inputs)-1)/2) }
	legend := newOuterLegend(p)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	xmin, xmax := math.Inf(1), math.Inf(-1)
	type summary struct {
		Label    string       `json:"label"`
		Tokens   float64      `json:"branch_tokens"`
		CBS      analysis.Num `json:"cbs_tokens"`
		Lo       analysis.Num `json:"interval_lo"`
		Hi       analysis.Num `json:"interval_hi"`
		Censored string       `json:"censored"`
		Bound    analysis.Num `json:"bound_tokens"`
	}
	var sums []summary
	for i, in := range inputs {
		c := okabeIto[i%len(okabeIto)]
		var line plotter.XYs
		var thumb plot.Thumbnailer
		for _, pt := range in.Points {
			pf := pt.Result.Primary
			if pf == nil || pf.Error != "" {
				continue
			}
			x := pt.Tokens + dodge(i)
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			sums = append(sums, summary{Label: in.Label, Tokens: x, CBS: pf.CBS, Lo: pf.Interval[0], Hi: pf.Interval[1], Censored: string(pf.Censored), Bound: pf.Bound})
			lo, hi := float64(pf.Interval[0]), float64(pf.Interval[1])
			// Bars end where the ladder ends when an interval end is unbounded.
			ladderLo, ladderHi := pf.Rungs[0].Batch, pf.Rungs[len(pf.Rungs)-1].Batch
			if !(lo > 0) || math.IsInf(lo, 0) {
				lo = ladderLo / 2
			}
			if math.IsInf(hi, 0) || math.IsNaN(hi) {
				hi = ladderHi * 2
			}
			y := float64(pf.CBS)
			glyph := draw.GlyphDrawer(draw.CircleGlyph{})
			switch pf.Censored {
			case analysis.CensoredAbove:
				y, glyph = float64(pf.Bound), draw.PyramidGlyph{}
			case analysis.CensoredBelow:
				y, glyph = float64(pf.Bound), invertedPyramid{}
			}
			ymin, ymax = math.Min(ymin, math.Min(lo, y)), math.Max(ymax, math.Max(hi, y))
			bar, err := plotter.NewLine(plotter.XYs{{X: x, Y: lo}, {X: x, Y: hi}})
			if err != nil {
				return nil, err
			}
			bar.Color, bar.Width = c, vg.Points(1)
			s, err := plotter.NewScatter(plotter.XYs{{X: x, Y: y}})
			if err != nil {
				return nil, err
			}
			s.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(3), Shape: glyph}
			p.Add(bar, s)
			thumb = s
			line = append(line, plotter.XY{X: x, Y: y})
		}
		if len(line) > 1 {
			l, err := plotter.NewLine(line)
			if err != nil {
				return nil, err
			}
			l.Color, l.Width, l.Dashes = c, vg.Points(0.8), []vg.Length{vg.Points(3), vg.Points(2)}
			p.Add(l)
		}
		if thumb != nil {
			legend.Add(in.Label, thumb)
		}
	}
	if len(sums) == 0 {
		return nil, errors.New("trajectory: no arm has a token-overhead CBS")
	}
	p.Y.Min, p.Y.Max = padLog(ymin, ymax, 1.3)
	pad := 0.1 * (xmax - xmin)
	if pad == 0 {
		pad = 0.1 * xmax
	}
	p.X.Min, p.X.Max = xmin-pad, xmax+pad
	p.X.Tick.Marker = pointTicks(points)
	f := &Figure{Name: "cbs_vs_tokens", Plot: p, Width: width, Height: height(width) + legend.height(width), Inputs: sums, legend: legend}
	for _, in := range inputs {
		for _, pt := range in.Points {
			if pt.Result != nil && pt.Result.Partial {
				f.AddNote(fmt.Sprintf("%s at %s tokens: %s", in.Label, runfmt.FormatTokens(pt.Tokens), pt.Result.PartialNote()))
			}
		}
	}
	return f, nil
}

// pointTicks marks the branch points themselves, labelled in tokens.
type pointTicks []float64

func (pt pointTicks) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	seen := map[float64]bool{}
	for _, v := range pt {
		if v >= min && v <= max && !seen[v] {
			seen[v] = true
			out = append(out, plot.Tick{Value: v, Label: runfmt.FormatTokens(v)})
		}
	}
	return out
}
