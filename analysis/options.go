package analysis

import (
	"fmt"
	"math"
)

// Options configures Analyze. The CLI flags and the config's [analysis] table both fill this
// struct; Defaults gives the values used when neither says otherwise.
type Options struct {
	// Metric is the loss compared across branches: MetricAuto, MetricEval or MetricTrainEMA.
	Metric string `json:"metric"`
	// EMATokens is the time constant, in tokens, of the EMA applied to train_loss when it is the
	// metric; 0 means 1/20 of the shortest branch.
	EMATokens float64 `json:"ema_tokens"`
	// Eps is the loss tolerance of the tolerance rule and of the knee as a fraction of the
	// reference batch's loss at the comparison mark (0.01: 1%), so objectives with different loss
	// scales are held to the same standard.
	Eps float64 `json:"eps"`
	// EpsAbs, when > 0, replaces Eps with an absolute tolerance in loss units (nats).
	EpsAbs float64 `json:"eps_abs,omitempty"`
	// Targets are the target losses of the steps-to-target fits; empty picks NumTargets of them
	// between the loss every branch reaches and the loss every branch starts above.
	Targets    []float64 `json:"targets,omitempty"`
	NumTargets int       `json:"num_targets"`
	// Tau is the token overhead that defines the primary CBS (the largest batch needing at most
	// 1 + Tau times the reference batch's tokens), and the overhead fraction of the
	// steps-to-target overhead batch.
	Tau float64 `json:"tau"`
	// ReferenceBatch is the reference batch of the token overhead and B0 of the steps-to-target
	// overhead batch, in tokens; 0 means the smallest batch.
	ReferenceBatch float64 `json:"reference_batch"`
	// Bootstrap is the number of resamples for the intervals; 0 turns intervals off.
	Bootstrap int `json:"bootstrap"`
	// Seed keys the bootstrap's random streams, so intervals are reproducible.
	Seed uint64 `json:"seed"`
	// Level is the coverage of the percentile intervals, for example 0.9.
	Level float64 `json:"level"`
}

// Defaults returns the options cbs fit uses when given none.
func Defaults() Options {
	return Options{
		Metric:     MetricAuto,
		Eps:        0.01,
		NumTargets: 5,
		Tau:        0.2,
		Bootstrap:  1000,
		Level:      0.9,
	}
}

// Validate reports the first option outside its allowed range, naming it.
func (o Options) Validate() error {
	switch o.Metric {
	case MetricAuto, MetricEval, MetricTrainEMA:
	default:
		return fmt.Errorf("metric = %q: allowed %s, %s, %s", o.Metric, MetricAuto, MetricEval, MetricTrainEMA)
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !finite(o.EMATokens) || o.EMATokens < 0:
		return fmt.Errorf("ema_tokens = %v: must be >= 0 (0 picks 1/20 of the shortest branch)", o.EMATokens)
	case !finite(o.Eps) || o.Eps <= 0 || o.Eps >= 1:
		return fmt.Errorf("eps = %v: must be a fraction of the reference loss in (0, 1), for example 0.01", o.Eps)
	case !finite(o.EpsAbs) || o.EpsAbs < 0:
		return fmt.Errorf("eps_abs = %v: must be an absolute loss tolerance >= 0 (0: use the relative eps)", o.EpsAbs)
	case o.NumTargets < 1 || o.NumTargets > 50:
		return fmt.Errorf("num_targets = %d: must be in 1..50", o.NumTargets)
	case !finite(o.Tau) || o.Tau <= 0 || o.Tau > 10:
		return fmt.Errorf("tau = %v: must be a token overhead in (0, 10], for example 0.2", o.Tau)
	case !finite(o.ReferenceBatch) || o.ReferenceBatch < 0:
		return fmt.Errorf("reference_batch = %v: must be >= 0 tokens (0 means the smallest batch)", o.ReferenceBatch)
	case o.Bootstrap < 0 || o.Bootstrap > 100000:
		return fmt.Errorf("bootstrap = %d: must be in 0..100000", o.Bootstrap)
	case !(o.Level > 0 && o.Level < 1):
		return fmt.Errorf("level = %v: must be a coverage in (0, 1), for example 0.9", o.Level)
	}
	for i, t := range o.Targets {
		if !finite(t) || t <= 0 {
			return fmt.Errorf("targets[%d] = %v: target losses must be finite and > 0", i, t)
		}
	}
	return nil
}
