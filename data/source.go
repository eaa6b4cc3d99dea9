package data

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Source names accepted in SourceConfig.Source.
const (
	SourceSynthetic = "synthetic"
	SourceFiles     = "files"
	SourceGoroot    = "goroot"
	SourceNPY       = "npy"
	SourceTokens    = "tokens"
)

var sourceNames = []string{SourceSynthetic, SourceFiles, SourceGoroot, SourceNPY, SourceTokens}

// Defaults filled in by SourceConfig.Resolve.
const (
	DefaultTokenizer          = "byte"
	DefaultSyntheticTokens    = 1 << 22
	DefaultSyntheticVocab     = 64
	DefaultSyntheticBranching = 4
)

// SourceConfig says where a corpus comes from and how it is cut into sequences: the [data]
// table of a sweep config. Error messages name the keys as data.<toml key>.
type SourceConfig struct {
	// Source is synthetic, files, goroot, npy or tokens.
	Source string `toml:"source" json:"source" default:"required" doc:"Where the corpus comes from: \"files\" (text files matched by glob), \"goroot\" (the Go source tree every toolchain carries), \"npy\" (a token array), \"tokens\" (token shards written by cbs data tokenize, read in place, for corpora larger than memory) or \"synthetic\" (a Markov chain of known entropy)."`
	// Tokenizer is a name NewTokenizer accepts; default byte, or for the tokens source the
	// tokenizer its shards were written with.
	Tokenizer string `toml:"tokenizer" json:"tokenizer" default:"\"byte\"" doc:"\"byte\" (256 ids), \"gpt2\" (GPT-2's byte-level BPE, built in), or the path of a Hugging Face tokenizer.json (a byte-level BPE such as Qwen3's; a value ending in .json), relative to the config file's folder. tokens: default the tokenizer the shards were written with, which a value must match."`
	// Glob selects the text files of the files source (filepath.Glob syntax).
	Glob string `toml:"glob" json:"glob,omitempty" doc:"files: the text files, a pattern such as \"corpus/*.txt\" relative to the config file's folder; files with the same content count once."`
	// Path is the .npy token file of the npy source, the folder of the tokens source (what
	// `cbs data tokenize --out` wrote), or the Go root of the goroot source (default: $GOROOT,
	// else `go env GOROOT`, else the toolchain cbs was built with).
	Path string `toml:"path" json:"path,omitempty" doc:"npy: the token file; tokens: the folder cbs data tokenize wrote; goroot: the Go root (default: $GOROOT, else go env GOROOT, else the toolchain cbs was built with). Relative to the config file's folder."`
	// SeqLen is the tokens per sequence; required. An AR model with context C that predicts C
	// tokens per sequence wants SeqLen = C + 1.
	SeqLen int `toml:"seq_len" json:"seq_len" default:"required" doc:"Tokens per sequence; an AR model with context C that predicts C tokens wants C + 1."`
	// EvalTokens is the size of the held-out eval split, rounded up to whole sequences; 0 means
	// no eval split. A config sets it as eval.tokens.
	EvalTokens int64 `toml:"-" json:"eval_tokens"`
	// Seed orders the training sequences (a fresh permutation each epoch). It does not change
	// the corpus, the eval split or the synthetic chain, so replicates that differ in Seed
	// share them. A config sets it as experiment.seed.
	Seed uint64 `toml:"-" json:"seed"`
	// CacheDir holds pre-tokenized shards of the files and goroot sources, keyed by their
	// content and tokenizer; empty means tokenize every time.
	CacheDir string `toml:"cache_dir" json:"cache_dir,omitempty" doc:"A folder for tokenized shards of the files and goroot sources, keyed by content and tokenizer, relative to the config file's folder; empty: tokenize every time."`
	// SyntheticTokens is the length of the synthetic corpus; default 4Mi.
	SyntheticTokens int64 `toml:"synthetic_tokens" json:"synthetic_tokens,omitempty" default:"4194304" doc:"synthetic: the length of the corpus in tokens."`
	// SyntheticVocab is the number of states (token ids 0..SyntheticVocab-1) of the synthetic
	// Markov chain, in [2, 256]; default 64.
	SyntheticVocab int `toml:"synthetic_vocab" json:"synthetic_vocab,omitempty" default:"64" doc:"synthetic: states of the Markov chain (token ids 0 to N-1), 2 to 256."`
	// SyntheticBranching is the number of successors of each state, in [2, SyntheticVocab];
	// default 4.
	SyntheticBranching int `toml:"synthetic_branching" json:"synthetic_branching,omitempty" default:"4" doc:"synthetic: successors of each state, 2 to synthetic_vocab."`
	// SyntheticSeed draws the synthetic chain and its sample.
	SyntheticSeed uint64 `toml:"synthetic_seed" json:"synthetic_seed,omitempty" default:"0" doc:"synthetic: draws the chain and its sample."`
}

// Resolve fills in defaults and checks every field, returning errors that name the key, the
// value and what is allowed. For the tokens source it reads the index in Path, whose tokenizer
// is the default of Tokenizer.
func (c SourceConfig) Resolve() (SourceConfig, error) {
	if c.Tokenizer == "" && c.Source != SourceTokens {
		c.Tokenizer = DefaultTokenizer
	}
	if c.Source == SourceSynthetic {
		if c.SyntheticTokens == 0 {
			c.SyntheticTokens = DefaultSyntheticTokens
		}
		if c.SyntheticVocab == 0 {
			c.SyntheticVocab = DefaultSyntheticVocab
		}
		if c.SyntheticBranching == 0 {
			c.SyntheticBranching = DefaultSyntheticBranching
		}
	}
	switch c.Source {
	case SourceSynthetic:
		if c.SyntheticTokens < 0 {
			return c, fmt.Errorf("data.synthetic_tokens = %d: must be positive", c.SyntheticTokens)
		}
		if c.SyntheticVocab < 2 || c.SyntheticVocab > 256 {
			return c, fmt.Errorf("data.synthetic_vocab = %d: must be in [2, 256]", c.SyntheticVocab)
		}
		if c.SyntheticBranching < 2 || c.SyntheticBranching > c.SyntheticVocab {
			return c, fmt.Errorf("data.synthetic_branching = %d: must be in [2, data.synthetic_vocab = %d]", c.SyntheticBranching, c.SyntheticVocab)
		}
	case SourceFiles:
		if c.Glob == "" {
			return c, fmt.Errorf("data.glob is required for data.source = %q", c.Source)
		}
	case SourceNPY:
		if c.Path == "" {
			return c, fmt.Errorf("data.path is required for data.source = %q (a .npy token file)", c.Source)
		}
	case SourceTokens:
		if c.Path == "" {
			return c, fmt.Errorf("data.path is required for data.source = %q (the folder cbs data tokenize wrote)", c.Source)
		}
	case SourceGoroot:
	case "":
		return c, fmt.Errorf("data.source is required (allowed: %s)", strings.Join(sourceNames, ", "))
	default:
		return c, fmt.Errorf("data.source = %q not supported (allowed: %s)", c.Source, strings.Join(sourceNames, ", "))
	}
	if c.Source != SourceSynthetic && (c.SyntheticTokens != 0 || c.SyntheticVocab != 0 || c.SyntheticBranching != 0 || c.SyntheticSeed != 0) {
		return c, fmt.Errorf("data.synthetic_* keys apply only to data.source = %q, not %q", SourceSynthetic, c.Source)
	}
	if c.Glob != "" && c.Source != SourceFiles {
		return c, fmt.Errorf("data.glob applies only to data.source = %q, not %q", SourceFiles, c.Source)
	}
	if c.Path != "" && c.Source != SourceNPY && c.Source != SourceTokens && c.Source != SourceGoroot {
		return c, fmt.Errorf("data.path applies only to data.source = %q, %q or %q, not %q", SourceNPY, SourceTokens, SourceGoroot, c.Source)
	}
	// An npy file of [N, L] sequences supplies its own length.
	if c.SeqLen <= 0 && !(c.SeqLen == 0 && c.Source == SourceNPY) {
		return c, fmt.Errorf("data.seq_len = %d: must be positive", c.SeqLen)
	}
	if c.EvalTokens < 0 {
		return c, fmt.Errorf("eval.tokens = %d: must be zero or positive", c.EvalTokens)
	}
	if c.Source == SourceTokens {
		var err error
		if c.Tokenizer, err = tokenizerOfSet(c); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Open builds the corpus cfg describes. It is the only constructor that reads files; a corpus
// never changes afterwards and is safe for concurrent use.
func Open(cfg SourceConfig) (*Corpus, error) {
	cfg, err := cfg.Resolve()
	if err != nil {
		return nil, err
	}
	tok, err := NewTokenizer(cfg.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("data.tokenizer: %w", err)
	}
	var src *loaded
	switch cfg.Source {
	case SourceSynthetic:
		src, err = loadSynthetic(cfg, tok)
	case SourceFiles:
		src, err = loadFiles(cfg, tok)
	case SourceGoroot:
		src, err = loadGoroot(cfg, tok)
	case SourceNPY:
		src, err = loadNPY(&cfg, tok)
	case SourceTokens:
		src, err = loadTokens(cfg, tok)
	}
	if err != nil {
		return nil, err
	}
	return newCorpus(cfg, tok, src)
}

// FromTokens builds a corpus over an in-memory token stream, for tests and for callers that
// produce tokens themselves. cfg.Source is recorded as given (it may be empty); cfg.SeqLen,
// cfg.EvalTokens, cfg.Seed and cfg.Tokenizer apply as in Open.
func FromTokens(cfg SourceConfig, tokens []int32) (*Corpus, error) {
	if cfg.Tokenizer == "" {
		cfg.Tokenizer = DefaultTokenizer
	}
	if cfg.SeqLen <= 0 {
		return nil, fmt.Errorf("data.seq_len = %d: must be positive", cfg.SeqLen)
	}
	if cfg.EvalTokens < 0 {
		return nil, fmt.Errorf("eval.tokens = %d: must be zero or positive", cfg.EvalTokens)
	}
	tok, err := NewTokenizer(cfg.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("data.tokenizer: %w", err)
	}
	a, err := tokenArrayOf(tokens, tok.VocabSize())
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return newCorpus(cfg, tok, &loaded{tokens: a})
}

// loaded is what a source hands to newCorpus.
type loaded struct {
	tokens    *tokenArray
	digest    *[32]byte // of tokens, when the source already computed it
	documents int
	// duplicates is the documents a text source dropped for repeating an earlier one's bytes.
	duplicates int
	bytes      int64 // of source text, for text sources
	// unigram counts each token id in the whole stream, when the source knows it (a token set).
	unigram   []int64
	root      string
	cachePath string
	markov    *Markov
}

// fingerprint identifies a corpus by its tokenizer and exact token stream: two corpora with the
// same fingerprint feed a model identical ids.
func fingerprint(tokenizer string, digest [32]byte) string {
	h := sha256.New()
	h.Write([]byte("cbs-corpus-v1\x00" + tokenizer + "\x00"))
	h.Write(digest[:])
	return hex.EncodeToString(h.Sum(nil))
}
