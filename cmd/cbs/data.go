package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"cbs/branch"
	"cbs/data"
)

func init() { verbs = append(verbs, newDataCmd) }

func newDataCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "data", Short: "Tokenize corpora larger than memory into token shards, and check them"}
	cmd.AddCommand(newDataTokenizeCmd(), newDataVerifyCmd())
	return cmd
}

type tokenizeOptions struct {
	tokenizer   string
	out         string
	shardTokens string
}

func newDataTokenizeCmd() *cobra.Command {
	o := &tokenizeOptions{}
	cmd := &cobra.Command{
		Use:   "tokenize --out DIR [--tokenizer T] [--shard-tokens N] FILES...",
		Short: `Tokenize text files into token shards that data.source = "tokens" reads in place`,
		Long: `Tokenize text files into a token set in DIR: shard files of --shard-tokens tokens each
(uint16 when the vocabulary has at most 65536 ids, else uint32) and an index, described in
docs/data.md. A config with data.source = "tokens" and data.path = DIR trains on them with
memory that does not grow with the corpus.

FILES are files, folders (walked recursively, leaving out names that start with a dot) and
glob patterns. The documents follow the rules of data.source = "files": sorted by path, a file
whose bytes repeat an earlier one's left out, an EOS token after each. Only a batch of
documents is in memory at a time, so the corpus may be larger than memory.

The set is written beside DIR and renamed into place when complete: an interrupted run leaves
DIR as it was. DIR must be missing, empty, or a token set, which is replaced.

Progress goes to stderr, the summary to stdout.`,
		Example: `  cbs data tokenize --tokenizer gpt2 --out corpus.tok corpus/
  cbs data tokenize --tokenizer qwen3/tokenizer.json --out web.tok --shard-tokens 256Mi 'web/*.txt'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTokenize(cmd.Context(), o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.tokenizer, "tokenizer", data.DefaultTokenizer, `"byte", "gpt2", or the path of a tokenizer.json`)
	f.StringVar(&o.out, "out", "", "the folder to write the token set to (required)")
	f.StringVar(&o.shardTokens, "shard-tokens", "64Mi", "tokens per shard file (K, M, B are powers of 10, Ki, Mi, Gi of 2)")
	return cmd
}

func runTokenize(ctx context.Context, o *tokenizeOptions, inputs []string, stdout, stderr io.Writer) error {
	if o.out == "" {
		return usageErrorf("--out is required: the folder to write the token set to")
	}
	n, err := branch.ParseTokens(o.shardTokens)
	if err != nil || n <= 0 {
		return usageErrorf("--shard-tokens = %q: want a positive token count such as 64Mi", o.shardTokens)
	}
	if _, err := data.NewTokenizer(o.tokenizer); err != nil {
		return usageErrorf("--tokenizer: %v", err)
	}
	ctx, stop := interruptible(ctx)
	defer stop()
	bar := newProgressBar(stderr, "tokenize")
	idx, err := data.Tokenize(ctx, inputs, o.out, data.TokenizeOptions{
		Tokenizer: o.tokenizer, ShardTokens: int64(n), Progress: bar.update,
	})
	bar.finish()
	if errors.Is(err, context.Canceled) {
		return &codedError{code: exitInterrupted, err: fmt.Errorf("interrupted: %s is as it was", o.out)}
	}
	if err != nil {
		return err
	}
	printTokenSet(stdout, o.out, idx, int64(n))
	return nil
}

func printTokenSet(w io.Writer, dir string, idx *data.TokenIndex, shardTokens int64) {
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "%-19s %s\n", k, fmt.Sprintf(format, args...)) }
	row("out", "%s", dir)
	if idx.Documents > 0 || idx.DuplicatesDropped > 0 {
		row("documents", "%d", idx.Documents)
		row("duplicates dropped", "%d", idx.DuplicatesDropped)
		row("source bytes", "%d", idx.SourceBytes)
	}
	row("tokenizer", "%s (%d ids)", idx.Tokenizer, idx.VocabSize)
	row("tokens", "%d", idx.Tokens)
	if shardTokens > 0 {
		row("shards", "%d of up to %d tokens, %s", len(idx.Shards), shardTokens, idx.DType)
	} else {
		row("shards", "%d, %s", len(idx.Shards), idx.DType)
	}
	row("sha256", "%s", idx.SHA256)
}

func newDataVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify DIR",
		Short: "Read every token of a token set and check its hashes, counts and token range",
		Long: `Read every shard of the token set in DIR and check it against the index: each shard's sha256,
the sha256 of the whole stream, that every token is in the vocabulary, and the unigram counts.
A run that opens a token set checks only the headers and sizes of its shards, so that a corpus
of many GB opens at once; this is the full check. Exit status 1 names the first problem.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bar := newProgressBar(cmd.ErrOrStderr(), "verify")
			idx, err := data.VerifyTokens(args[0], bar.update)
			bar.finish()
			if err != nil {
				return err
			}
			printTokenSet(cmd.OutOrStdout(), args[0], idx, 0)
			fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return nil
		},
	}
}

// progressBar shows bytes done of a total and the rate on stderr: redrawn in place a few times a
// second on a terminal, else a line every progressEvery.
type progressBar struct {
	w           io.Writer
	label       string
	terminal    bool
	start, last time.Time
	done, total int64
	drawn       bool
}

const progressEvery = 10 * time.Second

func newProgressBar(w io.Writer, label string) *progressBar {
	now := time.Now()
	return &progressBar{w: w, label: label, terminal: isTerminal(w), start: now, last: now}
}

func (p *progressBar) update(done, total int64) {
	p.done, p.total = done, total
	now := time.Now()
	every := progressEvery
	if p.terminal {
		every = 200 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	p.draw(now)
}

func (p *progressBar) draw(now time.Time) {
	secs := now.Sub(p.start).Seconds()
	rate := float64(p.done) / 1e6 / max(secs, 1e-9)
	frac := 1.0
	if p.total > 0 {
		frac = min(1, float64(p.done)/float64(p.total))
	}
	eta := ""
	if rate > 0 && frac < 1 {
		eta = fmt.Sprintf(", %s left", (time.Duration(float64(p.total-p.done)/1e6/rate) * time.Second).Round(time.Second))
	}
	const width = 30
	fill := int(frac * width)
	line := fmt.Sprintf("%s [%s%s] %.1f/%.1f MB, %.1f MB/s%s", p.label, strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		float64(p.done)/1e6, float64(p.total)/1e6, rate, eta)
	if p.terminal {
		fmt.Fprintf(p.w, "\r%-100s", line)
		p.drawn = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// finish ends the bar with a line of what was done.
func (p *progressBar) finish() {
	if p.drawn {
		fmt.Fprint(p.w, "\r"+strings.Repeat(" ", 100)+"\r")
	}
	secs := time.Since(p.start).Seconds()
	fmt.Fprintf(p.w, "%s: %.1f MB in %.1fs, %.1f MB/s\n", p.label, float64(p.done)/1e6, secs, float64(p.done)/1e6/max(secs, 1e-9))
}
