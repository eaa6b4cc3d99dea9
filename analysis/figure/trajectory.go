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
	p := newPlot(width, "tokens trained at the branch point", "token-overhead CBS (tokens, K = 1024)")
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, log2Ticks{}
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
			x := pt.Tokens
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
	p.X.Tick.Marker = binaryTokenTicks{}
	return &Figure{Name: "cbs_vs_tokens", Plot: p, Width: width, Height: height(width) + legend.height(width), Inputs: sums, legend: legend}, nil
}

// binaryTokenTicks labels a linear token axis in Ki/Mi at steps of 1-2-5 times a power of two.
type binaryTokenTicks struct{}

func (binaryTokenTicks) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	for _, t := range (linTicks{}).Ticks(min, max) {
		if t.Label != "" {
			t.Label = binaryUnitsLabel(t.Value)
		}
		out = append(out, t)
	}
	return out
}

func binaryUnitsLabel(v float64) string {
	switch {
	case v >= 1<<20:
		return fmt.Sprintf("%gMi", math.Round(v/(1<<20)*100)/100)
	case v >= 1<<10:
		return fmt.Sprintf("%gKi", math.Round(v/(1<<10)*100)/100)
	}
	return fmt.Sprintf("%g", v)
}
