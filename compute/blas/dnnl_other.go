//go:build !((linux || darwin || freebsd) && (amd64 || arm64))

package blas

import (
	"fmt"
	"runtime"
)

// DNNL is oneDNN's GEMMs; on this platform purego cannot load libraries without cgo, so
// LoadDNNL always fails and no DNNL exists.
type DNNL struct{}

// LoadDNNL always fails here.
func LoadDNNL(path string) (*DNNL, error) {
	return nil, fmt.Errorf("onednn loading not supported on %s/%s", runtime.GOOS, runtime.GOARCH)
}

func (d *DNNL) Info() DNNLInfo { return DNNLInfo{} }
func (d *DNNL) SetThreads(int) {}
func (d *DNNL) Threads() int   { return 0 }
func (d *DNNL) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	panic("blas: no onednn")
}
func (d *DNNL) GemmBF16(transA, transB bool, m, n, k int, alpha float32, a []uint16, lda int, b []uint16, ldb int, beta float32, c []float32, ldc int) {
	panic("blas: no onednn")
}
