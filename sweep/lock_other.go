//go:build !unix

package sweep

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// lock creates the lock file exclusively; without flock a crashed process leaves it behind,
// and the message says how to clear it.
func lock(out string) (io.Closer, error) {
	path := filepath.Join(out, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s is in use by another cbs process (remove %s if none is running)", out, path)
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
