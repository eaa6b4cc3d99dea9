//go:build !(linux || freebsd || darwin)

package cuda

import (
	"fmt"
	"runtime"
)

func dlopen(path string, global bool) (uintptr, error) {
	return 0, fmt.Errorf("dlopen %s: loading libraries is not supported on %s", path, runtime.GOOS)
}

func dlsym(h uintptr, name string) (uintptr, error) { return 0, fmt.Errorf("missing symbol %s", name) }

func dlclose(h uintptr) {}
