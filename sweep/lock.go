package sweep

import (
	"io"

	"cbs/internal/atomicio"
)

// lock is the lock every run directory takes, a sweep's or a branch's: one message and one
// mechanism, so a sweep and a `cbs train` never write one directory at once.
func lock(out string) (io.Closer, error) { return atomicio.Lock(out) }
