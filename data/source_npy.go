package data

import "fmt"

// loadNPY reads an exact token array: a 1-D stream, or [N, L] sequences, which become the
// stream's windows in order (so L must equal data.seq_len, or data.seq_len is taken from L).
func loadNPY(cfg *SourceConfig, tok Tokenizer) (*loaded, error) {
	ids, shape, err := ReadNPYTokensFile(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("data.path: %w", err)
	}
	switch len(shape) {
	case 1:
		if cfg.SeqLen == 0 {
			return nil, fmt.Errorf("data.seq_len is required for the 1-D token stream in %s", cfg.Path)
		}
	case 2:
		if cfg.SeqLen == 0 {
			cfg.SeqLen = shape[1]
		}
		if shape[1] != cfg.SeqLen || cfg.SeqLen == 0 {
			return nil, fmt.Errorf("data.seq_len = %d but %s holds sequences of shape %v: want seq_len = %d", cfg.SeqLen, cfg.Path, shape, shape[1])
		}
	default:
		return nil, fmt.Errorf("data.path: %s has shape %v: want a 1-D token stream or [N, L] sequences", cfg.Path, shape)
	}
	a, err := tokenArrayOf(ids, tok.VocabSize())
	if err != nil {
		return nil, fmt.Errorf("data.path: %s: %w of tokenizer %s", cfg.Path, err, tok.Name())
	}
	return &loaded{tokens: a, root: cfg.Path}, nil
}
