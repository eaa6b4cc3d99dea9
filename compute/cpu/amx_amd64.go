//go:build amd64

package cpu

import (
	"os"
	"sync"
	"syscall"
)

//go:noescape
func amxGemmBF16(cfg *byte, a *uint16, lda int, b *uint16, ldb int, c *float32, ldc int, m, n, k, accum int)

// amxTiles is the tile configuration amxGemmBF16 loads: palette 1, tiles 0 to 7 of 16 rows of
// 64 bytes (16 float32 results, or 32 bf16 operands, or 16 pairs of them).
var amxTiles = func() (cfg [64]byte) {
	cfg[0] = 1
	for t := range 8 {
		cfg[16+2*t] = 64
		cfg[48+t] = 16
	}
	return cfg
}()

// amxReady reports whether the AMX kernels may run: the CPU has AMX-TILE and AMX-BF16, the OS
// saves the tile state (XCR0 bits 17 and 18) and has granted this process the tile data
// (arch_prctl ARCH_REQ_XCOMP_PERM, which Linux requires before a first tile instruction).
// CBS_AMX=off turns them off.
func amxReady() bool { return amxState() == "" }

// AMXStatus says whether the bf16 products may run on AMX tiles, and if not, why.
func AMXStatus() string {
	if why := amxState(); why != "" {
		return "not used: " + why
	}
	return "available: bf16 attention and forward/input-gradient products on AMX tiles (CBS_AMX=off turns them off)"
}

// amxState is empty when AMX may run, else the reason it may not.
var amxState = sync.OnceValue(func() string {
	if os.Getenv("CBS_AMX") == "off" {
		return "CBS_AMX=off"
	}
	_, _, _, d := cpuidex(7, 0)
	const amxBF16, amxTile = 1 << 22, 1 << 24
	switch {
	case !hasAVX512F():
		return "the CPU has no AVX-512"
	case d&(amxBF16|amxTile) != amxBF16|amxTile:
		return "the CPU has no AMX-BF16"
	case xgetbv0()&(3<<17) != 3<<17:
		return "the OS does not save the AMX tile state"
	}
	const archReqXcompPerm, xfeatureXtiledata = 0x1023, 18
	if _, _, errno := syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, archReqXcompPerm, xfeatureXtiledata, 0); errno != 0 {
		return "the OS refused the tile data (arch_prctl ARCH_REQ_XCOMP_PERM: " + errno.Error() + ")"
	}
	return ""
})

// amxGemm is amxGemmBF16 on slices, strides in elements (ldb: of a row of pairs, 2n when dense).
func amxGemm(a []uint16, lda int, b []uint16, ldb int, c []float32, ldc, m, n, k int, accum bool) {
	acc := 0
	if accum {
		acc = 1
	}
	_ = a[(m-1)*lda+k-1]
	_ = b[(k/2-1)*ldb+2*n-1]
	_ = c[(m-1)*ldc+n-1]
	amxGemmBF16(&amxTiles[0], &a[0], 2*lda, &b[0], 2*ldb, &c[0], 4*ldc, m, n, k, acc)
}
