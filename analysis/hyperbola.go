package analysis

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"
	"gonum.org/v1/gonum/stat"
)

// Hyperbola is a fit of steps-to-target S(B) = A + Bc/B (McCandlish et al. 2018): A = S_min, the
// fewest steps any batch needs, and Bc = E_min, the fewest tokens; B_crit = Bc/A = E_min/S_min.
type Hyperbola struct {
	A, B    float64 // S(B) = A + B/batch
	N       int     // points fitted
	DOF     int     // N - 2
	RMSELog float64 // root-mean-square residual of log S
}

// Steps is the fitted S at a batch size.
func (h Hyperbola) Steps(batch float64) float64 { return h.A + h.B/batch }

// Bcrit is b/a = E_min/S_min, in tokens.
func (h Hyperbola) Bcrit() float64 { return h.B / h.A }

// OverheadBatch is the batch at which the fitted S(B) exceeds perfect linear scaling from b0 by
// the fraction tau: the solution of a + b/B = (1+tau) S(b0) b0 / B, which is (1+tau) b0 + tau b/a.
func (h Hyperbola) OverheadBatch(b0, tau float64) float64 { return (1+tau)*b0 + tau*h.B/h.A }

// FitHyperbola fits S(B) = a + b/B with a, b > 0 by least squares on log S, so every point counts
// by its relative error; a fit in linear space would be dominated by the small batches. It needs
// at least three points (one degree of freedom): two points always fit exactly and test nothing.
func FitHyperbola(batches, steps []float64) (Hyperbola, error) {
	n := len(batches)
	if n != len(steps) {
		return Hyperbola{}, fmt.Errorf("hyperbola: %d batches but %d step counts", n, len(steps))
	}
	if n < 3 {
		return Hyperbola{}, fmt.Errorf("hyperbola: %d point(s); needs at least 3 batch sizes that reach the target (2 parameters, so 2 points fit exactly and check nothing)", n)
	}
	distinct := map[float64]bool{}
	for i := range batches {
		if !(batches[i] > 0) || !(steps[i] > 0) || math.IsInf(batches[i], 0) || math.IsInf(steps[i], 0) {
			return Hyperbola{}, fmt.Errorf("hyperbola: point %d (batch %v, steps %v): both must be finite and > 0", i, batches[i], steps[i])
		}
		distinct[batches[i]] = true
	}
	if len(distinct) < 3 {
		return Hyperbola{}, fmt.Errorf("hyperbola: %d distinct batch sizes; needs at least 3", len(distinct))
	}
	// Work with x = scale/B so both parameters are of the order of the step counts.
	scale := math.Exp(stat.Mean(logs(batches), nil))
	x := make([]float64, n)
	ls := logs(steps)
	for i := range x {
		x[i] = scale / batches[i]
	}
	a0, b0 := hyperbolaStart(x, steps)
	model := func(p []float64, i int) (m, ea, eb float64) {
		ea, eb = math.Exp(p[0]), math.Exp(p[1])
		return ea + eb*x[i], ea, eb
	}
	prob := optimize.Problem{
		Func: func(p []float64) float64 {
			var f float64
			for i := range x {
				m, _, _ := model(p, i)
				r := ls[i] - math.Log(m)
				f += r * r
			}
			return f
		},
		Grad: func(g, p []float64) {
			g[0], g[1] = 0, 0
			for i := range x {
				m, ea, eb := model(p, i)
				r := ls[i] - math.Log(m)
				g[0] -= 2 * r * ea / m
				g[1] -= 2 * r * eb * x[i] / m
			}
		},
	}
	settings := &optimize.Settings{GradientThreshold: 1e-9, MajorIterations: 2000}
	res, err := optimize.Minimize(prob, []float64{math.Log(a0), math.Log(b0)}, settings, &optimize.BFGS{})
	if err != nil && res == nil {
		return Hyperbola{}, fmt.Errorf("hyperbola: fit did not converge: %v", err)
	}
	p := res.X
	h := Hyperbola{A: math.Exp(p[0]), B: math.Exp(p[1]) * scale, N: n, DOF: n - 2}
	h.RMSELog = math.Sqrt(res.F / float64(n))
	minS := floats.Min(steps)
	// A parameter running off to zero is not a convergence failure but the data's answer: no
	// curvature in range, so B_crit is beyond one end of the ladder. Those are reported censored.
	if h.A < 1e-9*minS || h.B/scale < 1e-9*minS {
		return h, nil
	}
	// A line search that cannot improve on a point with a vanishing gradient is at the minimum:
	// rounding in the sum of squares stops it, not a failure of the fit. The Hessian in (log a,
	// log b) is of order N, so a gradient of 1e-6 leaves the parameters within ~1e-7 relative.
	stationary := floats.Norm(res.Gradient, math.Inf(1)) < 1e-6
	if !converged(res.Status) && !stationary {
		return Hyperbola{}, fmt.Errorf("hyperbola: fit did not converge (%v after %d iterations, gradient %.3g)", statusReason(res.Status, err), res.Stats.MajorIterations, floats.Norm(res.Gradient, math.Inf(1)))
	}
	return h, nil
}

// hyperbolaStart solves the linear least-squares problem with relative weights, which is exact
// for noiseless data and close otherwise; the log-space fit then starts next to its answer.
func hyperbolaStart(x, s []float64) (a, b float64) {
	n := len(x)
	design := mat.NewDense(n, 2, nil)
	rhs := mat.NewVecDense(n, nil)
	for i := range x {
		design.Set(i, 0, 1/s[i])
		design.Set(i, 1, x[i]/s[i])
		rhs.SetVec(i, 1)
	}
	var sol mat.VecDense
	if err := sol.SolveVec(design, rhs); err == nil && sol.AtVec(0) > 0 && sol.AtVec(1) > 0 {
		return sol.AtVec(0), sol.AtVec(1)
	}
	a = floats.Min(s) / 2
	var num, den float64
	for i := range x {
		num += s[i] - a
		den += x[i]
	}
	return a, num / den
}

func converged(s optimize.Status) bool {
	switch s {
	case optimize.Success, optimize.GradientThreshold, optimize.FunctionConvergence, optimize.StepConvergence, optimize.MethodConverge, optimize.FunctionThreshold:
		return true
	}
	return false
}

func statusReason(s optimize.Status, err error) string {
	if err != nil {
		return fmt.Sprintf("%v: %v", s, err)
	}
	return s.String()
}

func logs(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = math.Log(x)
	}
	return out
}

// CrossingTokens returns the tokens at which a loss curve first reaches target, interpolating
// between the two logged marks around the crossing linearly in log loss. ok is false when the
// curve starts at or below the target (the crossing happened before the first mark) or never
// reaches it; reason says which.
func CrossingTokens(tokens, loss []float64, target float64) (t float64, ok bool, reason string) {
	if len(loss) == 0 {
		return 0, false, "no marks"
	}
	if loss[0] <= target {
		return 0, false, "already below the target at the first mark"
	}
	for i := 1; i < len(loss); i++ {
		if loss[i] <= target {
			l1, l2 := math.Log(loss[i-1]), math.Log(loss[i])
			frac := (l1 - math.Log(target)) / (l1 - l2)
			return tokens[i-1] + frac*(tokens[i]-tokens[i-1]), true, ""
		}
	}
	return 0, false, notReached
}

// notReached is CrossingTokens' reason for a curve that ends above the target: a censored
// observation (more steps than the branch ran), not a missing one.
const notReached = "never reaches the target"
