package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"cbs/branch"
	"cbs/data"
	"cbs/runfmt"
)

func init() { verbs = append(verbs, newTrainCmd) }

type trainOptions struct {
	config  string
	branch  string
	out     string
	threads int
	quiet   bool
}

func newTrainCmd() *cobra.Command {
	o := &trainOptions{}
	cmd := &cobra.Command{
		Use:   "train ([--config] FILE | --branch DIR)",
		Short: "Train one run (resumable: run the same command again to continue)",
		Long: `Train one model as a config file describes: from a fresh initialisation or a parent
checkpoint, with the AR or MDM objective, an LR schedule in tokens, evals and checkpoints every
N tokens. The run directory holds branch.json, metrics.jsonl, perf.jsonl, state.json, log.txt and
ckpt/. Running the same command again continues from the last checkpoint; SIGINT finishes the
current step, writes a checkpoint and exits with status 130.

--branch DIR runs one branch of an expanded sweep from its branch.json (what a cluster job runs).

Exit status: 0 done, 1 error, 2 bad config, 3 diverged, 130 interrupted.`,
		Example: `  cbs train experiments/train-goroot/ar.toml
  cbs train --branch runs/quickstart/sweep/branches/b1Ki-r0`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.branch == "" {
				if err := configArg(&o.config, args, "train"); err != nil {
					return err
				}
			} else if len(args) > 0 {
				return usageErrorf("train: --branch %s runs a branch; a config (%s) is not needed", o.branch, args[0])
			}
			if (o.config == "") == (o.branch == "") {
				return usageErrorf("train: give --config FILE or --branch DIR")
			}
			return runTrain(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "TOML config of the run")
	f.StringVar(&o.branch, "branch", "", "branch directory of an expanded sweep (holds branch.json)")
	f.StringVar(&o.out, "out", "", "run directory (default: experiment.out, else runs/<name>)")
	f.IntVar(&o.threads, "threads", -1, "CPU threads (default: run.threads, else all cores); never changes the numbers")
	f.BoolVar(&o.quiet, "quiet", false, "no progress lines")
	return cmd
}

// interruptible returns a context cancelled by the first SIGINT or SIGTERM; a second one kills
// the process the usual way.
func interruptible(parent context.Context) (context.Context, func()) {
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sig:
			cancel()
			signal.Stop(sig)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(sig); cancel() }
}

func runTrain(ctx context.Context, o *trainOptions, stdout, stderr io.Writer) error {
	var spec *branch.Spec
	var out string
	var err error
	if o.branch != "" {
		spec, err = branch.LoadSpec(o.branch)
		out = o.branch
		if err == nil {
			if verr := spec.Validate(); verr != nil {
				return usageErrorf("%s: %v", filepath.Join(o.branch, runfmt.SpecFile), verr)
			}
		}
	} else {
		spec, out, err = branch.LoadTrainConfig(o.config)
	}
	var ce *branch.ConfigError
	if errors.As(err, &ce) {
		return &codedError{code: exitUsage, err: err}
	}
	if err != nil {
		return err
	}
	if o.out != "" {
		out = o.out
	}
	if o.threads >= 0 {
		spec.Threads = o.threads
	}
	if spec.Device == "" || spec.Device == "cpu" || spec.Device == "auto" {
		warnSlowPath(stderr)
	}
	ctx, stop := interruptible(ctx)
	defer stop()
	var last time.Time
	opts := branch.Options{Dir: out, Log: stderr}
	// Opened here to warn before training starts and handed to the run, which would open it
	// anyway; an error is left for the run to report where it reports every other.
	if corpus, err := data.Open(spec.Data); err == nil {
		opts.Corpus = corpus
		if w := data.RepeatWarning(corpus.TrainTokens(), int64(spec.Budget)); w != "" {
			fmt.Fprintln(stderr, "warning: "+w)
		}
	}
	if !o.quiet {
		opts.Progress = func(p branch.Progress) {
			if time.Since(last) < 2*time.Second && p.Step != p.Steps {
				return
			}
			last = time.Now()
			eval := ""
			if !math.IsNaN(p.EvalLoss) {
				eval = fmt.Sprintf(" eval %.4f", p.EvalLoss)
			}
			fmt.Fprintf(stderr, "%s: step %d/%d  %s/%s tokens  loss %.4f%s  %.0f tok/s\n", p.ID, p.Step, p.Steps,
				branch.Tokens(p.Tokens).Human(), branch.Tokens(p.Budget).Human(), p.TrainLoss, eval, p.TokensPerS)
		}
	}
	err = branch.Run(ctx, spec, opts)
	switch {
	case errors.Is(err, branch.ErrInterrupted):
		return &codedError{code: exitInterrupted, err: fmt.Errorf("interrupted: checkpoint written to %s; run the same command to continue", out)}
	case errors.Is(err, branch.ErrDiverged):
		return &codedError{code: exitSomeFailed, err: err}
	case err != nil:
		return err
	}
	fmt.Fprintln(stdout, out)
	return nil
}

// configArg takes the config file from the one positional argument or --config, not both.
func configArg(config *string, args []string, verb string) error {
	switch {
	case len(args) == 1 && *config != "" && args[0] != *config:
		return usageErrorf("%s: two configs given, --config %s and %s", verb, *config, args[0])
	case len(args) == 1:
		*config = args[0]
	case *config == "":
		return usageErrorf("%s: give the config file: cbs %s FILE", verb, verb)
	}
	return nil
}
