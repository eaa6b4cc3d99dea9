package analysis

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/optimize"
	"gonum.org/v1/gonum/stat"
)

// PowerLaw is a fit of final loss against batch size, L(B) = Linf + A B^-Alpha.
type PowerLaw struct {
	Linf, A, Alpha float64
	N              int     // points fitted
	DOF            int     // N - 3
	RMSE           float64 // root-mean-square residual of L
	// Flat is set when the loss does not fall with batch size (no A > 0 fits better than a
	// constant); A is 0 and the knee is 0.
	Flat bool
}

// Loss is the fitted L at a batch size.
func (p PowerLaw) Loss(batch float64) float64 { return p.Linf + p.A*math.Pow(batch, -p.Alpha) }

// Knee is the fitted curve's knee for a tolerance eps.
func (p PowerLaw) Knee(eps float64) float64 {
	if p.Flat || p.A <= 0 {
		return 0
	}
	return KneeBatch(p.A, p.Alpha, eps)
}

// KneeBatch is where one more doubling of the batch gains less than eps on a curve
// Linf + A B^-alpha: L(B) - L(2B) = A B^-alpha (1 - 2^-alpha) = eps, so
// B_knee = (A (1 - 2^-alpha) / eps)^(1/alpha).
func KneeBatch(a, alpha, eps float64) float64 {
	return math.Pow(a*(1-math.Pow(2, -alpha))/eps, 1/alpha)
}

// FitPowerLaw fits L(B) = Linf + A B^-alpha with A, alpha > 0 by least squares on L. It needs at
// least four batch sizes: three parameters leave N - 3 degrees of freedom, and with three points
// the curve passes through every point whatever the truth.
func FitPowerLaw(batches, losses []float64) (PowerLaw, error) {
	n := len(batches)
	if n != len(losses) {
		return PowerLaw{}, fmt.Errorf("power law: %d batches but %d losses", n, len(losses))
	}
	if n < 4 {
		return PowerLaw{}, fmt.Errorf("power law: %d batch size(s); needs at least 4 (3 parameters, so 3 points fit exactly and check nothing)", n)
	}
	for i := range batches {
		if !(batches[i] > 0) || math.IsInf(batches[i], 0) || math.IsNaN(losses[i]) || math.IsInf(losses[i], 0) {
			return PowerLaw{}, fmt.Errorf("power law: point %d (batch %v, loss %v): batch must be > 0 and loss finite", i, batches[i], losses[i])
		}
	}
	// x = B/scale keeps A of the order of the losses whatever the unit of B.
	scale := math.Exp(stat.Mean(logs(batches), nil))
	x := make([]float64, n)
	for i := range x {
		x[i] = batches[i] / scale
	}
	// For a fixed alpha the model is linear in (Linf, A), so the least-squares problem reduces to
	// one dimension (variable projection): a scan over alpha finds the basin and Nelder-Mead
	// refines log alpha, with (Linf, A) solved exactly at every trial alpha.
	profile := func(logAlpha float64) (linf, a, sse float64) {
		return linearPowerFit(x, losses, math.Exp(logAlpha))
	}
	bestSSE, bestLog := math.Inf(1), 0.0
	const lo, hi, steps = -4.6, 1.4, 60 // alpha from 0.01 to 4
	for k := 0; k <= steps; k++ {
		la := lo + (hi-lo)*float64(k)/steps
		if _, a, sse := profile(la); a > 0 && sse < bestSSE {
			bestSSE, bestLog = sse, la
		}
	}
	if math.IsInf(bestSSE, 1) {
		mean := stat.Mean(losses, nil)
		var sse float64
		for _, l := range losses {
			sse += (l - mean) * (l - mean)
		}
		return PowerLaw{Linf: mean, N: n, DOF: n - 1, RMSE: math.Sqrt(sse / float64(n)), Flat: true}, nil
	}
	spread := floats.Max(losses) - floats.Min(losses)
	settings := &optimize.Settings{
		MajorIterations: 500,
		Converger:       &optimize.FunctionConverge{Absolute: 1e-15 * (1 + spread*spread), Relative: 1e-12, Iterations: 20},
	}
	method := &optimize.NelderMead{InitialVertices: nil, SimplexSize: (hi - lo) / steps}
	res, err := optimize.Minimize(optimize.Problem{Func: func(p []float64) float64 {
		_, a, sse := profile(p[0])
		if a <= 0 {
			// The constraint A > 0 binds: the best curve is the constant, whose SSE is the total
			// sum of squares, which is never below an unconstrained fit's.
			return stat.Variance(losses, nil) * float64(n-1)
		}
		return sse
	}}, []float64{bestLog}, settings, method)
	if err != nil || res == nil || !converged(res.Status) {
		var st optimize.Status
		if res != nil {
			st = res.Status
		}
		return PowerLaw{}, fmt.Errorf("power law: fit did not converge (%s)", statusReason(st, err))
	}
	linf, a, sse := profile(res.X[0])
	p := PowerLaw{Linf: linf, Alpha: math.Exp(res.X[0]), N: n, DOF: n - 3, RMSE: math.Sqrt(sse / float64(n))}
	p.A = a * math.Pow(scale, p.Alpha)
	if !(p.A > 0) || math.IsInf(p.A, 0) {
		return PowerLaw{}, fmt.Errorf("power law: fit did not converge (A = %v at alpha = %.3g)", p.A, p.Alpha)
	}
	if res.X[0] <= lo || res.X[0] >= hi+1 {
		return PowerLaw{}, fmt.Errorf("power law: fit did not converge (alpha ran to %.3g, outside 0.01..4: the losses do not follow a power law in batch size)", p.Alpha)
	}
	return p, nil
}

// linearPowerFit solves min over (linf, a) of sum (L - linf - a x^-alpha)^2.
func linearPowerFit(x, l []float64, alpha float64) (linf, a, sse float64) {
	z := make([]float64, len(x))
	for i := range x {
		z[i] = math.Pow(x[i], -alpha)
	}
	linf, a = stat.LinearRegression(z, l, nil, false)
	for i := range x {
		r := l[i] - linf - a*z[i]
		sse += r * r
	}
	return linf, a, sse
}
