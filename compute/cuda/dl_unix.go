//go:build linux || freebsd || darwin

package cuda

import (
	"fmt"

	"github.com/ebitengine/purego"
)

func dlopen(path string, global bool) (uintptr, error) {
	flags := purego.RTLD_NOW | purego.RTLD_LOCAL
	if global {
		flags = purego.RTLD_NOW | purego.RTLD_GLOBAL
	}
	h, err := purego.Dlopen(path, flags)
	if err != nil {
		return 0, fmt.Errorf("dlopen %s: %v", path, err)
	}
	return h, nil
}

func dlsym(h uintptr, name string) (uintptr, error) {
	addr, err := purego.Dlsym(h, name)
	if err != nil || addr == 0 {
		return 0, fmt.Errorf("missing symbol %s", name)
	}
	return addr, nil
}

func dlclose(h uintptr) { purego.Dlclose(h) }
