// Package analysis reads the results of a batch-size sweep and estimates the critical batch size.
//
// It loads a run directory in the results format (docs/results-format.md) or a plain CSV table,
// aligns the branches at equal tokens, groups seed replicates by batch size, and applies the four
// estimators of docs/science.md:
//
//   - the tolerance rule on losses at equal tokens (an interval and its geometric mean),
//   - the steps-to-target hyperbola S(B) = a + b/B of McCandlish et al., fitted on log S, with
//     B_crit = b/a and the overhead batch (1+tau) B0 + tau b/a, over several target losses,
//   - the knee of a saturating power law L(B) = L_inf + A B^-alpha,
//   - a summary of the gradient noise scale B_simple, which is a predictor and never the CBS.
//
// Every estimate carries its inputs, its degrees of freedom, a seeded bootstrap interval and a
// censoring flag: when the ladder of batch sizes does not bracket the answer, the result is a
// bound ("CBS >= 8M tokens"), not a number. A fit that does not converge is an error with a
// reason.
//
// The package never imports the trainer: a run written by any tool that follows the results
// format can be analysed.
package analysis
