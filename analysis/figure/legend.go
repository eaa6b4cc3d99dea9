package figure

import (
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// outerLegend is a legend drawn in a strip above the data area, in as many columns as the width
// allows. gonum draws its legend over the data, where on a figure whose points, bands and markers
// can fall anywhere it would hide some of them; a strip of its own never does.
type outerLegend struct {
	style plot.Legend // text style, thumbnail width and padding; its entries stay empty
	items []legendItem
}

type legendItem struct {
	text   string
	thumbs []plot.Thumbnailer
}

// Gaps around the strip and between its columns.
var (
	legendMargin = vg.Points(4)
	legendColGap = vg.Points(10)
)

func newOuterLegend(p *plot.Plot) *outerLegend {
	st := p.Legend
	st.Top, st.Left, st.XOffs, st.YOffs = true, true, 0, 0
	return &outerLegend{style: st}
}

func (o *outerLegend) Add(text string, thumbs ...plot.Thumbnailer) {
	o.items = append(o.items, legendItem{text, thumbs})
}

func (o *outerLegend) itemWidth(it legendItem) vg.Length {
	return o.style.ThumbnailWidth + o.style.TextStyle.Rectangle(" "+it.text).Max.X
}

func (o *outerLegend) entryHeight() vg.Length {
	var h vg.Length
	for _, it := range o.items {
		h = max(h, o.style.TextStyle.Rectangle(it.text).Max.Y)
	}
	return h
}

// layout fills columns top to bottom with the fewest rows whose columns fit in width.
func (o *outerLegend) layout(width vg.Length) (rows int, colWidths []vg.Length) {
	n := len(o.items)
	for rows = 1; rows <= n; rows++ {
		colWidths = colWidths[:0]
		total := 2 * legendMargin
		for c := 0; c*rows < n; c++ {
			var w vg.Length
			for _, it := range o.items[c*rows : min((c+1)*rows, n)] {
				w = max(w, o.itemWidth(it))
			}
			colWidths = append(colWidths, w)
			total += w
			if c > 0 {
				total += legendColGap
			}
		}
		if total <= width {
			return rows, colWidths
		}
	}
	return n, colWidths
}

// height is how much taller the figure gets for the strip.
func (o *outerLegend) height(width vg.Length) vg.Length {
	if len(o.items) == 0 {
		return 0
	}
	rows, _ := o.layout(width)
	return vg.Length(rows)*o.entryHeight() + vg.Length(rows-1)*o.style.Padding + 2*legendMargin
}

// draw fills the strip at the top of c and returns the rest of c for the plot.
func (o *outerLegend) draw(c draw.Canvas) draw.Canvas {
	h := o.height(c.Size().X)
	if h == 0 {
		return c
	}
	rows, widths := o.layout(c.Size().X)
	x := c.Min.X + legendMargin
	for col, w := range widths {
		l := o.style
		for _, it := range o.items[col*rows : min((col+1)*rows, len(o.items))] {
			l.Add(it.text, it.thumbs...)
		}
		strip := c
		strip.Min = vg.Point{X: x, Y: c.Max.Y - h + legendMargin}
		strip.Max = vg.Point{X: x + w, Y: c.Max.Y - legendMargin}
		l.Draw(strip)
		x += w + legendColGap
	}
	return draw.Crop(c, 0, 0, 0, -h)
}

// errThumb is the legend thumbnail of a point with an error bar.
type errThumb struct {
	line  draw.LineStyle
	glyph draw.GlyphStyle
}

func (t errThumb) Thumbnail(c *draw.Canvas) {
	x := c.Center().X
	r := (c.Max.Y - c.Min.Y) / 2
	c.StrokeLine2(t.line, x, c.Min.Y+r*0.1, x, c.Max.Y-r*0.1)
	c.DrawGlyph(t.glyph, c.Center())
}

// noteMargin is the gap around the strip of notes above a figure.
var noteMargin = vg.Points(3)

// AddNote puts a line of text in a strip above the figure, wrapped to its width, and makes the
// figure taller to hold it: what a reader must know before reading the data, such as a fit of an
// unfinished sweep or a branch the figure cannot show. A caption beside the figure may be lost
// when it is copied; a note drawn into it travels with it.
func (f *Figure) AddNote(text string) {
	f.Height -= f.notesHeight()
	f.notes = append(f.notes, text)
	f.Height += f.notesHeight()
}

func (f *Figure) noteStyle() text.Style {
	st := f.Plot.Legend.TextStyle
	st.Color = okabeIto[1]
	st.XAlign, st.YAlign = draw.XLeft, draw.YBottom
	return st
}

// noteLines wraps the notes at spaces to the figure's width.
func (f *Figure) noteLines() []string {
	st := f.noteStyle()
	room := f.Width - 2*noteMargin
	var lines []string
	for _, n := range f.notes {
		line := ""
		for _, w := range strings.Fields(n) {
			if line != "" && st.Width(line+" "+w) > room {
				lines = append(lines, line)
				line = "  " + w
				continue
			}
			if line != "" {
				line += " "
			}
			line += w
		}
		lines = append(lines, line)
	}
	return lines
}

func (f *Figure) notesHeight() vg.Length {
	if len(f.notes) == 0 {
		return 0
	}
	st := f.noteStyle()
	return vg.Length(len(f.noteLines()))*st.Height("M") + 2*noteMargin
}

// drawNotes fills the strip of notes at the top of c and returns the rest of c.
func (f *Figure) drawNotes(c draw.Canvas) draw.Canvas {
	h := f.notesHeight()
	if h == 0 {
		return c
	}
	st := f.noteStyle()
	lh := st.Height("M")
	descent := st.FontExtents().Descent
	y := c.Max.Y - noteMargin
	for _, l := range f.noteLines() {
		y -= lh
		c.FillText(st, vg.Point{X: c.Min.X + noteMargin, Y: y + descent}, l)
	}
	return draw.Crop(c, 0, 0, 0, -h)
}
