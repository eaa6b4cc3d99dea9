package cpu

import (
	"fmt"
	"sync"

	"cbs/compute"
	"cbs/compute/blas"
)

var (
	_ compute.BF16Gemm    = (*CPU)(nil)
	_ compute.BF16Outputs = (*CPU)(nil)
)

// SetPrecision selects the operands of the products Gemm runs: compute.PrecisionFP32 (the
// default: float32 operands, OpenBLAS's sgemm) or compute.PrecisionBF16 (both operands rounded
// to bfloat16, products accumulated in fp32 by oneDNN's gemm_bf16bf16f32). bf16 needs oneDNN,
// loaded here on first use; without it SetPrecision returns an error and leaves the precision as
// it was. At bf16 attention's products take bf16 operands too (attentionBF16), as under
// autocast; every other operation stays fp32 at either precision. Set it before models run on
// the backend, not while they do.
func (c *CPU) SetPrecision(p compute.Precision) error {
	switch p {
	case compute.PrecisionFP32:
	case compute.PrecisionBF16:
		d, info := blas.DefaultDNNL()
		if d == nil {
			return fmt.Errorf("bf16 matrix products need oneDNN (Debian: apt-get install libdnnl2): %s", info.Unavailable)
		}
		c.dnnl = d
		c.amx = amxReady()
	default:
		return fmt.Errorf("cpu: unknown precision %v", p)
	}
	c.prec = p
	return nil
}

// GemmPrecision is the precision Gemm runs at.
func (c *CPU) GemmPrecision() compute.Precision { return c.prec }

// DNNL describes the oneDNN library the bf16 products run on; Library is empty until
// SetPrecision(compute.PrecisionBF16) has loaded it.
func (c *CPU) DNNL() blas.DNNLInfo {
	if c.dnnl == nil {
		return blas.DNNLInfo{}
	}
	return c.dnnl.Info()
}

// bf16Block is the number of elements per task of ToBF16.
const bf16Block = 1 << 15

// ToBF16 rounds src into dst with compute.BF16, in fixed blocks over the goroutines.
func (c *CPU) ToBF16(dst []uint16, src []float32) {
	n := len(src)
	dst = dst[:n]
	c.pool.run(chunks(n, bf16Block), func(i int) {
		lo, hi := span(i, bf16Block, n)
		roundBF16(dst[lo:hi], src[lo:hi])
	})
}

// roundBF16 is compute.RoundBF16, 16 elements at a time with AVX2 where the CPU has it.
func roundBF16(dst []uint16, src []float32) {
	n := len(src)
	dst = dst[:n]
	i := 0
	if useSIMD && n >= 16 {
		i = n &^ 15
		toBF16AVX2(&dst[0], &src[0], i)
	}
	for ; i < n; i++ {
		dst[i] = compute.BF16(src[i])
	}
}

// mulRoundBF16 sets dst = BF16(src s): the bits of scale followed by roundBF16.
func mulRoundBF16(dst []uint16, src []float32, s float32) {
	n := len(src)
	dst = dst[:n]
	i := 0
	if useSIMD && n >= 16 {
		i = n &^ 15
		mulRoundBF16AVX2(&dst[0], &src[0], i, s)
	}
	for ; i < n; i++ {
		dst[i] = compute.BF16(src[i] * s)
	}
}

// softmaxBwdBF16 sets dst = BF16(pr (dr - dot) scale): the bits of softmaxBwd followed by
// roundBF16, without writing dr.
func softmaxBwdBF16(dst []uint16, dr, pr []float32, dot, scale float32) {
	n := len(dr)
	dst, pr = dst[:n], pr[:n]
	i := 0
	if useSIMD && n >= 16 {
		i = n &^ 15
		softmaxBwdBF16AVX2(&dst[0], &dr[0], &pr[0], i, dot, scale)
	}
	for ; i < n; i++ {
		dst[i] = compute.BF16(pr[i] * (dr[i] - dot) * scale)
	}
}

// GemmBF16 computes C = alpha op(A) op(B) + beta C from bfloat16 operands with fp32
// accumulation: on AMX tiles where amxProduct allows (amx.go), else on oneDNN, split into the
// same fixed blocks of C as Gemm (or ranges of K, as Gemm does), each block one single-threaded
// call. Either way the results do not depend on the thread count. It needs oneDNN, which
// SetPrecision(compute.PrecisionBF16) loads.
func (c *CPU) GemmBF16(transA, transB bool, m, n, k int, alpha float32, a []uint16, lda int, b []uint16, ldb int, beta float32, cm []float32, ldc int) {
	if c.dnnl == nil {
		panic("cpu: GemmBF16 before SetPrecision(compute.PrecisionBF16) loaded oneDNN")
	}
	if k == 0 {
		// Only C = beta C is left; the library call checks C and applies beta.
		c.dnnl.GemmBF16(transA, transB, m, n, 0, alpha, nil, max(1, lda), nil, max(1, ldb), beta, cm, ldc)
		return
	}
	if parts := kParts(m, n, k); parts > 1 {
		c.splitK(parts, transA, transB, m, n, k, lda, ldb, beta, cm, ldc, func(ao, bo, kn int, out []float32) {
			c.dnnl.GemmBF16(transA, transB, m, n, kn, alpha, a[ao:], lda, b[bo:], ldb, 0, out, n)
		})
		return
	}
	if c.amxProduct(transA, m, n, k, alpha, beta) {
		c.gemmAMX(transB, m, n, k, a, lda, b, ldb, beta == 1, cm, ldc)
		return
	}
	c.split(transA, transB, m, n, lda, ldb, ldc, func(ao, bo, co, rows, cols int) {
		c.dnnl.GemmBF16(transA, transB, rows, cols, k, alpha, a[ao:], lda, b[bo:], ldb, beta, cm[co:], ldc)
	})
}

// gemmRounded is Gemm at bf16: both operands rounded into scratch buffers, then GemmBF16.
func (c *CPU) gemmRounded(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cm []float32, ldc int) {
	na, nb := extent(transA, m, k, lda, len(a)), extent(transB, k, n, ldb, len(b))
	sa, sb := getScratch16(na), getScratch16(nb)
	defer putScratch16(sa)
	defer putScratch16(sb)
	c.ToBF16(sa.buf, a[:na])
	c.ToBF16(sb.buf, b[:nb])
	c.GemmBF16(transA, transB, m, n, k, alpha, sa.buf, lda, sb.buf, ldb, beta, cm, ldc)
}

// extent is how many elements an operand of rows x cols after op(), row stride ld, spans in
// its slice, at most have (a short slice is left for the library's shape check to report).
func extent(trans bool, rows, cols, ld, have int) int {
	if rows == 0 || cols == 0 {
		return 0
	}
	if trans {
		rows, cols = cols, rows
	}
	return min(have, (rows-1)*ld+cols)
}

// scratch16 is a reusable bfloat16 buffer, pooled like scratch.
type scratch16 struct{ buf []uint16 }

var scratch16Pool = sync.Pool{New: func() any { return new(scratch16) }}

func getScratch16(n int) *scratch16 {
	s := scratch16Pool.Get().(*scratch16)
	if cap(s.buf) < n {
		s.buf = make([]uint16, n)
	}
	s.buf = s.buf[:n]
	return s
}

func putScratch16(s *scratch16) { scratch16Pool.Put(s) }

// bf16Tile is how many results the ops that write bf16 compute in fp32 before rounding them, in
// a scratch that stays in L1. It is a multiple of 16, so every tile but a task's last runs
// the SIMD kernels on all its elements, and the results are the unfused op's bits.
const bf16Tile = 1024

// RMSNormBF16 is RMSNorm with its result rounded to bf16, row by row in a scratch.
func (c *CPU) RMSNormBF16(out []uint16, rstd, x, w []float32, d int, eps float64) {
	rows := len(x) / d
	c.pool.run(chunks(rows, rowBlock), func(i int) {
		lo, hi := span(i, rowBlock, rows)
		sc := getScratch(d)
		defer putScratch(sc)
		for r := lo; r < hi; r++ {
			rstd[r] = rmsNormRow(sc.buf, x[r*d:(r+1)*d], w, eps)
			roundBF16(out[r*d:(r+1)*d], sc.buf)
		}
	})
}

// SwiGLUBF16 is SwiGLU with its result rounded to bf16, bf16Tile elements at a time.
func (c *CPU) SwiGLUBF16(out []uint16, gate, up []float32) {
	n := len(out)
	c.pool.run(chunks(n, swigluBlock), func(i int) {
		lo, hi := span(i, swigluBlock, n)
		sc := getScratch(bf16Tile)
		defer putScratch(sc)
		for t := lo; t < hi; t += bf16Tile {
			e := min(t+bf16Tile, hi)
			f := sc.buf[:e-t]
			swiglu(f, gate[t:e], up[t:e])
			roundBF16(out[t:e], f)
		}
	})
}

// SwiGLUBackwardBF16 is SwiGLUBackward with both gradients rounded to bf16, bf16Tile elements
// at a time.
func (c *CPU) SwiGLUBackwardBF16(dgate, dup []uint16, dout, gate, up []float32) {
	n := len(dout)
	c.pool.run(chunks(n, swigluBlock), func(i int) {
		lo, hi := span(i, swigluBlock, n)
		sc := getScratch(2 * bf16Tile)
		defer putScratch(sc)
		for t := lo; t < hi; t += bf16Tile {
			e := min(t+bf16Tile, hi)
			fg, fu := sc.buf[:e-t], sc.buf[bf16Tile:bf16Tile+e-t]
			swigluBwd(fg, fu, dout[t:e], gate[t:e], up[t:e])
			roundBF16(dgate[t:e], fg)
			roundBF16(dup[t:e], fu)
		}
	})
}
