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
	config         string
	retryFailed    bool
	threads        int
	parallel       int
	dryRun         bool
	externalBranch string
}

func newSweepCmd() *cobra.Command {
	o := &sweepOptions{}
	cmd := &cobra.Command{
		Use:   "sweep [--config] FILE",
		Short: "Run a batch-size sweep: branches that differ only in global batch size",
		Long: `Expand a sweep config into branches (batch ladder x replicates) and run them, run.parallel at
a time. Running the same command again resumes: done branches are skipped, interrupted ones
continue from their checkpoints, failed and diverged ones are retried only with --retry-failed.
A run directory holding a sweep of a different config is refused, with the differing keys.
SIGINT makes every running branch finish its step and checkpoint.

run.executor says who trains: "local" (cbs, in this process), "slurm" (one sbatch array job,
one task per branch running cbs train --branch, then an afterok job running cbs fit and cbs
plot; cbs sweep returns once submitted and cbs status follows the tasks) or "external" (the
[external] command template, once per branch, here or through Slurm). --dry-run prints the job
scripts or commands without submitting or running anything. docs/executors.md has the details.

Exit status: 0 all done (or submitted), 1 error, 2 bad config, 3 some branches failed or
diverged, 130 interrupted.`,
		Example: `  cbs sweep experiments/quickstart/sweep.toml
  cbs config plan my-sweep.toml && cbs sweep --config my-sweep.toml --parallel 2`,
		Args: cobra.MaximumNArgs(1),
		RunE: o.run,
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "sweep config (TOML)")
	f.BoolVar(&o.retryFailed, "retry-failed", false, "rerun failed and diverged branches")
	f.IntVar(&o.threads, "threads", -1, "CPU threads for the whole sweep (default: run.threads, else all cores)")
	f.IntVar(&o.parallel, "parallel", 0, "branches at a time (default: run.parallel)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the Slurm job scripts (or the external commands, or the plan) and change nothing")
	// What a Slurm task of an external sweep runs: the trainer of one prepared branch directory.
	f.StringVar(&o.externalBranch, "external-branch", "", "run the external trainer of one branch directory (holds external.json) and check its metrics")
	f.MarkHidden("external-branch")
	return cmd
}

// run expands the sweep config and executes the plan with its executor.
func (o *sweepOptions) run(cmd *cobra.Command, args []string) error {
	if o.externalBranch != "" {
		return runExternalBranch(cmd, o.externalBranch)
	}
	if err := configArg(&o.config, args, "sweep"); err != nil {
		return err
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
	if plan.Config.Run.Executor == sweep.ExecutorLocal && !o.dryRun {
		warnSlowPath(cmd.ErrOrStderr())
	}
	// A local dry run prints the plan, which carries the warning already; an error is
	// left for the sweep to report when it opens the data.
	if !(o.dryRun && plan.Config.Run.Executor == sweep.ExecutorLocal) {
		if w, err := plan.DataWarning(); err == nil && w != "" {
			fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
		}
	}
	ctx, stop := interruptible(cmd.Context())
	defer stop()
	stderr := cmd.ErrOrStderr()
	outcome, err := sweep.Execute(ctx, plan, sweep.Options{
		RetryFailed: o.retryFailed, Log: stderr, Terminal: isTerminal(stderr), CodeVersion: codeVersion(),
		DryRun: o.dryRun, Stdout: cmd.OutOrStdout(),
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
	if !o.dryRun {
		fmt.Fprintln(cmd.OutOrStdout(), plan.Out)
	}
	return nil
}

// runExternalBranch runs one branch's external trainer; its exit status tells Slurm whether the
// afterok fit job may run.
func runExternalBranch(cmd *cobra.Command, dir string) error {
	ctx, stop := interruptible(cmd.Context())
	defer stop()
	err := sweep.RunExternalBranch(ctx, dir, cmd.ErrOrStderr())
	switch {
	case errors.Is(err, sweep.ErrInterrupted):
		return &codedError{code: exitInterrupted, err: fmt.Errorf("interrupted: %s is pending; run again to continue", dir)}
	case errors.Is(err, sweep.ErrTrainerFailed), errors.Is(err, branch.ErrDiverged):
		return &codedError{code: exitSomeFailed, err: err}
	}
	return err
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
