package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"

	"cbs/branch"
)

func init() { verbs = append(verbs, newConfigCmd) }

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check a config, show a sweep's branches, list every key"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Check a train or sweep config; exit status 2 with the offending key if it is rejected",
		Example: `  cbs config validate experiments/quickstart/sweep.toml
  cbs config validate experiments/quickstart/base.toml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := configKind(args[0])
			if err != nil {
				return err
			}
			if kind == branch.KindTrain {
				spec, out, err := branch.LoadTrainConfig(args[0])
				if err != nil {
					return configErr(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok, a train config: %v tokens at a batch of %v, %d steps, into %s\n",
					args[0], spec.Budget, spec.BatchTokens, spec.Steps(), out)
				return nil
			}
			plan, err := loadPlan(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok, a sweep config: %d branches into %s\n", args[0], len(plan.Branches), plan.Out)
			return nil
		},
	})
	var markdown bool
	keys := &cobra.Command{
		Use:   "keys [TABLE]",
		Short: "Print every config key: its table, type, default and meaning",
		Long: `keys prints the reference of train and sweep configs, every table or one: the same text as
docs/config.md, which --markdown prints.`,
		Example: `  cbs config keys branches
  cbs config keys --markdown > config.md`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if markdown {
				fmt.Fprint(cmd.OutOrStdout(), configReferenceMarkdown())
				return nil
			}
			table := ""
			if len(args) == 1 {
				table = args[0]
			}
			return printConfigKeys(cmd.OutOrStdout(), table)
		},
	}
	keys.Flags().BoolVar(&markdown, "markdown", false, "print the reference as Markdown")
	cmd.AddCommand(keys)
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

// configKind tells a train config (a [train] table) from a sweep config.
func configKind(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var top map[string]any
	if _, err := toml.Decode(string(raw), &top); err != nil {
		return "", usageErrorf("%s: %v", path, err)
	}
	_, train := top["train"]
	_, branches := top["branches"]
	switch {
	case train && branches:
		return "", usageErrorf("%s: has both [train] (a train config) and [branches] (a sweep config); keep the one it is", path)
	case train:
		return branch.KindTrain, nil
	}
	return branch.KindSweep, nil
}

// configErr gives a rejected config exit status 2.
func configErr(err error) error {
	var ce *branch.ConfigError
	if errors.As(err, &ce) {
		return &codedError{code: exitUsage, err: err}
	}
	return err
}
