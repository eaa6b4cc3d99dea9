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
		fmt.Fprint(w, slowPathWarning(info))
	})
}

// slowPathWarning is the warning for the BLAS library found, or "" when there is nothing to
// warn about: OpenBLAS was loaded, or the pure-Go BLAS was chosen on purpose (CBS_BLAS=gonum).
//
// The slowdown is measured with cbs bench on 2 cores, alternating runs with CBS_BLAS=gonum and
// with OpenBLAS: 3.5x for the quickstart's model (hidden size 64, 2 layers, 32 sequences of 64
// tokens), 7x for bench's default model (hidden size 256, 4 layers, 16 sequences of 256); the
// larger the matrices, the larger the gap.
func slowPathWarning(info blas.Info) string {
	if info.Library != "gonum" || strings.HasPrefix(info.FallbackReason, "CBS_BLAS=") {
		return ""
	}
	return "warning: OpenBLAS was not found, so training runs on gonum's pure-Go BLAS, about 3 to 7 times\n" +
		"  slower (3.5x for the quickstart's model, 7x at hidden size 256, measured with cbs bench).\n" +
		"  On Debian or Ubuntu, as root: apt-get install libopenblas0 (or set CBS_OPENBLAS to the\n" +
		"  library's path); cbs doctor shows what was found and why.\n"
}
