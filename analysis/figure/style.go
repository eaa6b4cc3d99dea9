package figure

import (
	"image/color"
	"math"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/vg"

	"cbs/runfmt"
)

// Widths of a figure in a two-column paper.
const (
	Column vg.Length = 3.25 * vg.Inch
	Full   vg.Length = 6.75 * vg.Inch
)

// newPlot returns a plot styled for the given width: 8 pt text in a column, 9 pt across the page.
func newPlot(width vg.Length, xlabel, ylabel string) *plot.Plot {
	p := plot.New()
	size := font.Length(8)
	if width > Column {
		size = 9
	}
	p.Title.TextStyle.Font.Size = size + 1
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font.Size = size
		a.Tick.Label.Font.Size = size - 1
		a.Tick.Length = vg.Points(3)
		a.Padding = vg.Points(2)
	}
	p.X.Label.Text, p.Y.Label.Text = xlabel, ylabel
	p.X.Tick.Marker, p.Y.Tick.Marker = linTicks{}, linTicks{} // log axes replace theirs

	p.Legend.TextStyle.Font.Size = size - 1
	p.Legend.ThumbnailWidth = vg.Points(14)
	p.Legend.Padding = vg.Points(1)
	p.Legend.Top = true
	return p
}

// okabeIto is a palette that stays distinguishable for colour-blind readers and in greyscale
// (with the dash patterns).
var okabeIto = []color.Color{
	color.RGBA{0, 114, 178, 255},   // blue
	color.RGBA{213, 94, 0, 255},    // vermillion
	color.RGBA{0, 158, 115, 255},   // bluish green
	color.RGBA{204, 121, 167, 255}, // reddish purple
	color.RGBA{230, 159, 0, 255},   // orange
	color.RGBA{86, 180, 233, 255},  // sky blue
	color.RGBA{0, 0, 0, 255},       // black
}

// viridis anchors, stopped before the pale yellow end, which vanishes on white.
var viridis = [][3]float64{
	{68, 1, 84}, {72, 40, 120}, {62, 74, 137}, {49, 104, 142}, {38, 130, 142},
	{31, 158, 137}, {53, 183, 121}, {109, 205, 89}, {180, 222, 44},
}

// sequential returns the colour of item i of n on an ordered scale, for batch sizes.
func sequential(i, n int) color.Color {
	f := 0.0
	if n > 1 {
		f = float64(i) / float64(n-1)
	}
	x := f * float64(len(viridis)-1)
	k := int(math.Min(math.Floor(x), float64(len(viridis)-2)))
	t := x - float64(k)
	var c [3]uint8
	for j := range c {
		c[j] = uint8(math.Round(viridis[k][j]*(1-t) + viridis[k+1][j]*t))
	}
	return color.RGBA{c[0], c[1], c[2], 255}
}

// tokenTicks marks a log axis of token counts at powers of two, labelled as the configs and the
// statements write them (8Ki, 1Mi). When more than seven powers fall in range, every other one
// is labelled so the labels do not touch. A range too narrow for four labelled powers gets
// labelled ticks at 1.5 times each power too, then at 1.25 and 1.75 times, so that an axis always
// has enough labels to read a value off.
type tokenTicks struct{}

func (tokenTicks) Ticks(min, max float64) []plot.Tick {
	if !(min > 0) || !(max > min) {
		return nil
	}
	lo, hi := int(math.Floor(math.Log2(min))), int(math.Ceil(math.Log2(max)))
	var ticks []plot.Tick
	for _, subs := range [][]float64{{1}, {1, 1.5}, {1, 1.25, 1.5, 1.75}} {
		ticks = ticks[:0]
		for e := lo; e <= hi; e++ {
			for _, m := range subs {
				v := m * math.Ldexp(1, e)
				if v < min*(1-1e-9) || v > max*(1+1e-9) {
					continue
				}
				ticks = append(ticks, plot.Tick{Value: v, Label: runfmt.FormatTokens(v)})
			}
		}
		if len(ticks) >= 4 {
			break
		}
	}
	step := 1
	for (len(ticks)-1)/step+1 > 7 {
		step++
	}
	for i := range ticks {
		if i%step != 0 {
			ticks[i].Label = ""
		}
	}
	return ticks
}

// countTicks labels a log axis of counts other than tokens (steps) at every decade with
// unlabelled minor ticks between; a range of two decades or less labels 2 and 5 times each
// decade too, and one too narrow for three labels labels every minor tick. The labels are
// plain numbers, so that no suffix on a figure can be mistaken for a token unit.
type countTicks struct{}

func (countTicks) Ticks(min, max float64) []plot.Tick {
	if !(min > 0) || !(max > min) {
		return nil
	}
	lo, hi := int(math.Floor(math.Log10(min))), int(math.Ceil(math.Log10(max)))
	sets := [][]int{{1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}}
	if hi-lo <= 2 {
		sets = sets[1:]
	}
	var ticks []plot.Tick
	for _, labelled := range sets {
		ticks = ticks[:0]
		n := 0
		for e := lo; e <= hi; e++ {
			for m := 1; m <= 9; m++ {
				v := float64(m) * math.Pow10(e)
				if v < min*(1-1e-9) || v > max*(1+1e-9) {
					continue
				}
				t := plot.Tick{Value: v}
				if slices.Contains(labelled, m) {
					t.Label, n = countLabel(v), n+1
				}
				ticks = append(ticks, t)
			}
		}
		if n >= 3 || len(labelled) == 9 {
			return ticks
		}
	}
	return ticks
}

// countLabel writes a count as a plain number, or as 2e6 from a million up.
func countLabel(v float64) string {
	if v < 1e6 {
		return strconv.FormatFloat(v, 'g', 6, 64)
	}
	e := int(math.Floor(math.Log10(v) + 1e-9))
	return strconv.FormatFloat(v/math.Pow10(e), 'g', 3, 64) + "e" + strconv.Itoa(e)
}

// padLog widens [lo, hi] by a factor on each side of a log axis.
func padLog(lo, hi, f float64) (float64, float64) { return lo / f, hi * f }

// padLin widens [lo, hi] by a fraction of its span.
func padLin(lo, hi, f float64) (float64, float64) {
	d := hi - lo
	if d == 0 {
		d = math.Abs(lo)*0.1 + 1e-3
	}
	return lo - f*d, hi + f*d
}

// linTicks labels a linear axis at 1, 2 or 5 x 10^k steps, four to eight of them, with as many
// decimals as the step needs, so that two labels never read the same (gonum's default ticks
// print 3.05 and 3.15 both as "3.1").
type linTicks struct{}

func (linTicks) Ticks(min, max float64) []plot.Tick {
	if !(max > min) {
		return []plot.Tick{{Value: min, Label: strconv.FormatFloat(min, 'g', 4, 64)}}
	}
	raw := (max - min) / 7
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	decimals := max0(-int(math.Floor(math.Log10(step) + 1e-9)))
	var ticks []plot.Tick
	minor := step / 5
	if step/mag == 2 || step/mag == 5 {
		minor = step / 2
	}
	for v := math.Ceil(min/minor-1e-9) * minor; v <= max+1e-9*step; v += minor {
		t := plot.Tick{Value: v}
		if r := math.Abs(v/step - math.Round(v/step)); r < 1e-6 {
			x := math.Round(v/step) * step
			if x == 0 {
				x = 0 // not -0, which would print as "-0.00"
			}
			t.Label = strconv.FormatFloat(x, 'f', decimals, 64)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

func max0(n int) int {
	if n < 0 {
		return 0
	}
	return n
}
