package data

import (
	"errors"
	"fmt"
	"strconv"
)

// TrainTokens is the size of the training split in tokens: one epoch. A run that reads more
// sees every training sequence again.
func (c *Corpus) TrainTokens() int64 { return c.nTrain * int64(c.seqLen) }

// TrainTokens is what Open(cfg).TrainTokens() would be. A plan asks before anything trains, so
// it avoids the work Open does where it can: the synthetic source's length is in cfg, and the
// byte tokenizer makes one token a byte plus one EOS a document, so text sources are read
// (duplicates are only known from the bytes) but not tokenized. Other sources are opened.
func TrainTokens(cfg SourceConfig) (int64, error) {
	cfg, err := cfg.Resolve()
	if err != nil {
		return 0, err
	}
	var n int64
	switch {
	case cfg.Source == SourceSynthetic:
		n = cfg.SyntheticTokens
	case (cfg.Source == SourceFiles || cfg.Source == SourceGoroot) && cfg.Tokenizer == (ByteTokenizer{}).Name():
		var docs []document
		if cfg.Source == SourceFiles {
			docs, err = globFiles(cfg.Glob)
		} else {
			var root string
			if root, err = gorootOf(cfg); err == nil {
				docs, err = goSourceFiles(root)
			}
		}
		if err != nil {
			return 0, err
		}
		in, err := readDocuments(docs)
		if err != nil {
			return 0, err
		}
		n = in.bytes + int64(len(in.docs))
	default:
		c, err := Open(cfg)
		if err != nil {
			return 0, err
		}
		return c.TrainTokens(), nil
	}
	L := int64(cfg.SeqLen)
	train := (n/L - (cfg.EvalTokens+L-1)/L) * L
	if train <= 0 {
		return 0, errors.New("the eval split leaves no training sequences")
	}
	return train, nil
}

// RepeatWarning is one line telling a run that reads budget training tokens from a training
// split of train tokens that it will see the same data more than once, and how many times;
// empty when the budget fits in one epoch. A second pass changes how the loss falls with
// tokens, and the fits would read that as an effect of the batch size.
func RepeatWarning(train, budget int64) string {
	if train <= 0 || budget <= train {
		return ""
	}
	epochs := float64(budget) / float64(train)
	var times string
	switch {
	case epochs >= 100:
		times = strconv.FormatFloat(epochs, 'f', 0, 64)
	case epochs < 1.1:
		// One decimal would print 1.0 for a budget that does run over.
		times = strconv.FormatFloat(epochs, 'f', 2, 64)
	default:
		times = strconv.FormatFloat(epochs, 'f', 1, 64)
	}
	return fmt.Sprintf("data: the training split holds %s tokens; a %s budget reads it %s times (epochs). Add documents or lower the budget.",
		approxTokens(train), exactTokens(budget), times)
}

// approxTokens writes n to three significant digits, as 73.2K.
func approxTokens(n int64) string {
	v := float64(n)
	for _, s := range []struct {
		s string
		v float64
	}{{"T", 1e12}, {"B", 1e9}, {"M", 1e6}, {"K", 1e3}} {
		if v >= s.v {
			return strconv.FormatFloat(v/s.v, 'g', 3, 64) + s.s
		}
	}
	return strconv.FormatInt(n, 10)
}

// exactTokens writes n as a config does, with the largest suffix that divides it: 256Ki, 64K.
func exactTokens(n int64) string {
	if n == 0 {
		return "0"
	}
	for _, s := range []struct {
		s string
		v int64
	}{{"Ti", 1 << 40}, {"T", 1e12}, {"Gi", 1 << 30}, {"B", 1e9}, {"Mi", 1 << 20}, {"M", 1e6}, {"Ki", 1 << 10}, {"K", 1e3}} {
		if n%s.v == 0 {
			return strconv.FormatInt(n/s.v, 10) + s.s
		}
	}
	return strconv.FormatInt(n, 10)
}
