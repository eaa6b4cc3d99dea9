package report

import (
	"fmt"
	"io"
	"path/filepath"

	"gonum.org/v1/plot/vg"

	"cbs/analysis"
	"cbs/analysis/figure"
)

// Figures saves every figure the fit supports into dir, in format (svg, png or pdf) and width,
// and names each one the data cannot support on log. run is nil for a table; it gives the
// gradient noise scale.
func Figures(run *analysis.Run, d *analysis.Data, res *analysis.Result, dir, format string, width vg.Length, log io.Writer) ([]string, []figure.Skipped, error) {
	var noise []analysis.NoiseSeries
	if run != nil {
		noise = analysis.NoiseScales(run, res.Options.EMATokens)
	}
	if len(d.Groups) == 0 {
		d = nil
	}
	figs, skipped := figure.All(d, res, noise, width)
	if err := mkdirFor(filepath.Join(dir, "x")); err != nil {
		return nil, nil, err
	}
	var paths []string
	for _, f := range figs {
		path, err := f.Save(dir, format, res)
		if err != nil {
			return nil, nil, err
		}
		paths = append(paths, path)
	}
	for _, s := range skipped {
		fmt.Fprintf(log, "cbs: skipped %s: %s\n", s.Name, s.Reason)
	}
	return paths, skipped, nil
}
