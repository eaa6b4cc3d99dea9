package main

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"cbs/compute/blas"
)

var slowPathOnce sync.Once

// warnSlowPath says once, before training starts, when OpenBLAS was not found: the pure-Go BLAS
// then trains several times slower, and the only other hint would sit inside a progress line.
func warnSlowPath(w io.Writer) {
	slowPathOnce.Do(func() {
		_, info := blas.Default()
		if info.Library != "gonum" || strings.HasPrefix(info.FallbackReason, "CBS_BLAS=") {
			return
		}
		fmt.Fprintf(w, "warning: OpenBLAS was not found, so training runs on gonum's pure-Go BLAS, several times slower. On Debian: apt-get install libopenblas0 (or set CBS_OPENBLAS to the library); cbs doctor shows what was found.\n")
	})
}
