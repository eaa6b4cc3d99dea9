//go:build !unix

package atomicio

import (
	"io"
	"os"
	"path/filepath"
)

// Lock creates the lock file exclusively; without flock a crashed process leaves it behind,
// and the message says how to clear it.
func Lock(dir string) (io.Closer, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return nil, inUse(dir, "remove "+path+" if none is running")
	}
	if err := CleanTemp(dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return removeOnClose{f, path}, nil
}

type removeOnClose struct {
	*os.File
	path string
}

func (r removeOnClose) Close() error {
	r.File.Close()
	return os.Remove(r.path)
}

// Held reports whether the lock file of dir exists: without flock a lock left by a crashed
// process cannot be told from a live one.
func Held(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, LockFile))
	return err == nil
}
