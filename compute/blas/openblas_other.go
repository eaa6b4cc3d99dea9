//go:build !((linux || darwin || freebsd) && (amd64 || arm64))

package blas

import (
	"fmt"
	"runtime"
)

// LoadOpenBLAS always fails here: purego cannot load libraries without cgo on
// this platform, so gonum is used.
func LoadOpenBLAS(path string) (Impl, Info, error) {
	return nil, Info{}, fmt.Errorf("openblas loading not supported on %s/%s", runtime.GOOS, runtime.GOARCH)
}
