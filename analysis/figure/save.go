package figure

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"time"

	"codeberg.org/go-pdf/fpdf"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgpdf"
	"gonum.org/v1/plot/vg/vgsvg"

	"cbs/analysis"
	"cbs/internal/atomicio"
)

func init() {
	// A PDF records its creation time unless told otherwise; a fixed date keeps figures
	// byte-identical across runs, so regenerated results do not show spurious changes.
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	fpdf.SetDefaultCreationDate(epoch)
	fpdf.SetDefaultModificationDate(epoch)
}

// Formats are the file formats Save writes.
var Formats = []string{"svg", "png", "pdf"}

// Provenance is written beside every figure as <file>.json.
type Provenance struct {
	Figure      string           `json:"figure"`
	File        string           `json:"file"`
	CodeVersion string           `json:"code_version"`
	Source      string           `json:"source"`
	Metric      string           `json:"metric,omitempty"`
	Options     analysis.Options `json:"options"`
	WidthInches float64          `json:"width_in"`
	Inputs      any              `json:"inputs"`
}

// Encode writes the figure in a format: svg, png (300 dpi) or pdf.
func (f *Figure) Encode(w io.Writer, format string) error {
	var c vg.CanvasWriterTo
	switch format {
	case "svg":
		c = vgsvg.New(f.Width, f.Height)
	case "pdf":
		c = vgpdf.New(f.Width, f.Height)
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(f.Width, f.Height), vgimg.UseDPI(300))}
	default:
		return fmt.Errorf("format %q: allowed %s", format, strings.Join(Formats, ", "))
	}
	dc := draw.New(c)
	dc = f.drawNotes(dc)
	if f.legend != nil {
		dc = f.legend.draw(dc)
	}
	f.drawPlot(dc)
	_, err := c.WriteTo(w)
	return err
}

// drawPlot draws the plot with its y axis's label centred on the data area. gonum reserves room
// for that label around Norm((min+max)/2), which on a log axis lies near the top, so a long
// label pushed the data area down and left a blank band above it; drawn here, with the plot
// told it has none, the label takes the room gonum would give it and no more. The layout
// otherwise is gonum's.
func (f *Figure) drawPlot(c draw.Canvas) {
	p := f.Plot
	label := p.Y.Label.Text
	if label == "" {
		p.Draw(c)
		return
	}
	p.Y.Label.Text = ""
	defer func() { p.Y.Label.Text = label }()
	sty := p.Y.Label.TextStyle
	h, descent := sty.Height(label), sty.FontExtents().Descent
	rest := draw.Crop(c, h+descent+p.Y.Label.Padding, 0, 0, 0)
	da := p.DataCanvas(rest)
	mid := da.Center().Y
	sty.Rotation += math.Pi / 2
	c.FillText(sty, vg.Point{X: c.Min.X + h - descent, Y: mid}, label)
	p.Draw(rest)
}

// Save writes dir/<name>.<format> and its provenance dir/<name>.<format>.json, each atomically,
// and returns the image's path.
func (f *Figure) Save(dir, format string, res *analysis.Result) (string, error) {
	path := filepath.Join(dir, f.Name+"."+format)
	if err := atomicio.WriteFileFunc(path, func(w io.Writer) error { return f.Encode(w, format) }); err != nil {
		return "", fmt.Errorf("figure %s: %w", path, err)
	}
	prov := Provenance{Figure: f.Name, File: filepath.Base(path), WidthInches: float64(f.Width / vg.Inch), Inputs: f.Inputs}
	if res != nil {
		prov.CodeVersion, prov.Source, prov.Metric, prov.Options = res.CodeVersion, res.Source, res.Metric, res.Options
	}
	data, err := json.MarshalIndent(prov, "", "  ")
	if err != nil {
		return "", fmt.Errorf("figure %s provenance: %w", path, err)
	}
	if err := atomicio.WriteFile(path+".json", append(data, '\n'), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// Skipped names a figure the data could not support, with the reason.
type Skipped struct {
	Name   string
	Reason string
}

// All draws every figure the data support. d may be nil (no loss curves, as for a steps table)
// and noise may be empty; each figure that cannot be drawn is listed with its reason, so an
// unsupported figure is never written as an empty plot. Every figure of a partial fit carries a
// note saying so, since a figure is often seen without the text around it.
func All(d *analysis.Data, res *analysis.Result, noise []analysis.NoiseSeries, width vg.Length) ([]*Figure, []Skipped) {
	var figs []*Figure
	var skipped []Skipped
	add := func(name string, f *Figure, err error) {
		if err != nil {
			skipped = append(skipped, Skipped{Name: name, Reason: err.Error()})
			return
		}
		figs = append(figs, f)
	}
	// The headline figure first: the primary estimate.
	f, err := Overhead(res, width)
	add("overhead_vs_batch", f, err)
	if d != nil {
		f, err := LossCurves(d, width)
		add("loss_vs_tokens", f, err)
	} else {
		skipped = append(skipped, Skipped{"loss_vs_tokens", "no loss curves in the input"})
	}
	f, err = FinalLoss(res, width)
	add("final_loss_vs_batch", f, err)
	f, err = StepsTokens(res, width)
	add("steps_vs_tokens", f, err)
	f, err = BcritTarget(res, width)
	add("bcrit_vs_target", f, err)
	var gaps []analysis.NoiseGap
	if res.NoiseScale != nil {
		gaps = res.NoiseScale.Missing
	}
	f, err = NoiseScale(noise, gaps, width)
	add("noise_scale_vs_tokens", f, err)
	if note := partialNote(res); note != "" {
		for _, f := range figs {
			f.AddNote(note)
		}
	}
	return figs, skipped
}

// partialNote is the note every figure of a partial fit carries: how many branches are
// unfinished and how far the first few got.
func partialNote(res *analysis.Result) string {
	if !res.Partial {
		return ""
	}
	const shown = 4
	var parts []string
	for i, u := range res.Unfinished {
		if i == shown {
			parts = append(parts, fmt.Sprintf("and %d more", len(res.Unfinished)-shown))
			break
		}
		parts = append(parts, u.ID+" at "+u.Progress())
	}
	return res.PartialNote() + " (" + strings.Join(parts, ", ") + ")"
}
