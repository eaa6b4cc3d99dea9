package atomicio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// LockFile is the file of a run directory that Lock holds.
const LockFile = ".lock"

// ErrLocked is wrapped by the error Lock returns when another process holds the directory.
var ErrLocked = errors.New("in use by another cbs process")

func inUse(dir, holder string) error {
	return fmt.Errorf("%s is %w (%s): wait for it or stop it", dir, ErrLocked, holder)
}

// processStart bounds what CleanTemp may remove: a temp file created since this process began may
// belong to a write of this very process.
var processStart = time.Now()

// tempName matches the names writeFile gives its temp files: "." + base + ".tmp-" + digits.
var tempName = regexp.MustCompile(`^\..+\.tmp-[0-9]+$`)

// CleanTemp removes the temp files that writeFile left in dir when its process was killed before
// the rename: regular files named like writeFile's temp files and last modified before this
// process started. Call it only while holding dir's lock.
func CleanTemp(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clean %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !tempName.MatchString(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(processStart) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("clean %s: %w", dir, err)
		}
	}
	return nil
}
