package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"cbs/branch"
	"cbs/sweep"
)

func init() { verbs = append(verbs, newSweepCmd) }

type sweepOptions struct {
	config      string
	retryFailed bool
	threads     int
	parallel    int
}

func newSweepCmd() *cobra.Command {
	o := &sweepOptions{}
	cmd := &cobra.Command{
		Use:   "sweep --config FILE",
		Short: "Run a batch-size sweep: branches that differ only in global batch size",
		Long: `Expand a sweep config into branches (batch ladder x replicates) and run them, run.parallel at
a time. Running the same command again resumes: done branches are skipped, interrupted ones
continue from their checkpoints, failed and diverged ones are retried only with --retry-failed.
A run directory holding a sweep of a different config is refused, with the differing keys.
SIGINT makes every running branch finish its step and checkpoint.

Exit status: 0 all done, 1 error, 2 bad config, 3 some branches failed or diverged, 130 interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.config == "" {
				return usageErrorf("sweep: --config FILE is required")
			}
			plan, err := loadPlan(o.config)
			if err != nil {
				return err
			}
			if o.threads >= 0 {
				plan.Config.Run.Threads = o.threads
			}
			if o.parallel > 0 {
				plan.Config.Run.Parallel = o.parallel
			}
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			stderr := cmd.ErrOrStderr()
			outcome, err := sweep.Execute(ctx, plan, sweep.Options{
				RetryFailed: o.retryFailed, Log: stderr, Terminal: isTerminal(stderr), CodeVersion: codeVersion(),
			})
			switch {
			case errors.Is(err, sweep.ErrChangedConfig):
				return &codedError{code: exitUsage, err: err}
			case errors.Is(err, sweep.ErrInterrupted):
				return &codedError{code: exitInterrupted, err: fmt.Errorf("interrupted: branches checkpointed in %s; run the same command to continue", plan.Out)}
			case err != nil:
				return err
			}
			if outcome.AnyFailed() {
				return &codedError{code: exitSomeFailed, err: fmt.Errorf("some branches did not finish:\n  %s", strings.Join(outcome.Failed, "\n  "))}
			}
			fmt.Fprintln(cmd.OutOrStdout(), plan.Out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "sweep config (TOML)")
	f.BoolVar(&o.retryFailed, "retry-failed", false, "rerun failed and diverged branches")
	f.IntVar(&o.threads, "threads", -1, "CPU threads for the whole sweep (default: run.threads, else all cores)")
	f.IntVar(&o.parallel, "parallel", 0, "branches at a time (default: run.parallel)")
	return cmd
}

// loadPlan loads a sweep config, mapping config errors to exit status 2.
func loadPlan(path string) (*sweep.Plan, error) {
	plan, err := sweep.Load(path)
	var ce *branch.ConfigError
	if errors.As(err, &ce) {
		return nil, &codedError{code: exitUsage, err: err}
	}
	return plan, err
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
