// Package atomicio writes files and directories so that a crash leaves either the old content or
// the new one, never a mixture.
//
// A file is written to a temporary name in its destination directory, synced, renamed over the
// destination and the directory synced: rename within one file system is atomic on POSIX, and the
// syncs make the result survive power loss, not only a killed process.
//
// A checkpoint directory cannot be renamed over a non-empty one, so CommitDir moves the previous
// directory aside first (finalDir + ".old"), renames the new one into place and only then deletes
// the old one. At every instant one complete directory exists under finalDir or finalDir + ".old";
// CleanStale, called before the next write, brings a directory left by a crash back to a single
// complete finalDir.
package atomicio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Suffixes of the sibling directories CommitDir and TempDir use next to finalDir.
const (
	oldSuffix = ".old"
	tmpSuffix = ".tmp-"
)

// crashPoint lets tests stop CommitDir between two steps, as a crash would. It returns a non-nil
// error to stop.
var crashPoint = func(step string) error { return nil }

// WriteFile writes data to path atomically, with permissions perm (not filtered by the umask).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return writeFile(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFileFunc writes path atomically with what fn writes to w, with permissions 0644. w is
// buffered. If fn fails, path is left untouched and fn's error is returned.
func WriteFileFunc(path string, fn func(w io.Writer) error) error {
	return writeFile(path, 0o644, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		if err := fn(bw); err != nil {
			return err
		}
		return bw.Flush()
	})
}

func writeFile(path string, perm os.FileMode, fn func(w io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = fn(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The rename is done: a failed directory sync no longer means the file is absent, so it is
	// reported without removing anything.
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// syncDir makes the entries of dir (creations, renames, removals) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// TempDir creates an empty directory beside finalDir for CommitDir to rename into place. Its name
// starts with finalDir + ".tmp-", which CleanStale recognises as debris. The parent of finalDir is
// created if needed.
func TempDir(finalDir string) (string, error) {
	finalDir = filepath.Clean(finalDir)
	if err := os.MkdirAll(filepath.Dir(finalDir), 0o755); err != nil {
		return "", err
	}
	// os.MkdirTemp creates 0700 whatever the umask, and the directory becomes finalDir: made with
	// os.Mkdir, it gets 0755 less the umask like every other directory of a run.
	prefix := filepath.Join(filepath.Dir(finalDir), filepath.Base(finalDir)+tmpSuffix)
	for try := 0; ; try++ {
		dir := prefix + strconv.FormatUint(uint64(rand.Uint32()), 10)
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, fs.ErrExist) || try == 100 {
			return "", err
		}
	}
}

// CommitDir makes tmpDir, completely written, become finalDir. Both must be in the same file
// system (TempDir guarantees it). The rename of tmpDir is the commit point: a crash before it
// leaves the previous finalDir (possibly as finalDir + ".old"), a crash after it the new one, and
// CleanStale tidies either case.
func CommitDir(tmpDir, finalDir string) error {
	finalDir = filepath.Clean(finalDir)
	old := finalDir + oldSuffix
	parent := filepath.Dir(finalDir)
	if err := syncTree(tmpDir); err != nil {
		return fmt.Errorf("commit %s: %w", finalDir, err)
	}
	if err := crashPoint("synced"); err != nil {
		return err
	}
	// An .old left by an earlier crash is not needed once finalDir exists; if finalDir is
	// missing, the .old is the last complete state and must not be deleted here.
	_, err := os.Lstat(finalDir)
	switch {
	case err == nil:
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("commit %s: %w", finalDir, err)
		}
		if err := os.Rename(finalDir, old); err != nil {
			return fmt.Errorf("commit %s: move previous aside: %w", finalDir, err)
		}
		if err := syncDir(parent); err != nil {
			return fmt.Errorf("commit %s: %w", finalDir, err)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return fmt.Errorf("commit %s: %w", finalDir, err)
	}
	if err := crashPoint("moved-aside"); err != nil {
		return err
	}
	if err := os.Rename(tmpDir, finalDir); err != nil {
		return fmt.Errorf("commit %s: %w", finalDir, err)
	}
	if err := syncDir(parent); err != nil {
		return fmt.Errorf("commit %s: %w", finalDir, err)
	}
	if err := crashPoint("renamed"); err != nil {
		return err
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("commit %s: remove previous: %w", finalDir, err)
	}
	return nil
}

// syncTree syncs every regular file and directory under root, so that the rename that commits
// root never makes visible a directory whose contents could still be lost.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// CleanStale repairs what a crash in CommitDir may have left beside finalDir: if finalDir is
// missing and finalDir + ".old" exists, the old one is restored; then the .old directory and every
// finalDir + ".tmp-*" directory are removed. Call it before writing a new checkpoint, while no
// other process is writing to finalDir.
func CleanStale(finalDir string) error {
	finalDir = filepath.Clean(finalDir)
	old := finalDir + oldSuffix
	if _, err := os.Lstat(finalDir); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Lstat(old); err == nil {
			if err := os.Rename(old, finalDir); err != nil {
				return fmt.Errorf("restore %s: %w", old, err)
			}
			if err := syncDir(filepath.Dir(finalDir)); err != nil {
				return fmt.Errorf("restore %s: %w", old, err)
			}
		}
	} else if err != nil {
		return fmt.Errorf("clean %s: %w", finalDir, err)
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("clean %s: %w", finalDir, err)
	}
	parent := filepath.Dir(finalDir)
	entries, err := os.ReadDir(parent)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("clean %s: %w", finalDir, err)
	}
	prefix := filepath.Base(finalDir) + tmpSuffix
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			if err := os.RemoveAll(filepath.Join(parent, e.Name())); err != nil {
				return fmt.Errorf("clean %s: %w", finalDir, err)
			}
		}
	}
	return nil
}
