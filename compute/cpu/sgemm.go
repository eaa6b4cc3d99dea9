package cpu

import (
	"math"
	"sync"
	"unsafe"
)

// cbs's own fp32 GEMM (where the CPU has AVX-512): C = alpha op(A) op(B) + beta C with every
// element of C one chain of fused multiply-adds over the inner dimension in order, started from
// zero (or, when alpha is 1, from beta C), then times alpha. The order of the terms does not
// depend on how C is cut into tiles nor on how K is cut into chunks (a chunk continues the
// chain from the sums the previous one stored, exactly), so the tiles may be sized by the
// thread count and the bits still depend on the shape alone. B is laid out once per product
// (once per pass over K for a weight gradient) and shared by the tiles, where a library called
// per fixed block lays it out again in every call (docs/performance.md, "cbs's own fp32 GEMM",
// has the measurements).

const (
	// sgemmMR x sgemmNR is the kernel's tile of C: 16 accumulators of 16 lanes.
	sgemmMR = 8
	sgemmNR = 32
	// sgemmKC is the inner dimension of one pass over a tile: the tiles of a task's rows take
	// a 512 x 32 slice of B (64 KiB) in turn. sgemmRows and sgemmCols bound a task's block of
	// C, whose A (sgemmRows x sgemmKC, 256 KiB) stays in L2 while the block's slices of B pass.
	// Chosen on the d512 products (BenchmarkSGEMM) against blocks of 256 rows and 256 or 384
	// deep.
	sgemmKC   = 512
	sgemmRows = 128
	sgemmCols = 1024
)

// sgemmFMA computes C = alpha op(A) op(B) + beta C. run runs n tasks (on the goroutines or in
// turn); tasks is how many the caller would like at least, to keep its threads busy.
func sgemmFMA(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cm []float32, ldc int, run func(n int, f func(i int)), tasks int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || (alpha != 1 && beta != 0) {
		sgemmAlphaBeta(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc, run, tasks)
		return
	}
	panels := chunks(n, sgemmNR)
	// Smaller blocks where there are too few for the threads: a weight gradient's C can be
	// a single 64 x 64 block, its work all in K.
	rows, cols := sgemmRows, sgemmCols
	for chunks(m, rows)*chunks(n, cols) < tasks {
		if rows > sgemmMR {
			rows /= 2
		} else if cols > sgemmNR {
			cols /= 2
		} else {
			break
		}
	}
	rt, ct := chunks(m, rows), chunks(n, cols)
	const panelsPerTask = 4
	// A C smaller than B (a weight gradient: K is the tokens) is computed one pass over K at
	// a time, all blocks, with B laid out a pass at a time into a buffer that stays in cache:
	// laid out whole, B went to memory and came back (laying it out took 1.5x longer in the
	// default MDM step). Otherwise B is laid out whole and each block makes all its passes,
	// its C staying in cache.
	pass := k
	if m < k {
		pass = min(k, sgemmKC)
	}
	bp := getFrom(&packsB, panels*sgemmNR*pass)
	defer packsB.Put(bp)
	for k0 := 0; k0 < k; k0 += pass {
		kn := min(pass, k-k0)
		bk := b[k0:]
		if !transB {
			bk = b[k0*ldb:]
		}
		run(chunks(panels, panelsPerTask), func(t int) {
			lo, hi := span(t, panelsPerTask, panels)
			packB(bp.buf[lo*sgemmNR*kn:hi*sgemmNR*kn], transB, bk, ldb, kn, lo*sgemmNR, min(hi*sgemmNR, n))
		})
		run(rt*ct, func(t int) {
			i0, i1 := span(t/ct, rows, m)
			j0, j1 := span(t%ct, cols, n)
			sgemmPasses(transA, i0, i1, j0, j1, k0, k0+kn, k, alpha, a, lda, bp.buf, kn, beta, cm, ldc)
		})
	}
}

// sgemmSerial is sgemmFMA on the calling goroutine, without its closures (attention calls it
// thousands of times a step).
func sgemmSerial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cm []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || (alpha != 1 && beta != 0) {
		sgemmAlphaBeta(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc, serial, 1)
		return
	}
	bp := getFrom(&packsB, chunks(n, sgemmNR)*sgemmNR*k)
	defer packsB.Put(bp)
	packB(bp.buf, transB, b, ldb, k, 0, n)
	for i0 := 0; i0 < m; i0 += sgemmRows {
		sgemmBlock(transA, i0, min(i0+sgemmRows, m), 0, n, k, alpha, a, lda, bp.buf, k, beta, cm, ldc)
	}
}

// packsA and packsB hold the packed operands' buffers, apart from other scratch so that
// each keeps the size its products need rather than being swapped for smaller ones.
var packsA, packsB = sync.Pool{New: func() any { return new(scratch) }}, sync.Pool{New: func() any { return new(scratch) }}

// sgemmBlock computes rows i0..i1 and columns j0..j1 of C from B packed by packB in panels of
// pk >= k rows, of which the product uses the first k (j0 a multiple of sgemmNR); alpha is 1
// or beta is 0.
func sgemmBlock(transA bool, i0, i1, j0, j1, k int, alpha float32, a []float32, lda int, bp []float32, pk int, beta float32, cm []float32, ldc int) {
	sgemmPasses(transA, i0, i1, j0, j1, 0, k, k, alpha, a, lda, bp, pk, beta, cm, ldc)
}

// sgemmPasses is sgemmBlock on the inner indices kLo..kHi of k: it continues the chains C holds
// when kLo > 0; bp holds rows kLo.. of B.
func sgemmPasses(transA bool, i0, i1, j0, j1, kLo, kHi, k int, alpha float32, a []float32, lda int, bp []float32, pk int, beta float32, cm []float32, ldc int) {
	if kLo == 0 && beta != 0 && beta != 1 {
		for i := i0; i < i1; i++ {
			row := cm[i*ldc+j0 : i*ldc+j1]
			for j := range row {
				row[j] *= beta
			}
		}
	}
	mr := chunks(i1-i0, sgemmMR)
	ap := getFrom(&packsA, max(mr, sgemmRows/sgemmMR)*sgemmMR*sgemmKC)
	defer packsA.Put(ap)
	var edge [sgemmMR * sgemmNR]float32
	for k0 := kLo; k0 < kHi; k0 += sgemmKC {
		kc := min(sgemmKC, kHi-k0)
		// A transposed is packed; A not transposed is read in place, 8 rows at a time, but
		// for a last group of fewer rows, packed with zeros.
		if transA {
			packA(ap.buf[:mr*sgemmMR*kc], transA, a, lda, i0, i1, k0, kc)
		} else if r0 := i0 + (mr-1)*sgemmMR; r0+sgemmMR > i1 {
			packA(ap.buf[:sgemmMR*kc], false, a, lda, r0, i1, k0, kc)
		}
		flags := 0
		if k0 > 0 || beta != 0 {
			flags |= sgemmLoad
		}
		if k0+kc == k && alpha != 1 {
			flags |= sgemmScale
		}
		for c0 := j0; c0 < j1; c0 += sgemmNR {
			panel := bp[c0*pk+(k0-kLo)*sgemmNR:]
			w := min(sgemmNR, j1-c0)
			// The slice of B the block takes next (the next panel's in this pass, else the
			// first panel's in the next pass) comes from memory while this panel's tiles run,
			// a sixteenth of it per 8-row tile (2 kc floats: a line every 4 steps, the kernel
			// moving pf on by as much per tile), rather than at the pace of the next panel's
			// first tile (docs/performance.md).
			next := -1
			if c0+sgemmNR < j1 {
				next = (c0+sgemmNR)*pk + (k0-kLo)*sgemmNR
			} else if k0+kc < kHi {
				next = j0*pk + (k0+kc-kLo)*sgemmNR
			}
			pf := uintptr(unsafe.Pointer(&panel[0]))
			if next >= 0 {
				pf = uintptr(unsafe.Pointer(&bp[next]))
			}
			// The last panel of a narrow C (heads of 16) takes the half-width kernel.
			cols := sgemmNR
			if w <= sgemmNR/2 {
				cols = sgemmNR / 2
			}
			// The whole tiles run down the panel in one call; the last rows of a C whose
			// height is not a multiple of 8, or a panel narrower than its kernel, run one
			// tile at a time on a full tile of scratch.
			full := 0
			if w == cols {
				full = (i1 - i0) / sgemmMR
			}
			if full > 0 {
				if transA {
					sgemmKernel(kc, ap.buf, sgemmMR, panel, cm[i0*ldc+c0:], ldc, alpha, flags, cols, pf, full)
				} else {
					sgemmKernelRows(kc, a[i0*lda+k0:], lda, panel, cm[i0*ldc+c0:], ldc, alpha, flags, cols, pf, full)
				}
			}
			for p := full; p < mr; p++ {
				r0 := i0 + p*sgemmMR
				h := min(sgemmMR, i1-r0)
				pf := pf + uintptr(p*2*kc*4) // where the kernel would have moved it
				if flags&sgemmLoad != 0 {
					for r := range h {
						copy(edge[r*sgemmNR:r*sgemmNR+w], cm[(r0+r)*ldc+c0:])
					}
				}
				switch {
				case transA:
					sgemmKernel(kc, ap.buf[p*sgemmMR*kc:], sgemmMR, panel, edge[:], sgemmNR, alpha, flags, cols, pf, 1)
				case h == sgemmMR:
					sgemmKernelRows(kc, a[r0*lda+k0:], lda, panel, edge[:], sgemmNR, alpha, flags, cols, pf, 1)
				default:
					sgemmKernel(kc, ap.buf, sgemmMR, panel, edge[:], sgemmNR, alpha, flags, cols, pf, 1)
				}
				for r := range h {
					copy(cm[(r0+r)*ldc+c0:(r0+r)*ldc+c0+w], edge[r*sgemmNR:])
				}
			}
		}
	}
}

// The kernel's flags: continue the chains from C; multiply by alpha before storing.
const (
	sgemmLoad  = 1
	sgemmScale = 2
)

// packB lays out columns c0..c1 of op(B) (k x n, c0 a multiple of sgemmNR) in panels of
// sgemmNR columns, each as k rows of sgemmNR (zeros past c1), panel by panel into dst.
func packB(dst []float32, transB bool, b []float32, ldb, k, c0, c1 int) {
	panels := chunks(c1-c0, sgemmNR)
	last := (panels - 1) * sgemmNR * k
	if (c1-c0)%sgemmNR != 0 {
		clear(dst[last : last+sgemmNR*k])
	}
	if transB {
		for j := range panels {
			lo := c0 + j*sgemmNR
			transpose(words32(dst[j*sgemmNR*k:(j+1)*sgemmNR*k]), sgemmNR, words32(b[lo*ldb:]), ldb, min(sgemmNR, c1-lo), k)
		}
		return
	}
	// Row k of B holds every panel's values at k: read it once, in order, into every panel.
	full := (c1 - c0) / sgemmNR
	scatterRows(dst, b[c0:], k, full, sgemmNR, ldb, sgemmNR*k)
	if full < panels {
		for kk := range k {
			copy(dst[last+kk*sgemmNR:], b[kk*ldb+c0+full*sgemmNR:kk*ldb+c1])
		}
	}
}

// packA lays out rows r0..r1 and columns k0..k0+kc of op(A) in groups of sgemmMR rows, each
// as kc runs of sgemmMR values (zeros past r1).
func packA(dst []float32, transA bool, a []float32, lda, r0, r1, k0, kc int) {
	groups := chunks(r1-r0, sgemmMR)
	if h := (r1 - r0) % sgemmMR; h != 0 {
		clear(dst[(groups-1)*sgemmMR*kc : groups*sgemmMR*kc])
	}
	if transA {
		// Row k of A^T holds the rows' values at k: read it once, in order, into every group.
		full := (r1 - r0) / sgemmMR
		scatterRows(dst, a[k0*lda+r0:], kc, full, sgemmMR, lda, sgemmMR*kc)
		if full < groups {
			for kk := range kc {
				o := (k0+kk)*lda + r0 + full*sgemmMR
				copy(dst[full*sgemmMR*kc+kk*sgemmMR:], a[o:(k0+kk)*lda+r1])
			}
		}
		return
	}
	for g := range groups {
		lo := r0 + g*sgemmMR
		h := min(sgemmMR, r1-lo)
		transpose(words32(dst[g*sgemmMR*kc:(g+1)*sgemmMR*kc]), sgemmMR, words32(a[lo*lda+k0:]), lda, h, kc)
	}
}

// scatterRowsGo is scatterRows in Go.
func scatterRowsGo(dst, src []float32, rows, blocks, width, lds, bsd int) {
	for r := range rows {
		for b := range blocks {
			copy(dst[b*bsd+r*width:b*bsd+(r+1)*width], src[r*lds+b*width:])
		}
	}
}

// sgemmAlphaBeta is the general case the tiles do not take (alpha != 1 with beta != 0, or an
// empty inner dimension): alpha op(A) op(B) into scratch, then added to beta C.
func sgemmAlphaBeta(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cm []float32, ldc int, run func(n int, f func(i int)), tasks int) {
	t := getScratch(m * n)
	defer putScratch(t)
	if k == 0 {
		clear(t.buf)
	} else {
		sgemmFMA(transA, transB, m, n, k, alpha, a, lda, b, ldb, 0, t.buf, n, run, tasks)
	}
	run(chunks(m, rowBlock), func(i int) {
		lo, hi := span(i, rowBlock, m)
		for r := lo; r < hi; r++ {
			row := cm[r*ldc : r*ldc+n]
			for j, v := range t.buf[r*n : (r+1)*n] {
				if beta == 0 {
					row[j] = v
				} else {
					row[j] = v + float32(beta*row[j]) // rounded apart: no fused step
				}
			}
		}
	})
}

// sgemmKernelGo is the kernels in Go, for CPUs without the assembly's: the same chains, each
// step a correctly rounded fused multiply-add (fma32), so the bits are the assembly's. Row r
// of A at step k is a[r*ar+k*ak]; the tile is the panel's first cols columns (16 or 32).
func sgemmKernelGo(kc int, a []float32, ar, ak int, b, c []float32, ldc int, alpha float32, flags, cols int) {
	var acc [sgemmMR * sgemmNR]float32
	if flags&sgemmLoad != 0 {
		for r := range sgemmMR {
			copy(acc[r*sgemmNR:r*sgemmNR+cols], c[r*ldc:])
		}
	}
	for kk := range kc {
		for r := range sgemmMR {
			x := a[r*ar+kk*ak]
			for j, y := range b[kk*sgemmNR : kk*sgemmNR+cols] {
				acc[r*sgemmNR+j] = fma32(x, y, acc[r*sgemmNR+j])
			}
		}
	}
	for r := range sgemmMR {
		row := c[r*ldc : r*ldc+cols]
		for j := range row {
			v := acc[r*sgemmNR+j]
			if flags&sgemmScale != 0 {
				v *= alpha
			}
			row[j] = v
		}
	}
}

// sgemmKernelsGo runs sgemmKernelGo on tiles tiles down a panel, each tile's A tileA floats
// after the previous one's and its C 8 rows below.
func sgemmKernelsGo(kc int, a []float32, ar, ak, tileA int, b, c []float32, ldc int, alpha float32, flags, cols, tiles int) {
	for t := range tiles {
		sgemmKernelGo(kc, a[t*tileA:], ar, ak, b, c[t*sgemmMR*ldc:], ldc, alpha, flags, cols)
	}
}

// fma32 is x*y+z rounded once to float32. The product is exact in float64; the sum is rounded
// to odd in float64 (the nearest value, moved one unit to the odd neighbour when it is inexact
// and even), and rounding that to float32 then rounds the exact sum correctly, since float64
// carries more than float32's 24 bits plus two.
func fma32(x, y, z float32) float32 {
	p := float64(float64(x) * float64(y))
	zz := float64(z)
	s := float64(p + zz)
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return float32(s)
	}
	bp := float64(s - zz)
	e := float64(p-bp) + float64(zz-float64(s-bp))
	if bits := math.Float64bits(s); e != 0 && bits&1 == 0 {
		if (e > 0) == (s > 0) {
			bits++
		} else {
			bits--
		}
		s = math.Float64frombits(bits)
	}
	return float32(s)
}
