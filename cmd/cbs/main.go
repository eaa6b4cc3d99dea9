// Command cbs runs critical-batch-size studies on language models: it trains branches that
// differ only in global batch size, fits where returns diminish, and draws the figures.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"

	"github.com/spf13/cobra"

	_ "cbs/data/bpe" // registers the gpt2 tokenizer
)

// Exit codes, shared by every verb.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2 // bad flags or a rejected config
	exitSomeFailed  = 3 // a sweep finished with failed or diverged branches
	exitInterrupted = 130
)

// codedError carries an exit code through cobra's error return.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// usageErrorf reports bad input: the message names the key or file, the value and what is allowed.
func usageErrorf(format string, args ...any) error {
	return &codedError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// verbs holds a constructor per verb; each verb's file adds its own in an init function.
var verbs []func() *cobra.Command

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "cbs",
		Short: "Critical-batch-size studies for language models",
		Long: `cbs forks training branches that differ only in global batch size, trains them on CPU or GPU,
and fits where a larger batch stops paying.

Exit status: 0 ok, 1 error, 2 bad usage or config, 3 some branches failed, 130 interrupted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var cmds []*cobra.Command
	for _, v := range verbs {
		cmds = append(cmds, v())
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name() < cmds[j].Name() })
	root.AddCommand(cmds...)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &codedError{code: exitUsage, err: err}
	})
	return root
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns its exit status.
func run(args []string, stdout, stderr io.Writer) (code int) {
	// An unrecovered panic exits with status 2, which reads as bad usage: a panic is a runtime
	// error, status 1.
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(stderr, "cbs: panic: %v\n%s", p, debug.Stack())
			code = exitError
		}
	}()
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "cbs:", err)
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitError
}
