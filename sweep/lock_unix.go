//go:build unix

package sweep

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// lock takes an exclusive lock on the run directory for the life of the process, so two sweeps
// never write one directory. The kernel releases it when the process ends, however it ends.
func lock(out string) (io.Closer, error) {
	f, err := os.OpenFile(filepath.Join(out, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(filepath.Join(out, lockFile))
		f.Close()
		return nil, fmt.Errorf("%s is in use by another cbs process (%s): wait for it or stop it", out, strings.TrimSpace(string(holder)))
	}
	f.Truncate(0)
	fmt.Fprintf(f, "pid %d\n", os.Getpid())
	return f, nil
}
