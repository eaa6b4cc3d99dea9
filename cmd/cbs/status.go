package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"cbs/internal/atomicio"
	"cbs/runfmt"
	"cbs/sweep"
)

func init() { verbs = append(verbs, newStatusCmd) }

type branchStatus struct {
	ID         string   `json:"id"`
	State      string   `json:"state"`
	Reason     string   `json:"reason,omitempty"`
	Tokens     int64    `json:"tokens"`
	Budget     int64    `json:"budget"`
	Step       int      `json:"step"`
	TrainLoss  *float64 `json:"train_loss,omitempty"`
	EvalLoss   *float64 `json:"eval_loss,omitempty"`
	TokensPerS float64  `json:"tokens_per_s,omitempty"`
	ETASeconds float64  `json:"eta_s,omitempty"`
	// Slurm is the branch's latest array task, for a sweep submitted to Slurm.
	Slurm *sweep.SlurmTask `json:"slurm,omitempty"`
}

// statusReport is what cbs status --json prints.
type statusReport struct {
	Branches []branchStatus `json:"branches"`
	// FitJob is the latest afterok job of a Slurm sweep.
	FitJob *sweep.SlurmTask `json:"fit_job,omitempty"`
}

func newStatusCmd() *cobra.Command {
	var asJSON bool
	var config string
	cmd := &cobra.Command{
		Use:   "status [RUN_DIR]",
		Short: "Show each branch of a sweep: state, tokens done, last loss, ETA of the running ones",
		Long: `status reads each branch's state.json, metrics.jsonl and perf.jsonl. For a sweep submitted to
Slurm it also asks squeue and scontrol about the array tasks and the fit job recorded in
RUN_DIR/slurm/jobs.jsonl; the state files stay the source of truth, since the scheduler forgets
a job some minutes after it ended. Only a running branch has an ETA, from its last measured speed;
one whose state.json says running while no process holds it, or while Slurm says its task
ended, is shown stopped.

Exit status: 0 ok, 1 error (an unreadable state.json included, reported after the table), 2 bad usage.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := statusDir(args, config)
			if err != nil {
				return err
			}
			rows, err := sweepStatus(dir)
			if err != nil {
				return err
			}
			rep := statusReport{Branches: rows}
			slurm, err := joinSlurm(cmd.Context(), dir, &rep)
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "cbs status: %v; showing the run directory alone\n", err)
			}
			for i := range rep.Branches {
				rep.Branches[i].ETASeconds = etaSeconds(rep.Branches[i])
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(out, string(b))
				return unreadableError(rep.Branches)
			}
			if err := writeStatusTable(out, rep, slurm); err != nil {
				return err
			}
			return unreadableError(rep.Branches)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&config, "config", "", "find the run directory from a sweep config")
	return cmd
}

// statusDir is the run directory status reads: RUN_DIR, else the out directory of --config.
func statusDir(args []string, config string) (string, error) {
	switch {
	case len(args) == 1:
		return args[0], nil
	case config != "":
		plan, err := loadPlan(config)
		if err != nil {
			return "", err
		}
		return plan.Out, nil
	}
	return "", usageErrorf("status: give RUN_DIR or --config FILE")
}

// writeStatusTable prints a row per branch, with a column of Slurm tasks when the run was
// submitted to Slurm, and the fit job below.
func writeStatusTable(out io.Writer, rep statusReport, slurm bool) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	head := "branch\tstate\ttokens\tstep\ttrain loss\teval loss\ttok/s\tETA"
	if slurm {
		head += "\tslurm"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rep.Branches {
		eta := etaCell(r)
		state := r.State
		if r.Reason != "" {
			state += " (" + r.Reason + ")"
		}
		speed := "-" // an external trainer writes no perf.jsonl
		if r.TokensPerS > 0 {
			speed = fmt.Sprintf("%.0f", r.TokensPerS)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s/%s\t%d\t%s\t%s\t%s\t%s", r.ID, state, runfmt.Tokens(r.Tokens).Human(),
			runfmt.Tokens(r.Budget).Human(), r.Step, lossCell(r.TrainLoss), lossCell(r.EvalLoss), speed, eta)
		if slurm {
			fmt.Fprintf(tw, "\t%s", slurmCell(r.Slurm))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.FitJob != nil {
		fmt.Fprintf(out, "\nfit and plot job: %s\n", slurmCell(rep.FitJob))
	}
	return nil
}

// joinSlurm adds what Slurm says about a submitted sweep's tasks; it reports whether the run
// directory has Slurm submissions at all.
func joinSlurm(ctx context.Context, dir string, rep *statusReport) (bool, error) {
	subs, err := sweep.ReadSubmissions(dir)
	if err != nil || len(subs) == 0 {
		return false, err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	st, err := sweep.SlurmStatus(ctx, dir)
	if err != nil {
		return true, err
	}
	for i := range rep.Branches {
		if t, ok := st.Tasks[rep.Branches[i].ID]; ok {
			rep.Branches[i].Slurm = &t
			slurmStopped(&rep.Branches[i])
		}
	}
	rep.FitJob = st.Fit
	return true, nil
}

func slurmCell(t *sweep.SlurmTask) string {
	if t == nil {
		return "-"
	}
	s := t.Job + " " + t.State
	switch {
	case t.State == "PENDING" && strings.Trim(t.Reason, "()") != "" && strings.Trim(t.Reason, "()") != "None":
		s += " (" + strings.Trim(t.Reason, "()") + ")"
	case t.ExitCode != "" && t.ExitCode != "0:0" && !t.Active():
		s += " (exit " + t.ExitCode + ")"
	}
	return s
}

func lossCell(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.4f", *v)
}

func sweepStatus(dir string) ([]branchStatus, error) {
	entries, err := os.ReadDir(filepath.Join(dir, runfmt.BranchesDir))
	if err != nil {
		return nil, fmt.Errorf("%s is not a sweep run directory: %w", dir, err)
	}
	var rows []branchStatus
	var batches = map[string]int64{}
	// Slurm tasks run on other nodes, whose locks this machine cannot see; squeue speaks for them.
	_, err = os.Stat(filepath.Join(dir, sweep.SlurmDir))
	remote := err == nil
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		bdir := filepath.Join(dir, runfmt.BranchesDir, e.Name())
		r := branchStatus{ID: e.Name(), State: runfmt.StatePending}
		if spec, err := runfmt.ReadBranch(bdir); err == nil {
			r.Budget = spec.BudgetTokens
			batches[r.ID] = spec.BatchTokens
		}
		// A missing state.json is a branch not started; one that cannot be read says nothing
		// of the branch, and showing it as pending would invite running it again.
		switch st, err := runfmt.ReadState(bdir); {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			r.State, r.Reason = stateUnreadable, err.Error()
		default:
			r.State, r.Reason = st.State, st.Reason
		}
		runfmt.EachLine(filepath.Join(bdir, runfmt.MetricsFile), func(b []byte) {
			if m, err := runfmt.ParseMetrics(b); err == nil {
				r.Tokens, r.Step = m.Tokens, m.Step
				if m.TrainLoss != nil {
					r.TrainLoss = m.TrainLoss
				}
				if m.EvalLoss != nil {
					r.EvalLoss = m.EvalLoss
				}
			}
		})
		runfmt.EachLine(filepath.Join(bdir, runfmt.PerfFile), func(b []byte) {
			var p runfmt.Perf
			if json.Unmarshal(b, &p) == nil {
				r.TokensPerS = p.TokensPerS
			}
		})
		if r.State == runfmt.StateRunning && !remote && !atomicio.Held(bdir) {
			// state.json says running, but no process holds the branch: it was killed.
			r.State, r.Reason = stateStopped, "its process is gone; run the sweep again to resume"
		}
		r.ETASeconds = etaSeconds(r)
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		if batches[rows[i].ID] != batches[rows[j].ID] {
			return batches[rows[i].ID] < batches[rows[j].ID]
		}
		return rows[i].ID < rows[j].ID
	})
	return rows, nil
}

// slurmStopped marks a branch of a Slurm sweep stopped when its state.json says running but
// the scheduler says its task has ended (cancelled, timed out, failed, its node lost): nothing
// writes to the branch any more, and its state file will go on saying running.
func slurmStopped(r *branchStatus) {
	if r.State == runfmt.StateRunning && r.Slurm != nil && !r.Slurm.Active() {
		r.State = stateStopped
		r.Reason = fmt.Sprintf("its Slurm task ended %s; run the sweep again to resume", r.Slurm.State)
	}
}

// etaSeconds is the time a branch has left at its last measured speed, or 0 when it has no
// ETA: only a running branch has one (for a Slurm sweep, one whose task the scheduler is
// running, not one queued again). Pending, stopped, failed, diverged and done branches have
// none, whatever speed their perf.jsonl last recorded.
func etaSeconds(r branchStatus) float64 {
	if r.State != runfmt.StateRunning || r.TokensPerS <= 0 || r.Budget <= r.Tokens {
		return 0
	}
	if r.Slurm != nil && r.Slurm.State != "RUNNING" {
		return 0
	}
	return float64(r.Budget-r.Tokens) / r.TokensPerS
}

// etaCell is the ETA column: the time left for a running branch, "-" for a running one without
// an ETA (no speed measured yet, none written by an external trainer, or its Slurm task queued
// again), blank for the others.
func etaCell(r branchStatus) string {
	switch {
	case r.ETASeconds > 0:
		return (time.Duration(math.Ceil(r.ETASeconds)) * time.Second).String()
	case r.State == runfmt.StateRunning:
		return "-"
	}
	return ""
}

// stateUnreadable is the state status shows for a branch whose state.json it cannot read, and
// stateStopped for one that says running with no process behind it.
const (
	stateUnreadable = "unreadable"
	stateStopped    = "stopped"
)

// unreadableError reports the branches whose state.json could not be read, after the table.
func unreadableError(rows []branchStatus) error {
	var ids []string
	for _, r := range rows {
		if r.State == stateUnreadable {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return fmt.Errorf("status: state.json of %d branch(es) is unreadable: %s", len(ids), strings.Join(ids, ", "))
}
