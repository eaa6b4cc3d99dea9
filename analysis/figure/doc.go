// Package figure draws the figures of a batch-size study with gonum/plot.
//
// Six kinds, each from the loaded data or from analysis.Result: the token overhead against batch
// size with the limit 1 + tau and the CBS (the primary estimate), loss against tokens (one line
// per branch), final loss against batch size (with the fitted curve, its bootstrap band,
// replicate error bars and the CBS), steps against tokens to reach each target loss (with the
// fitted hyperbolas), B_crit against target loss, and the gradient noise scale against tokens.
//
// Batch-size axes are log2 with ticks such as 64K (K = 1024, M = 1024^2, as batch sizes are
// usually powers of two), or 64Ki on the token-overhead figures, whose labels quote statements
// that write K for 1000; other log axes label every decade (10K, 100K, 1M). Figures are a column
// (3.25 in) or the full page (6.75 in) wide, carry no timestamp, and are byte-for-byte the same
// for the same inputs, so they can be committed and compared.
package figure
