package analysis

import "math"

// FitRun analyses a loaded run: the loss-based estimators on the chosen metric, plus the gradient
// noise scale of every branch that logged it.
func FitRun(run *Run, opts Options, codeVersion string) (*Data, *Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, nil, err
	}
	d, err := FromRun(run, opts.Metric, opts.EMATokens)
	if err != nil {
		return nil, nil, err
	}
	res, err := Analyze(d, opts, codeVersion)
	if err != nil {
		return nil, nil, err
	}
	series := NoiseScales(run, opts.EMATokens)
	if len(series) > 0 {
		ns := &NoiseScaleFit{Note: "B_simple = EMA(tr Sigma) / EMA(|G|^2) is a cheap predictor of the critical batch, known to underestimate it for Adam-trained language models; it is not the CBS"}
		for _, s := range series {
			n := len(s.Tokens) - 1
			ns.Branches = append(ns.Branches, NoiseRow{ID: s.ID, Batch: s.Batch, Tokens: s.Tokens[n], Final: Num(s.BSimple[n]), Source: s.Source})
		}
		res.NoiseScale = ns
	}
	return d, res, nil
}

// NoiseScales returns the B_simple series of every branch that logged gradient-noise fields.
func NoiseScales(run *Run, emaTokens float64) []NoiseSeries {
	if emaTokens <= 0 {
		shortest := math.Inf(1)
		for _, b := range run.Branches {
			shortest = math.Min(shortest, float64(b.Records[len(b.Records)-1].Tokens))
		}
		emaTokens = shortest / 20
	}
	var out []NoiseSeries
	for _, b := range run.Branches {
		if s, ok := NoiseScale(b, emaTokens); ok {
			out = append(out, s)
		}
	}
	return out
}
