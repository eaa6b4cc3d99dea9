package bpe

import "cbs/data"

func init() {
	data.RegisterTokenizer("gpt2", func() (data.Tokenizer, error) {
		t, err := GPT2()
		if err != nil {
			return nil, err
		}
		return t, nil
	})
}
