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
		l, err := openPath(lib, p, env, syms)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return l, nil
	}
	return nil, notFound(lib, len(cands), errs)
}

// openPath loads lib from one path (after its companions) and binds syms.
func openPath(lib library, p string, env searchEnv, syms []symbol) (*loaded, error) {
	for _, c := range companions(lib, p, env) {
		// Best effort: the library may find its companion on its own.
		if h, err := dlopen(c, true); err == nil {
			_ = h
		}
	}
	h, err := dlopen(p, false)
	if err != nil {
		return nil, err
	}
	if err := bind(h, syms); err != nil {
		dlclose(h)
		return nil, fmt.Errorf("%s: %v", p, err)
	}
	return &loaded{lib: lib, path: p, handle: h}, nil
}

// notFound is the error for a library none of whose n candidates worked; errs says why each failed.
func notFound(lib library, n int, errs []string) error {
	hint := fmt.Sprintf("set %s to its path, or CUDA_HOME or LD_LIBRARY_PATH to its folder", lib.env)
	if lib.name == libCUDA.name {
		hint = fmt.Sprintf("set %s to the driver's libcuda.so.1", lib.env)
	}
	if len(errs) == 0 {
		return fmt.Errorf("%s not found (%s)", lib.name, hint)
	}
	if len(errs) > 4 {
		errs = append(errs[:4], fmt.Sprintf("and %d more", len(errs)-4))
	}
	return fmt.Errorf("%s not found in %d candidates (%s): %s", lib.name, n, hint, strings.Join(errs, "; "))
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
