package analysis

import (
	"fmt"
	"math"

	"cbs/runfmt"
)

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
	res.Branches = run.Total
	if len(run.Unfinished) > 0 {
		res.Partial, res.Unfinished = true, run.Unfinished
	}
	series := NoiseScales(run, opts.EMATokens)
	if len(series) > 0 {
		window := noiseWindow(run, opts.EMATokens)
		ns := &NoiseScaleFit{Note: fmt.Sprintf("B_simple = EMA(tr Sigma) / EMA(|G|^2) is a cheap predictor of the critical batch, known to underestimate it for Adam-trained language models; it is not the CBS. The window value is the ratio of means over the last %s tokens with a %.0f%% block-bootstrap interval; \"too noisy\" where that interval spans more than %dx", runfmt.FormatTokens(window), 100*opts.Level, noisyFactor)}
		byID := map[string]*Branch{}
		for _, b := range run.Branches {
			byID[b.Spec.ID] = b
		}
		nan := Num(math.NaN())
		for i, s := range series {
			n := len(s.Tokens) - 1
			row := NoiseRow{ID: s.ID, Batch: s.Batch, Tokens: s.Tokens[n], Final: Num(s.BSimple[n]), Source: s.Source, End: nan, EndLo: nan, EndHi: nan, NonPositive: nan}
			if e, ok := EndNoiseScale(byID[s.ID], window, max(opts.Bootstrap, 100), opts.Seed+uint64(i), opts.Level); ok {
				row.EndLo, row.EndHi, row.WindowSteps, row.NonPositive, row.TooNoisy = Num(e.Lo), Num(e.Hi), e.Steps, Num(e.NonPositive), e.TooNoisy
				if !e.TooNoisy {
					row.End = Num(e.BSimple)
				}
			}
			ns.Branches = append(ns.Branches, row)
		}
		ns.Missing = NoiseGaps(run, opts.EMATokens)
		res.NoiseScale = ns
	}
	return d, res, nil
}

// noiseWindow is the span over which a branch's end noise scale is averaged: a quarter of the
// shortest branch, or the EMA time constant when one is given (the same for every branch).
func noiseWindow(run *Run, emaTokens float64) float64 {
	if emaTokens > 0 {
		return emaTokens
	}
	return run.shortestBranch() / 4
}

// NoiseScales returns the B_simple series of every branch that logged gradient-noise fields.
func NoiseScales(run *Run, emaTokens float64) []NoiseSeries {
	emaTokens = noiseEMATokens(run, emaTokens)
	var out []NoiseSeries
	for _, b := range run.Branches {
		if s, ok := NoiseScale(b, emaTokens); ok {
			out = append(out, s)
		}
	}
	return out
}

// noiseEMATokens is the EMA time constant of the B_simple series: emaTokens when given, else
// 1/20 of the shortest branch, as for the training loss.
func noiseEMATokens(run *Run, emaTokens float64) float64 {
	if emaTokens > 0 {
		return emaTokens
	}
	return run.shortestBranch() / 20
}

// shortestBranch is the tokens of the branch that logged the fewest, the span all branches cover.
func (run *Run) shortestBranch() float64 {
	shortest := math.Inf(1)
	for _, b := range run.Branches {
		shortest = math.Min(shortest, float64(b.Records[len(b.Records)-1].Tokens))
	}
	return shortest
}
