package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"cbs/branch"
	"cbs/internal/configref"
	"cbs/sweep"
)

// configTable says what a table is for and which configs have it, in the reference's order.
type configTable struct {
	name, kinds, about string
}

var configTables = []configTable{
	{"experiment", "both", "What the run is called, its seed and where it is written."},
	{"model", "both", "A freshly initialised Qwen3-style model; omit it when starting from parent.checkpoint. The vocabulary comes from the tokenizer."},
	{"parent", "both", "The checkpoint a run starts from; omit it when [model] describes a fresh model."},
	{"objective", "both", "What the model learns."},
	{"data", "both", "The corpus and how it is cut into sequences. The eval set is held out by content: no document of it is trained on."},
	{"optimizer", "both", "AdamW with per-group LR multipliers (the layer-wise LR of a converted model)."},
	{"schedule", "both", "The LR multiplier as a function of tokens, so branches with different batches trace the same curve."},
	{"eval", "both", "The frozen eval set and when it is measured."},
	{"run", "both", "How a run executes, never what it computes: changing these keys resumes a run."},
	{"train", "train", "One run's budget and batch."},
	{"branches", "sweep", "The ladder of global batch sizes and what every branch shares."},
	{"analysis", "sweep", "How `cbs fit` estimates the critical batch size of this sweep (its flags override these)."},
	{"slurm", "sweep", "Resources of the array job, when run.executor = \"slurm\" or external.via = \"slurm\"."},
	{"external", "sweep", "Your own trainer, when run.executor = \"external\"; see docs/executors.md for the contract."},
}

// referenceKeys lists the keys of every table, each once, from the types the decoders fill and
// the defaults they start from.
func referenceKeys() []configref.Key {
	train := configref.Keys(branch.TrainConfig{Common: branch.DefaultCommon()})
	sweepKeys := configref.Keys(sweep.DefaultConfig())
	keys := slices.Clone(sweepKeys)
	for _, k := range train {
		if !slices.ContainsFunc(keys, func(s configref.Key) bool { return s.Path() == k.Path() }) {
			keys = append(keys, k)
		}
	}
	return keys
}

func kindsText(kinds string) string {
	switch kinds {
	case "train":
		return "Train configs only."
	case "sweep":
		return "Sweep configs only."
	}
	return "Train and sweep configs."
}

const exampleTrain = `[experiment]
name = "base"
seed = 1

[model]
hidden_size = 64
layers = 2
heads = 4
intermediate_size = 192

[data]
source = "files"
glob = "corpus/*.txt"     # relative to this file's folder
seq_len = 128

[optimizer]
lr = 3e-3

[schedule]
shape = "constant"
warmup = "32Ki"

[train]
budget = "1Mi"
batch = "4Ki"             # 32 sequences of 128 tokens

[eval]
every = "256Ki"
tokens = "16Ki"
`

const exampleSweep = `[experiment]
name = "my-sweep"
seed = 1

[parent]
checkpoint = "runs/base/ckpt"   # relative to this file's folder

[data]
source = "files"
glob = "corpus/*.txt"
seq_len = 128

[schedule]
shape = "constant"

[branches]
budget = "256Ki"
batch_sizes = ["1Ki", "2Ki", "4Ki", "8Ki"]
lr_scaling = "sqrt"
replicates = 3

[eval]
tokens = "16Ki"
`

// configReferenceMarkdown is docs/config.md.
func configReferenceMarkdown() string {
	keys := referenceKeys()
	var b strings.Builder
	b.WriteString(`# Config reference

` + "`cbs`" + ` reads two kinds of TOML config. A **train config** (` + "`cbs train FILE`" + `) describes one run
and has a ` + "`[train]`" + ` table; a **sweep config** (` + "`cbs sweep FILE`" + `) describes branches from one checkpoint
that differ only in batch size, and has ` + "`[branches]`" + ` instead. Both share the other tables. This page
lists every key; ` + "`cbs config keys [TABLE]`" + ` prints the same in a terminal, and ` + "`cbs config validate FILE`" + `
checks a config of either kind.

Conventions:

- **Token counts** (type "tokens") are an integer or a string with a suffix: K, M, B, T are powers
  of ten, Ki, Mi, Gi, Ti powers of two (` + "`\"64K\"`" + ` = 64000, ` + "`\"4Mi\"`" + ` = 4194304). Every duration is in
  tokens, never in steps, so branches with different batches share their schedule, eval marks
  and checkpoints.
- **Paths** in a config (experiment.out, parent.checkpoint, data.glob, data.path, data.cache_dir,
  external.workdir) are relative to the folder of the config file, wherever ` + "`cbs`" + ` runs from; a
  config moved together with its data keeps working. Messages show the resolved path. Only the
  default run directory, runs/NAME, is under the working directory.
- **Unknown keys** are refused with the closest known key and the keys of their table.
- A key marked **required** has no default; "none" means the feature is off when the key is absent.

A train config:

` + "```toml\n" + exampleTrain + "```" + `

A sweep config branching from the train run's checkpoint:

` + "```toml\n" + exampleSweep + "```\n")
	for _, t := range configTables {
		fmt.Fprintf(&b, "\n## [%s]\n\n%s %s\n\n", t.name, kindsText(t.kinds), t.about)
		b.WriteString(configref.MarkdownTable(keys, t.name))
	}
	return b.String()
}

// printConfigKeys prints the reference of one table, or of all, for a terminal.
func printConfigKeys(w io.Writer, table string) error {
	keys := referenceKeys()
	var names []string
	for _, t := range configTables {
		names = append(names, t.name)
	}
	table = strings.Trim(table, "[]")
	if table != "" && !slices.Contains(names, table) {
		msg := fmt.Sprintf("config keys: no table [%s]", table)
		if c := configref.Closest(table, names); c != "" {
			msg += fmt.Sprintf(": did you mean [%s]?", c)
		}
		return usageErrorf("%s (tables: %s)", msg, strings.Join(names, ", "))
	}
	for _, t := range configTables {
		if table != "" && t.name != table {
			continue
		}
		fmt.Fprintf(w, "[%s] %s %s\n", t.name, kindsText(t.kinds), t.about)
		for _, k := range keys {
			if k.Table != t.name {
				continue
			}
			def := k.Default
			if def == "" {
				def = "none"
			}
			fmt.Fprintf(w, "  %s: %s, default %s\n", k.Name, k.Type, def)
			if k.Doc != "" {
				fmt.Fprintf(w, "      %s\n", k.Doc)
			}
		}
		fmt.Fprintln(w)
	}
	return nil
}
