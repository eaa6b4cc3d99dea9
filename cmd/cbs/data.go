package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"cbs/branch"
	"cbs/data"
	"cbs/internal/atomicio"
	"cbs/model"
	"cbs/runfmt"
)

func init() { verbs = append(verbs, newDataCmd) }

func newDataCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "data", Short: "Tokenize corpora into token shards and check them; export a branch's data for another trainer"}
	cmd.AddCommand(newDataTokenizeCmd(), newDataVerifyCmd(), newDataExportCmd())
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

// exportFormat names the layout cbs data export writes, in its meta.json; a reader checks it.
const exportFormat = "cbs-branch-data/1"

// exportMetaFile describes an export, beside its arrays.
const exportMetaFile = "meta.json"

// exportEvalShards is the number of contiguous groups a cbs branch splits its eval set into for
// the bootstrap's eval_shards (evalShards in branch/run.go), told to the trainer in meta.json.
const exportEvalShards = 8

// exportMeta is an export's meta.json.
type exportMeta struct {
	Format       string `json:"format"`
	Branch       string `json:"branch"`
	Objective    string `json:"objective"`
	SeqLen       int    `json:"seq_len"`
	BatchSeqs    int    `json:"batch_seqs"`
	MicroBatch   int    `json:"micro_batch"`
	Steps        int    `json:"steps"`
	BudgetTokens int64  `json:"budget_tokens"`
	// TrainSeqs rows of train_tokens; row r is the sequence at data cursor position
	// FirstPosition + r, so a trainer that has read r rows is at cursor FirstPosition + r.
	TrainSeqs     int64   `json:"train_seqs"`
	FirstPosition int64   `json:"first_position"`
	ForkCursor    int64   `json:"fork_cursor"`
	Replicate     int     `json:"replicate"`
	Seed          uint64  `json:"seed"`
	EvalSeed      uint64  `json:"eval_seed"`
	MaskEps       float64 `json:"mask_eps,omitempty"`
	EvalSeqs      int     `json:"eval_seqs"`
	EvalShards    int     `json:"eval_shards"`
	Tokenizer     string  `json:"tokenizer"`
	VocabSize     int     `json:"vocab_size"`
	Corpus        string  `json:"corpus_fingerprint"`
	StreamHash    string  `json:"stream_hash"`
	// Arrays lists the .npy names (without the suffix) the export holds.
	Arrays []string `json:"arrays"`
}

func newDataExportCmd() *cobra.Command {
	var dir, out string
	cmd := &cobra.Command{
		Use:   "export --branch DIR --out FILE.npz|DIR",
		Short: "Write the tokens and masks a branch trains and evaluates on, in cbs's order, for another trainer",
		Long: `Read DIR/branch.json, the resolved spec a sweep writes for every branch (an external trainer's
too), and write what that branch trains and evaluates on, exactly as cbs would read it:

  train_tokens   int32 [budget / seq_len, seq_len]: the training sequences in the order the branch
                 consumes them, from its parent's data cursor (trainer.json) on, in its
                 replicate's order; a step of B sequences takes the next B rows
  eval_tokens    int32 [eval sequences, seq_len]: the frozen eval set
  train_mask, eval_mask, train_p, eval_p
                 mdm only: each sequence's masked positions (bool [sequences, seq_len]) and its
                 masking probability p (float64), the divisor of its loss weight
  meta.json      the branch's shape, the cursor, the seeds, the corpus fingerprint, the number of
                 eval shards, and the stream_hash a cbs branch records once it has read these
                 tokens

--out FILE.npz writes one numpy archive (numpy.load reads the arrays; meta.json is a member of
the zip). Any other --out is a folder of NAME.npy files and meta.json; it must be missing, empty
or an earlier export, which is replaced. Either is written beside its place and renamed there
when complete. The corpus is the branch's [data] table, so data.source must be set.
docs/executors.md says how an external trainer uses it.`,
		Example: `  cbs data export --branch runs/my-sweep/branches/b64Ki-r0 --out b64Ki.npz
  # in a sweep's [external] table, before the trainer starts:
  command = "{cbs} data export --branch {out} --out {out}/data.npz && exec python3 train.py --data {out}/data.npz"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDataExport(dir, out, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "branch", "", "the branch directory, holding branch.json (required)")
	f.StringVar(&out, "out", "", "FILE.npz, or a folder for .npy files (required)")
	return cmd
}

func runDataExport(dir, out string, stdout io.Writer) error {
	if dir == "" || out == "" {
		return usageErrorf("--branch and --out are required: the branch directory and where to write its data")
	}
	s, err := readExportSpec(dir)
	if err != nil {
		return err
	}
	npz := strings.EqualFold(filepath.Ext(out), ".npz")
	if !npz {
		if err := checkExportDir(out); err != nil {
			return err
		}
	}
	corpus, err := data.Open(s.Data)
	if err != nil {
		return fmt.Errorf("%s: data: %w", filepath.Join(dir, runfmt.SpecFile), err)
	}
	// Where the branch starts reading and where its replicate's order begins: the parent's
	// cursor, as a cbs branch forks (0 for a fresh model or a checkpoint without trainer.json).
	var first int64
	if s.Parent != "" {
		st, err := model.LoadTrainerState(s.Parent)
		if err != nil {
			return fmt.Errorf("parent %s: %w", s.Parent, err)
		}
		if st != nil {
			first = st.DataCursor
		}
	}
	L := s.SeqLen()
	d, err := corpus.ExportBranch(data.BranchExport{
		First: first, Replica: data.Replica{Index: int64(s.Replicate), From: first}, Seqs: int64(s.Budget) / int64(L),
		MDM: s.Objective == model.MDM, Seed: s.Seed, EvalSeed: s.EvalSeed, MaskEps: s.MaskEps,
	})
	if err != nil {
		return err
	}
	arrays := d.Arrays()
	tok := corpus.Tokenizer()
	meta := exportMeta{
		Format: exportFormat, Branch: s.ID, Objective: s.Objective, SeqLen: L, BatchSeqs: s.BatchSeqs(),
		MicroBatch: s.MicroBatch, Steps: s.Steps(), BudgetTokens: int64(s.Budget), TrainSeqs: int64(len(d.TrainTokens) / L),
		FirstPosition: first, ForkCursor: first, Replicate: s.Replicate, Seed: s.Seed, EvalSeed: s.EvalSeed,
		EvalSeqs: corpus.NumEvalSeqs(), EvalShards: min(exportEvalShards, corpus.NumEvalSeqs()),
		Tokenizer: tok.Name(), VocabSize: tok.VocabSize(), Corpus: corpus.Fingerprint(), StreamHash: d.StreamHash,
	}
	if s.Objective == model.MDM {
		meta.MaskEps = s.MaskEps
	}
	for _, a := range arrays {
		meta.Arrays = append(meta.Arrays, a.Name)
	}
	mb, _ := json.MarshalIndent(meta, "", "  ")
	mb = append(mb, '\n')
	if npz {
		err = atomicio.WriteFileFunc(out, func(w io.Writer) error {
			return data.WriteNPZ(w, arrays, data.NPZFile{Name: exportMetaFile, Data: mb})
		})
	} else {
		err = writeExportDir(out, arrays, mb)
	}
	if err != nil {
		return err
	}
	row := func(k, format string, args ...any) {
		fmt.Fprintf(stdout, "%-12s %s\n", k, fmt.Sprintf(format, args...))
	}
	row("branch", "%s (%s)", s.ID, s.Objective)
	row("train", "%d sequences of %d tokens from cursor %d, replicate %d", meta.TrainSeqs, L, first, s.Replicate)
	row("eval", "%d sequences", meta.EvalSeqs)
	row("corpus", "%s", meta.Corpus)
	row("stream_hash", "%s", d.StreamHash)
	row("out", "%s", out)
	return nil
}

// readExportSpec reads the branch's spec and checks what an export needs of it. A spec need not
// pass branch.Spec.Validate: an external trainer's branch may have neither a parent nor a
// [model] table.
func readExportSpec(dir string) (*branch.Spec, error) {
	path := filepath.Join(dir, runfmt.SpecFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usageErrorf("--branch %s: no %s: want a branch directory of a sweep", dir, runfmt.SpecFile)
	}
	if err != nil {
		return nil, err
	}
	var s branch.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, usageErrorf("%s: %v", path, err)
	}
	L := branch.Tokens(s.SeqLen())
	switch {
	case s.Data.Source == "":
		return nil, usageErrorf("%s: data.source is not set, so cbs does not know the branch's corpus: give the sweep a [data] source to export", path)
	case s.Objective != model.AR && s.Objective != model.MDM:
		return nil, usageErrorf("%s: objective = %q, want \"ar\" or \"mdm\"", path, s.Objective)
	case s.Objective == model.MDM && !(s.MaskEps > 0 && s.MaskEps < 1):
		return nil, usageErrorf("%s: mask_eps = %g, want 0 < eps < 1", path, s.MaskEps)
	case L < 2 || s.BatchTokens <= 0 || s.BatchTokens%L != 0 || s.Budget <= 0 || s.Budget%s.BatchTokens != 0:
		return nil, usageErrorf("%s: budget %d, batch %d and seq_len %d tokens: want a budget of whole batches of whole sequences", path, s.Budget, s.BatchTokens, L)
	}
	return &s, nil
}

// checkExportDir refuses an --out folder that holds anything but an earlier export.
func checkExportDir(out string) error {
	entries, err := os.ReadDir(out)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil
	}
	if err != nil {
		return usageErrorf("--out %s: %v", out, err)
	}
	b, err := os.ReadFile(filepath.Join(out, exportMetaFile))
	var m struct{ Format string }
	if err != nil || json.Unmarshal(b, &m) != nil || m.Format != exportFormat {
		return usageErrorf("--out %s is a folder that holds something other than an export: name a missing or empty folder, or a FILE.npz", out)
	}
	return nil
}

// writeExportDir writes the arrays as NAME.npy and meta.json into a folder beside out, then
// renames it to out.
func writeExportDir(out string, arrays []data.NamedArray, meta []byte) error {
	if err := atomicio.CleanStale(out); err != nil {
		return err
	}
	tmp, err := atomicio.TempDir(out)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, a := range arrays {
		f, err := os.Create(filepath.Join(tmp, a.Name+".npy"))
		if err != nil {
			return err
		}
		err = data.WriteNPY(f, a.Array)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", a.Name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, exportMetaFile), meta, 0o644); err != nil {
		return err
	}
	return atomicio.CommitDir(tmp, out)
}
