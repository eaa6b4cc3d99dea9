//go:build unix

package atomicio

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Lock takes an exclusive lock on the run directory dir for the life of the process, so two cbs
// processes (two trains, two sweeps, or a sweep and a train of one of its branches) never write
// one directory. The kernel releases it when the process ends, however it ends. Once the lock is
// held no other writer can be at work in dir, so temp files a killed writer left there are
// removed.
func Lock(dir string) (io.Closer, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		return nil, inUse(dir, strings.TrimSpace(string(holder)))
	}
	f.Truncate(0)
	fmt.Fprintf(f, "pid %d\n", os.Getpid())
	if err := CleanTemp(dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Held reports whether some process holds the lock on dir, without taking it or touching
// anything: a branch whose state says running but whose lock nobody holds was left by a process
// that is gone.
func Held(dir string) bool {
	f, err := os.Open(filepath.Join(dir, LockFile))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
