package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"cbs/branch"
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
}

func newStatusCmd() *cobra.Command {
	var asJSON bool
	var config string
	cmd := &cobra.Command{
		Use:   "status [RUN_DIR]",
		Short: "Show each branch of a sweep: state, tokens done, last loss, ETA",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var dir string
			switch {
			case len(args) == 1:
				dir = args[0]
			case config != "":
				plan, err := loadPlan(config)
				if err != nil {
					return err
				}
				dir = plan.Out
			default:
				return usageErrorf("status: give RUN_DIR or --config FILE")
			}
			rows, err := sweepStatus(dir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.MarshalIndent(rows, "", "  ")
				fmt.Fprintln(out, string(b))
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "branch\tstate\ttokens\tstep\ttrain loss\teval loss\ttok/s\tETA")
			for _, r := range rows {
				eta := ""
				if r.ETASeconds > 0 {
					eta = (time.Duration(r.ETASeconds) * time.Second).String()
				}
				state := r.State
				if r.Reason != "" {
					state += " (" + r.Reason + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s/%s\t%d\t%s\t%s\t%.0f\t%s\n", r.ID, state, branch.Tokens(r.Tokens).Human(),
					branch.Tokens(r.Budget).Human(), r.Step, lossCell(r.TrainLoss), lossCell(r.EvalLoss), r.TokensPerS, eta)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&config, "config", "", "find the run directory from a sweep config")
	return cmd
}

func lossCell(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.4f", *v)
}

func sweepStatus(dir string) ([]branchStatus, error) {
	entries, err := os.ReadDir(filepath.Join(dir, sweep.BranchesDir))
	if err != nil {
		return nil, fmt.Errorf("%s is not a sweep run directory: %w", dir, err)
	}
	var rows []branchStatus
	var batches = map[string]int64{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		bdir := filepath.Join(dir, sweep.BranchesDir, e.Name())
		r := branchStatus{ID: e.Name(), State: branch.StatePending}
		var spec branch.Spec
		if b, err := os.ReadFile(filepath.Join(bdir, branch.SpecFile)); err == nil && json.Unmarshal(b, &spec) == nil {
			r.Budget = int64(spec.Budget)
			batches[r.ID] = int64(spec.BatchTokens)
		}
		var st branch.State
		if b, err := os.ReadFile(filepath.Join(bdir, branch.StateFile)); err == nil && json.Unmarshal(b, &st) == nil {
			r.State, r.Reason = st.State, st.Reason
		}
		eachLine(filepath.Join(bdir, branch.MetricsFile), func(b []byte) {
			var m branch.Metrics
			if json.Unmarshal(b, &m) == nil {
				r.Tokens, r.Step = m.Tokens, m.Step
				if m.TrainLoss != nil {
					r.TrainLoss = m.TrainLoss
				}
				if m.EvalLoss != nil {
					r.EvalLoss = m.EvalLoss
				}
			}
		})
		eachLine(filepath.Join(bdir, branch.PerfFile), func(b []byte) {
			var p branch.Perf
			if json.Unmarshal(b, &p) == nil {
				r.TokensPerS = p.TokensPerS
			}
		})
		if r.State != branch.StateDone && r.TokensPerS > 0 && r.Budget > r.Tokens {
			r.ETASeconds = float64(r.Budget-r.Tokens) / r.TokensPerS
		}
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

func eachLine(path string, f func([]byte)) {
	file, err := os.Open(path)
	if err != nil {
		return
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		f(sc.Bytes())
	}
}
