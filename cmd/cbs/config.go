package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func init() { verbs = append(verbs, newConfigCmd) }

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check a sweep config and show its branches"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Check a sweep config; exit status 2 with the offending key if it is rejected",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := loadPlan(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok, %d branches\n", args[0], len(plan.Branches))
			return nil
		},
	})
	var asJSON bool
	plan := &cobra.Command{
		Use:   "plan FILE",
		Short: "Print every branch: batch in tokens and sequences, accumulation, steps, peak LR per group, warmup, eval marks and cost; warn of LR jumps from the parent",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := loadPlan(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				b, _ := json.MarshalIndent(p.Rows(), "", "  ")
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			}
			p.Print(cmd.OutOrStdout())
			return nil
		},
	}
	plan.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(plan)
	return cmd
}
