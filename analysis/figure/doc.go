// Package figure draws the figures of a batch-size study with gonum/plot.
//
// Six kinds, each from the loaded data or from analysis.Result: the token overhead against batch
// size with the limit 1 + tau and the CBS (the primary estimate), loss against tokens (one line
// per branch), final loss against batch size (with the fitted curve, its bootstrap band,
// replicate error bars and the CBS), steps against tokens to reach each target loss (with the
// fitted hyperbolas), B_crit against target loss, and the gradient noise scale against tokens.
//
// Every token count on a figure, on an axis, in a legend or in a note, is written as the configs
// and the statements write it, with a binary suffix (64Ki, 1.5Mi, 2.26Ki), so that no K means
// 1024 in one place and 1000 in another. Token axes are log2, ticked at powers of two, and at 1.5
// (then 1.25 and 1.75) times them when the range holds too few; step axes label decades, or 1, 2
// and 5 times them, as plain numbers. Notes above the plot say what a reader must know first: a
// fit of an unfinished sweep, a batch size a figure cannot show. Figures are a column (3.25 in)
// or the full page (6.75 in) wide, carry no timestamp, and are byte-for-byte the same for the
// same inputs, so they can be committed and compared.
package figure
