package analysis

import (
	"fmt"
	"math"
)

// Result is everything cbs fit writes to fit/cbs.json: each estimator with its inputs, interval,
// degrees of freedom and censoring flag, and the options and code version that produced it.
type Result struct {
	CodeVersion string `json:"code_version"`
	Source      string `json:"source"`
	// Partial is set when some branch of the run had not finished training: the estimates come
	// from curves cut short, or from fewer branches than the sweep has. Unfinished lists those
	// branches, and Branches counts every branch of the run directory.
	Partial    bool         `json:"partial"`
	Unfinished []Unfinished `json:"unfinished,omitempty"`
	Branches   int          `json:"branches,omitempty"`
	Metric     string       `json:"metric,omitempty"`
	Options    Options      `json:"options"`
	// CompareTokens is the equal-token mark at which final losses are compared: the largest mark
	// every batch size has.
	CompareTokens Num           `json:"compare_tokens"`
	Ladder        []LadderRow   `json:"ladder"`
	Bootstrap     BootstrapInfo `json:"bootstrap"`
	// Primary is the token-overhead CBS, the estimate to quote; the others are secondary.
	Primary     *PrimaryFit      `json:"primary,omitempty"`
	Slope       *SlopeFit        `json:"loss_slope,omitempty"`
	Sensitivity []SensitivityRow `json:"sensitivity,omitempty"`
	Tolerance   *ToleranceFit    `json:"tolerance,omitempty"`
	Hyperbola   *HyperbolaFit    `json:"hyperbola,omitempty"`
	Knee        *KneeFit         `json:"knee,omitempty"`
	NoiseScale  *NoiseScaleFit   `json:"noise_scale,omitempty"`
	Notes       []string         `json:"notes,omitempty"`
}

// PartialNote says that a fit is partial and how much is missing, in the words every output
// marks it with ("partial: 2 of 6 branches unfinished"); "" when the fit is not partial.
func (r *Result) PartialNote() string {
	if !r.Partial {
		return ""
	}
	if r.Branches > 0 {
		return fmt.Sprintf("partial: %d of %d branches unfinished", len(r.Unfinished), r.Branches)
	}
	return fmt.Sprintf("partial: %d branches unfinished", len(r.Unfinished))
}

// LadderRow is one batch size's loss at the comparison mark.
type LadderRow struct {
	Batch      float64  `json:"batch_tokens"`
	Replicates int      `json:"replicates"`
	IDs        []string `json:"ids,omitempty"`
	Loss       Num      `json:"loss"`    // mean over replicates
	LossSD     Num      `json:"loss_sd"` // sample SD over replicates; null with one replicate
	LossMin    Num      `json:"loss_min"`
	LossMax    Num      `json:"loss_max"`
}

// BootstrapInfo says how the intervals were made.
type BootstrapInfo struct {
	// Method is "data" (resampling eval shards, shared by all branches, and seed replicates within
	// each batch size), "residual" (resampling a fit's residuals, when the data hold neither
	// shards nor replicates) or "none".
	Method    string  `json:"method"`
	Resamples int     `json:"resamples"`
	Level     float64 `json:"level"`
	Seed      uint64  `json:"seed"`
	Shards    int     `json:"shards"`
	// PairedReplicates is set when every batch size has the same seed replicates (the same
	// tokens, order and masks) and a resample draws one set of them for the whole ladder.
	PairedReplicates bool `json:"paired_replicates"`
}

// Interval is a bootstrap percentile interval; Failed counts resamples whose fit failed and were
// left out.
type Interval struct {
	Lo     Num `json:"lo"`
	Hi     Num `json:"hi"`
	Used   int `json:"used"`
	Failed int `json:"failed"`
}

// ToleranceFit reports the tolerance rule (docs/science.md, section 5).
type ToleranceFit struct {
	Eps float64 `json:"eps"` // relative, or the absolute eps_abs when the options set it
	// EpsLoss is the tolerance in loss units that was applied.
	EpsLoss  Num       `json:"eps_loss"`
	Losses   []Num     `json:"losses"` // per ladder row
	Lower    Num       `json:"lower_tokens"`
	Upper    Num       `json:"upper_tokens"`
	GeoMean  Num       `json:"geo_mean_tokens"`
	Censored Censoring `json:"censored"`
	FailedAt Num       `json:"first_failing_batch"`
	// Resampled is how often each outcome came out of the bootstrap.
	Resampled []ToleranceOutcome `json:"resampled,omitempty"`
	Statement string             `json:"statement"`
	Error     string             `json:"error,omitempty"`
}

// ToleranceOutcome is one interval the tolerance rule gave on bootstrap resamples.
type ToleranceOutcome struct {
	Lower    Num     `json:"lower_tokens"`
	Upper    Num     `json:"upper_tokens"`
	Fraction float64 `json:"fraction"`
}

// HyperbolaFit reports the steps-to-target fits (docs/science.md, section 5), one per target loss.
type HyperbolaFit struct {
	Tau            float64     `json:"tau"`
	ReferenceBatch float64     `json:"reference_batch_tokens"`
	Targets        []TargetFit `json:"targets"`
	// Trend fits log B_crit = c - log(L)/AlphaB over the uncensored targets (Kaplan et al. 2020
	// report alpha_B near 0.21); absent with fewer than three.
	Trend *BcritTrend `json:"trend,omitempty"`
}

// Crossing is one batch size's steps and tokens to reach a target.
type Crossing struct {
	Batch  float64 `json:"batch_tokens"`
	Steps  float64 `json:"steps"`
	Tokens float64 `json:"tokens"`
}

// Excluded is a batch size left out of one fit, with the reason.
type Excluded struct {
	Batch  float64 `json:"batch_tokens"`
	Reason string  `json:"reason"`
}

// TargetFit is S(B) = S_min + E_min/B fitted for one target loss.
type TargetFit struct {
	Target   Num        `json:"target_loss"`
	Points   []Crossing `json:"points"`
	Excluded []Excluded `json:"excluded,omitempty"`
	// CensoredPoints are the branches that never reached the target: each needed more steps than
	// it ran (Steps is its budget). A fit that would have them reach it sooner takes them in at
	// their budget. In the bootstrap the target is re-picked from every resample's curves (when
	// the options give none), so the interval is not conditioned on the data's targets.
	CensoredPoints []Crossing `json:"censored_points,omitempty"`
	SMin           Num        `json:"s_min"`
	EMin           Num        `json:"e_min_tokens"`
	DOF            int        `json:"dof"`
	RMSELog        Num        `json:"rmse_log_steps"`
	Bcrit          Num        `json:"bcrit_tokens"` // null when censored
	BcritFit       Num        `json:"bcrit_fitted_tokens"`
	BcritCI        Interval   `json:"bcrit_interval"`
	Overhead       Num        `json:"overhead_batch_tokens"` // null when censored
	OverFit        Num        `json:"overhead_fitted_tokens"`
	OverCI         Interval   `json:"overhead_interval"`
	Censored       Censoring  `json:"censored"`
	Statement      string     `json:"statement"`
	Error          string     `json:"error,omitempty"`
}

// Bound is the batch a censored fit's statement names: twice the largest batch that reached the
// target when B_crit lies above the ladder, half the smallest when below; NaN when not censored.
// S(B)/S_min = 1 + B_crit/B bends measurably down to B = B_crit/2; past that the fitted B_crit is
// extrapolation, and the same factor holds at the small end.
func (t TargetFit) Bound() float64 {
	switch t.Censored {
	case CensoredAbove:
		return 2 * t.Points[len(t.Points)-1].Batch
	case CensoredBelow:
		return t.Points[0].Batch / 2
	}
	return math.NaN()
}

// BcritTrend is a power law of B_crit in the target loss.
type BcritTrend struct {
	AlphaB  float64 `json:"alpha_b"`
	LogC    float64 `json:"log_c"`
	Targets int     `json:"targets"`
	DOF     int     `json:"dof"`
}

// KneeFit reports the saturating power law L(B) = Linf + A B^-alpha (docs/science.md, section 5).
type KneeFit struct {
	Eps       float64    `json:"eps"`
	EpsLoss   Num        `json:"eps_loss"`
	Linf      Num        `json:"l_inf"`
	A         Num        `json:"a"`
	Alpha     Num        `json:"alpha"`
	DOF       int        `json:"dof"`
	RMSE      Num        `json:"rmse"`
	Knee      Num        `json:"knee_tokens"` // null when censored
	KneeFit   Num        `json:"knee_fitted_tokens"`
	KneeCI    Interval   `json:"knee_interval"`
	AlphaCI   Interval   `json:"alpha_interval"`
	Censored  Censoring  `json:"censored"`
	Band      []BandRow  `json:"band,omitempty"` // fitted curve and its pointwise interval
	Statement string     `json:"statement"`
	Error     string     `json:"error,omitempty"`
	Points    []Crossing `json:"-"`
}

// BandRow is the fitted curve and its pointwise bootstrap interval at one batch size.
type BandRow struct {
	Batch float64 `json:"batch_tokens"`
	Loss  Num     `json:"loss"`
	Lo    Num     `json:"lo"`
	Hi    Num     `json:"hi"`
}

// NoiseScaleFit summarises the simple gradient noise scale (docs/science.md, section 5). It is a cheap
// predictor known to underestimate the CBS of Adam-trained language models, never the CBS.
type NoiseScaleFit struct {
	Branches []NoiseRow `json:"branches"`
	// Missing are the analysed branches without a noise scale, with the reason.
	Missing []NoiseGap `json:"missing,omitempty"`
	Note    string     `json:"note"`
}

// NoiseRow is one branch's B_simple at the end of its training: the EMA's last value, and the
// ratio of means over the last window with its block-bootstrap interval. When that interval
// spans more than 10x, End is null and TooNoisy says why.
type NoiseRow struct {
	ID          string  `json:"id"`
	Batch       float64 `json:"batch_tokens"`
	Tokens      float64 `json:"tokens"`
	Final       Num     `json:"b_simple_final_tokens"`
	Source      string  `json:"source"`
	End         Num     `json:"b_simple_window_tokens"`
	EndLo       Num     `json:"b_simple_window_lo"`
	EndHi       Num     `json:"b_simple_window_hi"`
	WindowSteps int     `json:"window_steps"`
	NonPositive Num     `json:"gradsq_nonpositive_share"`
	TooNoisy    bool    `json:"too_noisy"`
}

// PrimaryFit is the token-overhead CBS (docs/science.md, section 3) with its bootstrap interval.
type PrimaryFit struct {
	Estimator      string  `json:"estimator"` // "token_overhead"
	Tau            float64 `json:"tau"`
	ReferenceBatch float64 `json:"reference_batch_tokens"`
	// CBS is null when censored; Bound then says where: CBS >= Bound (above) or < Bound (below).
	CBS Num `json:"cbs_tokens"`
	// Interval is the bootstrap percentile interval of the CBS; an end is null when more than
	// (1 - Level)/2 of the resamples were censored on that side (unbounded).
	Interval [2]Num    `json:"interval"`
	Level    float64   `json:"level"`
	Censored Censoring `json:"censored"`
	Bound    Num       `json:"bound_tokens"`
	// Replicates is the fewest seed replicates of any rung; DOF the degrees of freedom of the
	// seed-to-seed variance behind the interval, which sets its expanded level.
	Replicates int `json:"replicates"`
	DOF        int `json:"replicate_dof"`
	// LossLevel is the loss at which the overheads are read.
	LossLevel Num           `json:"loss_level"`
	Rungs     []OverheadRow `json:"rungs"`
	// Resampled counts the resamples behind the interval and how each came out.
	Resampled      int     `json:"resamples_used"`
	FailedResample int     `json:"resamples_failed"`
	CensoredAbove  float64 `json:"resamples_censored_above"`
	CensoredBelow  float64 `json:"resamples_censored_below"`
	Statement      string  `json:"statement"`
	Warning        string  `json:"warning,omitempty"`
	Error          string  `json:"error,omitempty"`
	// Draws are the resamples' CBS values (+Inf censored above, -Inf below), in resample order,
	// for quantities built on two sweeps, such as the ratio of their CBS.
	Draws []float64 `json:"-"`
}

// OverheadRow is one rung's tokens to the loss level and its overhead against the reference,
// with the overhead's bootstrap interval.
type OverheadRow struct {
	Batch      float64 `json:"batch_tokens"`
	Replicates int     `json:"replicates"`
	Tokens     Num     `json:"tokens_to_level"`
	Overhead   Num     `json:"overhead"`
	Lo         Num     `json:"overhead_lo"`
	Hi         Num     `json:"overhead_hi"`
}

// SlopeFit is the least-squares slope of the loss at the comparison mark against log2 of the
// batch: how much loss one doubling of the batch costs at equal tokens.
type SlopeFit struct {
	PerDoubling Num      `json:"loss_per_doubling"`
	Relative    Num      `json:"relative_per_doubling"` // PerDoubling over the reference batch's loss
	CI          Interval `json:"interval"`
	Statement   string   `json:"statement"`
}

// SensitivityRow is one estimator's answer at one value of its tolerance.
type SensitivityRow struct {
	Estimator string    `json:"estimator"` // "tolerance" (eps, relative) or "token_overhead" (tau)
	Param     string    `json:"param"`
	Value     float64   `json:"value"`
	Lower     Num       `json:"lower_tokens"` // tolerance: the bracket; token_overhead: the interval
	Upper     Num       `json:"upper_tokens"`
	CBS       Num       `json:"cbs_tokens"` // tolerance: geometric mean of the bracket
	Censored  Censoring `json:"censored"`
	Statement string    `json:"statement"`
}
