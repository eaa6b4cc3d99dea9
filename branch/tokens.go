// Package branch runs one training run: token-space LR schedules, the train/eval/checkpoint
// loop, and the records a run writes, in the format package runfmt defines (metrics.jsonl and
// its checkpoint).
package branch

import "cbs/runfmt"

// Tokens is the token count of configs and specs: runfmt.Tokens, under the name the config
// tables use.
type Tokens = runfmt.Tokens

// ParseTokens reads a token count as configs and flags give it; it is runfmt.ParseTokens, the
// one parser, under the name Tokens has here.
func ParseTokens(s string) (Tokens, error) { return runfmt.ParseTokens(s) }
