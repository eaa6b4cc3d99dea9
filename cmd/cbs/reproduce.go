package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"cbs/study"
)

func init() { verbs = append(verbs, newReproduceCmd) }

type reproduceOptions struct {
	name        string
	experiments string
	runs        string
	results     string
	scale       float64
	threads     int
	device      string
	refit       bool
}

func newReproduceCmd() *cobra.Command {
	o := &reproduceOptions{}
	cmd := &cobra.Command{
		Use:   "reproduce NAME",
		Short: "Run a study under experiments/ and regenerate its figures and fit tables under results/",
		Long: `Run the stages of experiments/NAME/experiment.toml in order (training runs and sweeps, each
starting from the previous stage's checkpoint where it says so), then fit, plot and report every
sweep into results/NAME/. Stages whose outputs are complete are skipped and interrupted ones
resume, so running the command again continues where it stopped.

--scale multiplies every token quantity (budgets, batch ladders, warmups, eval intervals) by a
power of two, for a quick look (0.25) or a bigger machine (4); scaled runs go to
runs/NAME-xSCALE and results/NAME-xSCALE.

Exit status: 0 ok, 1 error, 2 bad config, 3 some branches failed, 130 interrupted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return runReproduce(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.Float64Var(&o.scale, "scale", 1, "multiply token budgets and batch ladders by this power of two")
	f.StringVar(&o.experiments, "experiments", "experiments", "directory of studies")
	f.StringVar(&o.runs, "runs", "runs", "directory for run outputs")
	f.StringVar(&o.results, "results", "results", "directory for figures, fit tables and reports")
	f.IntVar(&o.threads, "threads", -1, "CPU threads (default: each config's run.threads, else all cores)")
	f.StringVar(&o.device, "device", "", "auto, cpu, cuda or cuda:N for every stage (default: each config's run.device); never changes what is compared")
	f.BoolVar(&o.refit, "refit", false, "train nothing: fit, plot and report every sweep again from the run records kept under results/")
	return cmd
}

func runReproduce(ctx context.Context, o *reproduceOptions, stdout, stderr io.Writer) error {
	if err := study.CheckScale(o.scale); err != nil {
		return studyError(err)
	}
	s, err := study.Load(filepath.Join(o.experiments, o.name))
	if err != nil {
		return studyError(err)
	}
	if !o.refit {
		warnSlowPath(stderr)
	}
	ctx, stop := interruptible(ctx)
	defer stop()
	summary, err := s.Run(ctx, study.Options{Name: o.name, Runs: o.runs, Results: o.results, Scale: o.scale, Threads: o.threads,
		Device: o.device, Refit: o.refit, CodeVersion: codeVersion(), Log: stderr, Terminal: isTerminal(stderr)})
	if err != nil {
		return studyError(err)
	}
	fmt.Fprintln(stdout, summary)
	return nil
}

// studyError gives a study's error its exit status.
func studyError(err error) error {
	switch {
	case errors.Is(err, study.ErrUsage):
		return &codedError{code: exitUsage, err: err}
	case errors.Is(err, study.ErrFailed):
		return &codedError{code: exitSomeFailed, err: err}
	case errors.Is(err, study.ErrInterrupted):
		return &codedError{code: exitInterrupted, err: err}
	}
	return err
}
