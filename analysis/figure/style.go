package figure

import (
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/vg"
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

// log2Ticks marks powers of two, labelled like 64K (K = 1024). When more than seven powers fall
// in range, every other one is labelled so the labels do not touch.
type log2Ticks struct{}

func (log2Ticks) Ticks(min, max float64) []plot.Tick {
	lo, hi := int(math.Ceil(math.Log2(min)-1e-9)), int(math.Floor(math.Log2(max)+1e-9))
	step := 1
	for (hi-lo)/step+1 > 7 {
		step++
	}
	var ticks []plot.Tick
	for e := lo; e <= hi; e++ {
		t := plot.Tick{Value: math.Ldexp(1, e)}
		if (e-lo)%step == 0 {
			t.Label = binaryLabel(e)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

func binaryLabel(e int) string {
	switch {
	case e >= 40:
		return strconv.Itoa(1<<(e-40)) + "T"
	case e >= 30:
		return strconv.Itoa(1<<(e-30)) + "G"
	case e >= 20:
		return strconv.Itoa(1<<(e-20)) + "M"
	case e >= 10:
		return strconv.Itoa(1<<(e-10)) + "K"
	case e >= 0:
		return strconv.Itoa(1 << e)
	}
	return strconv.FormatFloat(math.Ldexp(1, e), 'g', -1, 64)
}

// log10Ticks labels every decade (1K, 10K, 100K, 1M) with unlabelled minor ticks between; when
// the range spans less than two decades it labels 2 and 5 too, so there are always labels.
type log10Ticks struct{}

func (log10Ticks) Ticks(min, max float64) []plot.Tick {
	lo, hi := int(math.Floor(math.Log10(min))), int(math.Ceil(math.Log10(max)))
	few := hi-lo <= 2
	var ticks []plot.Tick
	for e := lo; e <= hi; e++ {
		for m := 1; m <= 9; m++ {
			v := float64(m) * math.Pow10(e)
			if v < min*(1-1e-9) || v > max*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || (few && (m == 2 || m == 5)) {
				t.Label = siLabel(v)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

func siLabel(v float64) string {
	for _, s := range []struct {
		suf string
		v   float64
	}{{"T", 1e12}, {"B", 1e9}, {"M", 1e6}, {"K", 1e3}} {
		if v >= s.v {
			return strconv.FormatFloat(v/s.v, 'g', 3, 64) + s.suf
		}
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// binaryUnits writes a token count with K = 1024 and M = 1024^2, the convention of the batch
// axes, so that every number on a figure reads the same way: 8K is 8192, 22.6K is 23142.
func binaryUnits(v float64) string {
	for _, s := range []struct {
		suf string
		v   float64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if v >= s.v*0.9995 {
			return strconv.FormatFloat(v/s.v, 'g', 3, 64) + s.suf
		}
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
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
			t.Label = strconv.FormatFloat(math.Round(v/step)*step, 'f', decimals, 64)
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
