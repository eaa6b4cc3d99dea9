package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/spf13/cobra"
)

func init() { verbs = append(verbs, newVersionCmd) }

// codeVersion names the commit cbs was built from, with "+dirty" when the tree had changes. It
// is read once, before the command writes anything: a study that rewrites its tracked results
// must not find the tree it started from dirty by its own doing.
var codeVersion = sync.OnceValue(readCodeVersion)

func readCodeVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return gitVersion()
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}

// gitVersion asks git about the working directory: `go run` and plain builds outside a VCS-aware
// build carry no revision, and results need one.
func gitVersion() string {
	// The last commit that changed anything outside results/: committing a study's results then
	// leaves the version the results name unchanged, and a rerun at the same code rewrites none.
	out, err := exec.Command("git", "log", "-1", "--format=%H", "--", ".", ":!results").Output()
	if err != nil || len(bytes.TrimSpace(out)) < 12 {
		return "devel"
	}
	rev := strings.TrimSpace(string(out))[:12]
	// Outputs under results/ say nothing about the code that makes them.
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		rev += "+dirty"
	}
	return rev
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the code version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "cbs %s %s %s/%s\n", codeVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
