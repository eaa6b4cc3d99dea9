package analysis

// Result is everything cbs fit writes to fit/cbs.json: each estimator with its inputs, interval,
// degrees of freedom and censoring flag, and the options and code version that produced it.
type Result struct {
	CodeVersion string  `json:"code_version"`
	Source      string  `json:"source"`
	Metric      string  `json:"metric,omitempty"`
	Options     Options `json:"options"`
	// CompareTokens is the equal-token mark at which final losses are compared: the largest mark
	// every batch size has.
	CompareTokens Num            `json:"compare_tokens"`
	Ladder        []LadderRow    `json:"ladder"`
	Bootstrap     BootstrapInfo  `json:"bootstrap"`
	Tolerance     *ToleranceFit  `json:"tolerance,omitempty"`
	Hyperbola     *HyperbolaFit  `json:"hyperbola,omitempty"`
	Knee          *KneeFit       `json:"knee,omitempty"`
	NoiseScale    *NoiseScaleFit `json:"noise_scale,omitempty"`
	Notes         []string       `json:"notes,omitempty"`
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
}

// Interval is a bootstrap percentile interval; Failed counts resamples whose fit failed and were
// left out.
type Interval struct {
	Lo     Num `json:"lo"`
	Hi     Num `json:"hi"`
	Used   int `json:"used"`
	Failed int `json:"failed"`
}

// ToleranceFit reports the tolerance rule (SCIENCE.md 4.1).
type ToleranceFit struct {
	Eps      float64   `json:"eps"`
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

// HyperbolaFit reports the steps-to-target fits (SCIENCE.md 4.2), one per target loss.
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
	Target    Num        `json:"target_loss"`
	Points    []Crossing `json:"points"`
	Excluded  []Excluded `json:"excluded,omitempty"`
	SMin      Num        `json:"s_min"`
	EMin      Num        `json:"e_min_tokens"`
	DOF       int        `json:"dof"`
	RMSELog   Num        `json:"rmse_log_steps"`
	Bcrit     Num        `json:"bcrit_tokens"` // null when censored
	BcritFit  Num        `json:"bcrit_fitted_tokens"`
	BcritCI   Interval   `json:"bcrit_interval"`
	Overhead  Num        `json:"overhead_batch_tokens"` // null when censored
	OverFit   Num        `json:"overhead_fitted_tokens"`
	OverCI    Interval   `json:"overhead_interval"`
	Censored  Censoring  `json:"censored"`
	Statement string     `json:"statement"`
	Error     string     `json:"error,omitempty"`
}

// BcritTrend is a power law of B_crit in the target loss.
type BcritTrend struct {
	AlphaB  float64 `json:"alpha_b"`
	LogC    float64 `json:"log_c"`
	Targets int     `json:"targets"`
	DOF     int     `json:"dof"`
}

// KneeFit reports the saturating power law L(B) = Linf + A B^-alpha (SCIENCE.md 4.3).
type KneeFit struct {
	Eps       float64    `json:"eps"`
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

// NoiseScaleFit summarises the simple gradient noise scale (SCIENCE.md 4.4). It is a cheap
// predictor known to underestimate the CBS of Adam-trained language models, never the CBS.
type NoiseScaleFit struct {
	Branches []NoiseRow `json:"branches"`
	Note     string     `json:"note"`
}

// NoiseRow is one branch's B_simple at the end of its training.
type NoiseRow struct {
	ID     string  `json:"id"`
	Batch  float64 `json:"batch_tokens"`
	Tokens float64 `json:"tokens"`
	Final  Num     `json:"b_simple_final_tokens"`
	Source string  `json:"source"`
}
