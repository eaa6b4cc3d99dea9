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
	ext := trajectoryExtent{ymin: math.Inf(1), ymax: math.Inf(-1), xmin: math.Inf(1), xmax: math.Inf(-1)}
	var sums []trajectorySummary
	for i, in := range inputs {
		s, err := ext.drawArm(p, legend, in, okabeIto[i%len(okabeIto)], dodge(i))
		if err != nil {
			return nil, err
		}
		sums = append(sums, s...)
	}
	if len(sums) == 0 {
		return nil, errors.New("trajectory: no arm has a token-overhead CBS")
	}
	p.Y.Min, p.Y.Max = padLog(ext.ymin, ext.ymax, 1.3)
	pad := 0.1 * (ext.xmax - ext.xmin)
	if pad == 0 {
		pad = 0.1 * ext.xmax
	}
	p.X.Min, p.X.Max = ext.xmin-pad, ext.xmax+pad
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

// trajectorySummary is what cbs_vs_tokens records of each point drawn.
type trajectorySummary struct {
	Label    string       `json:"label"`
	Tokens   float64      `json:"branch_tokens"`
	CBS      analysis.Num `json:"cbs_tokens"`
	Lo       analysis.Num `json:"interval_lo"`
	Hi       analysis.Num `json:"interval_hi"`
	Censored string       `json:"censored"`
	Bound    analysis.Num `json:"bound_tokens"`
}

// trajectoryExtent is the range of the marks drawn so far, which the axes must hold.
type trajectoryExtent struct{ ymin, ymax, xmin, xmax float64 }

// drawArm draws an arm's estimates in colour c, shifted by dodge along x, joined by a dashed
// line, with its legend entry; it returns the summaries of the points drawn.
func (ext *trajectoryExtent) drawArm(p *plot.Plot, legend *outerLegend, in TrajectoryInput, c color.Color, dodge float64) ([]trajectorySummary, error) {
	var sums []trajectorySummary
	var line plotter.XYs
	var thumb plot.Thumbnailer
	for _, pt := range in.Points {
		pf := pt.Result.Primary
		if pf == nil || pf.Error != "" {
			continue
		}
		x := pt.Tokens + dodge
		ext.xmin, ext.xmax = math.Min(ext.xmin, x), math.Max(ext.xmax, x)
		sums = append(sums, trajectorySummary{Label: in.Label, Tokens: x, CBS: pf.CBS, Lo: pf.Interval[0], Hi: pf.Interval[1], Censored: string(pf.Censored), Bound: pf.Bound})
		y, s, err := ext.drawEstimate(p, pf, x, c)
		if err != nil {
			return nil, err
		}
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
	return sums, nil
}

// drawEstimate draws one estimate at x: its interval as a bar and its CBS as a circle, or a
// triangle at the bound when censored. It returns the height of the mark and the mark.
func (ext *trajectoryExtent) drawEstimate(p *plot.Plot, pf *analysis.PrimaryFit, x float64, c color.Color) (float64, *plotter.Scatter, error) {
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
	ext.ymin, ext.ymax = math.Min(ext.ymin, math.Min(lo, y)), math.Max(ext.ymax, math.Max(hi, y))
	bar, err := plotter.NewLine(plotter.XYs{{X: x, Y: lo}, {X: x, Y: hi}})
	if err != nil {
		return 0, nil, err
	}
	bar.Color, bar.Width = c, vg.Points(1)
	s, err := plotter.NewScatter(plotter.XYs{{X: x, Y: y}})
	if err != nil {
		return 0, nil, err
	}
	s.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(3), Shape: glyph}
	p.Add(bar, s)
	return y, s, nil
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
