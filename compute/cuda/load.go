package cuda

import (
	"fmt"
	"strings"

	"github.com/ebitengine/purego"
)

// symbol binds one C function to a Go function variable. Optional symbols may be absent
// (older or newer library versions); required ones fail the load, naming the symbol.
type symbol struct {
	name     string
	fn       any
	optional bool
}

// loaded is one opened library.
type loaded struct {
	lib    library
	path   string
	handle uintptr
}

// openLibrary tries lib's candidates in order and binds syms from the first that loads and has
// every required symbol. The error lists what was tried.
func openLibrary(lib library, env searchEnv, syms []symbol) (*loaded, error) {
	cands := candidates(lib, env)
	var errs []string
	for _, p := range cands {
		for _, c := range companions(lib, p, env) {
			// Best effort: the library may find its companion on its own.
			if h, err := dlopen(c, true); err == nil {
				_ = h
			}
		}
		h, err := dlopen(p, false)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if err := bind(h, syms); err != nil {
			dlclose(h)
			errs = append(errs, p+": "+err.Error())
			continue
		}
		return &loaded{lib: lib, path: p, handle: h}, nil
	}
	hint := fmt.Sprintf("set %s to its path, or CUDA_HOME or LD_LIBRARY_PATH to its folder", lib.env)
	if len(errs) == 0 {
		return nil, fmt.Errorf("%s not found (%s)", lib.name, hint)
	}
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Sprintf("and %d more", len(errs)-3))
	}
	return nil, fmt.Errorf("%s not found in %d candidates (%s): %s", lib.name, len(cands), hint, strings.Join(errs, "; "))
}

func bind(h uintptr, syms []symbol) error {
	for _, s := range syms {
		addr, err := dlsym(h, s.name)
		if err != nil {
			if s.optional {
				continue
			}
			return err
		}
		purego.RegisterFunc(s.fn, addr)
	}
	return nil
}
