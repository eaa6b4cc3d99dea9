// Package cpu runs the model on the CPU: a readable reference for every operation (the ground
// truth in tests, and the float64 path of the gradient checks) and a fast float32 backend that
// runs its matrix products on a kernel of its own where the CPU has AVX-512, else on oneDNN,
// OpenBLAS or gonum's BLAS, and everything else on goroutines.
package cpu

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"

	"cbs/compute"
	"cbs/compute/blas"
)

// CPU is the fast float32 backend.
type CPU struct {
	info blas.Info
	// f32 runs the fp32 products: cbs's own kernel where the CPU has AVX-512 (sgemm.go),
	// else oneDNN's sgemm where the library loads (faster than OpenBLAS's on every CPU
	// measured, docs/performance.md), else the BLAS library info names. f32Name says which.
	f32     sgemmer
	f32Name string
	threads int
	// pool's helper goroutines hold the pool, never the backend, so a cleanup can stop them
	// once the backend is garbage.
	pool *pool
	// prec is the precision of Gemm's operands; dnnl runs the bf16 products (nil until
	// SetPrecision loads it).
	prec compute.Precision
	dnnl *blas.DNNL
	// amx: the bf16 products run on AMX tiles where their shapes allow (amx.go,
	// attention_amx.go).
	amx bool
}

var _ compute.Backend[float32] = (*CPU)(nil)

// New returns the fast backend using up to threads goroutines (0: all cores). BLAS itself runs
// single-threaded: the backend splits each product into row blocks of fixed size, so results do
// not depend on the thread count, and no BLAS thread pool spins against the Go scheduler.
//
// CBS_FP32_GEMM=onednn runs the fp32 products on oneDNN's sgemm even where cbs's kernel runs,
// CBS_FP32_GEMM=blas on the BLAS library (OpenBLAS, or gonum with CBS_BLAS=gonum) even where
// oneDNN loads; each gives different bits.
func New(threads int) *CPU {
	impl, info := blas.Default()
	impl.SetThreads(1)
	info.Threads = 1
	c := &CPU{info: info, f32: impl, f32Name: info.Library, pool: &pool{}}
	c.SetThreads(threads)
	runtime.AddCleanup(c, (*pool).stop, c.pool)
	switch choice := strings.ToLower(os.Getenv("CBS_FP32_GEMM")); {
	case choice == "blas":
	case choice != "onednn" && useFMAKernel:
		c.f32, c.f32Name = fmaSgemm{}, "cbs"
	case info.Library == "openblas":
		if d, _ := blas.DefaultDNNL(); d != nil {
			c.dnnl = d
			c.f32, c.f32Name = d, "onednn"
		}
	}
	return c
}

// fmaSgemm is cbs's own fp32 GEMM (sgemm.go) on the calling goroutine.
type fmaSgemm struct{}

func (fmaSgemm) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmSerial(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// serial runs n tasks in turn on the calling goroutine.
func serial(n int, f func(i int)) {
	for i := range n {
		f(i)
	}
}

// sgemmer is an fp32 GEMM library, row-major as blas.Impl.
type sgemmer interface {
	Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
}

// FP32Library names what runs the fp32 products: "cbs" (its own kernel), "onednn",
// "openblas" or "gonum".
func (c *CPU) FP32Library() string { return c.f32Name }

// SetThreads changes the goroutine budget (0: all cores). Results do not depend on it, so a
// run may change it between steps; not while an operation runs.
func (c *CPU) SetThreads(threads int) {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	c.threads = threads
	c.pool.resize(threads)
}

// BLAS describes the BLAS library in use.
func (c *CPU) BLAS() blas.Info { return c.info }

// Threads is the goroutine budget.
func (c *CPU) Threads() int { return c.threads }

func (c *CPU) Name() string {
	var kind string
	switch {
	case c.prec == compute.PrecisionBF16:
		kind = "bf16"
	case c.f32Name == "onednn":
		kind = "fp32"
	case c.f32Name == "cbs":
		return fmt.Sprintf("cpu (%s, %d threads; fp32 products: cbs AVX-512 kernel)", c.info, c.threads)
	default:
		return fmt.Sprintf("cpu (%s, %d threads)", c.info, c.threads)
	}
	d := c.dnnl.Info()
	if c.prec == compute.PrecisionBF16 && c.amx {
		return fmt.Sprintf("cpu (%s, %d threads; bf16 products: AMX tiles, weight gradients on onednn %s %s)", c.info, c.threads, d.Version, d.ISA)
	}
	return fmt.Sprintf("cpu (%s, %d threads; %s products: onednn %s %s)", c.info, c.threads, kind, d.Version, d.ISA)
}

// AMX reports whether the bf16 products run on AMX tiles (amx.go): at bf16, on a CPU and OS
// with AMX, unless CBS_AMX=off.
func (c *CPU) AMX() bool { return c.prec == compute.PrecisionBF16 && c.amx }

// gemmBlock is the number of rows of C per task of a library's products.
const gemmBlock = 256

// Gemm runs the product on the goroutines. At fp32 (FP32Library) it runs on cbs's own kernel
// (sgemm.go), whose tiles follow the thread count, or else in fixed blocks of C, each block a
// single-threaded call of oneDNN's or OpenBLAS's sgemm; at bf16 (SetPrecision) both operands
// are rounded to bfloat16 first and multiplied on AMX tiles or by oneDNN (GemmBF16).
func (c *CPU) Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cm []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if c.prec == compute.PrecisionBF16 {
		c.gemmRounded(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc)
		return
	}
	if c.f32Name == "cbs" {
		// Its bits do not depend on how C is cut, so the tasks may follow the threads.
		sgemmFMA(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc, c.pool.run, 2*c.threads)
		return
	}
	if parts := kParts(m, n, k); parts > 1 {
		c.splitK(parts, transA, transB, m, n, k, lda, ldb, beta, cm, ldc, func(ao, bo, kn int, out []float32) {
			c.f32.Sgemm(transA, transB, m, n, kn, alpha, a[ao:], lda, b[bo:], ldb, 0, out, n)
		})
		return
	}
	// Split C by rows when it has many, else by columns, in blocks that depend on the shape only.
	if m >= n {
		c.pool.run(chunks(m, gemmBlock), func(i int) {
			lo, hi := span(i, gemmBlock, m)
			var ablk []float32
			if transA {
				ablk = a[lo:]
			} else {
				ablk = a[lo*lda:]
			}
			c.f32.Sgemm(transA, transB, hi-lo, n, k, alpha, ablk, lda, b, ldb, beta, cm[lo*ldc:], ldc)
		})
		return
	}
	c.pool.run(chunks(n, gemmBlock), func(i int) {
		lo, hi := span(i, gemmBlock, n)
		var bblk []float32
		if transB {
			bblk = b[lo*ldb:]
		} else {
			bblk = b[lo:]
		}
		c.f32.Sgemm(transA, transB, m, hi-lo, k, alpha, a, lda, bblk, ldb, beta, cm[lo:], ldc)
	})
}

// kParts is how many ranges of the inner dimension a product is cut into. A product whose C is
// a single block but whose inner dimension is long (the weight gradient of a layer of width
// gemmBlock or less: K is every token of the micro-batch) would otherwise run on one thread;
// four ranges let four threads share it. It depends on the shape only, like the blocks.
func kParts(m, n, k int) int {
	if max(m, n) > gemmBlock || k < kSplitMin {
		return 1
	}
	return 4
}

// kSplitMin is the shortest inner dimension kParts splits: each range keeps at least 512 terms,
// enough for the library's kernels to run at their rate.
const kSplitMin = 2048

// splitK computes C = beta C + sum of parts products over consecutive ranges of the inner
// dimension: call(ao, bo, kn, out) writes alpha op(A) op(B) over the kn terms whose first
// elements are at offsets ao of A and bo of B into out ([m, n], row stride n, not accumulated).
// The partial products are added in range order, then to beta C, so the bits depend on the
// shape only.
func (c *CPU) splitK(parts int, transA, transB bool, m, n, k, lda, ldb int, beta float32, cm []float32, ldc int, call func(ao, bo, kn int, out []float32)) {
	kb := chunks(k, parts)
	sc := getScratch(parts * m * n)
	defer putScratch(sc)
	c.pool.run(parts, func(i int) {
		lo, hi := span(i, kb, k)
		ao, bo := lo, lo*ldb
		if transA {
			ao = lo * lda
		}
		if transB {
			bo = lo
		}
		call(ao, bo, hi-lo, sc.buf[i*m*n:(i+1)*m*n])
	})
	c.pool.run(chunks(m, rowBlock), func(i int) {
		lo, hi := span(i, rowBlock, m)
		for r := lo; r < hi; r++ {
			row := cm[r*ldc : r*ldc+n]
			for j := range row {
				sum := sc.buf[r*n+j]
				for p := 1; p < parts; p++ {
					sum += sc.buf[p*m*n+r*n+j]
				}
				if beta == 0 {
					row[j] = sum
				} else {
					row[j] = beta*row[j] + sum
				}
			}
		}
	})
}

// split cuts C [m, n] into the blocks Gemm uses (they depend on the shape only: rows when C has
// many, else columns) and calls f on the goroutines with each block's first elements in A, B
// and C and its size.
func (c *CPU) split(transA, transB bool, m, n, lda, ldb, ldc int, f func(ao, bo, co, rows, cols int)) {
	if m >= n {
		c.pool.run(chunks(m, gemmBlock), func(i int) {
			lo, hi := span(i, gemmBlock, m)
			ao := lo * lda
			if transA {
				ao = lo
			}
			f(ao, 0, lo*ldc, hi-lo, n)
		})
		return
	}
	c.pool.run(chunks(n, gemmBlock), func(i int) {
		lo, hi := span(i, gemmBlock, n)
		bo := lo
		if transB {
			bo = lo * ldb
		}
		f(0, bo, lo, m, hi-lo)
	})
}

const rowBlock = 64

func (c *CPU) Embedding(out, table []float32, ids []int32, d int) {
	RefEmbedding(out, table, ids, d)
}

// EmbeddingBackward splits the columns, so each task adds rows in token order.
func (c *CPU) EmbeddingBackward(dtable, dout []float32, ids []int32, d int) {
	const colBlock = 64
	c.pool.run(chunks(d, colBlock), func(i int) {
		lo, hi := span(i, colBlock, d)
		for t, id := range ids {
			dst := dtable[int(id)*d+lo : int(id)*d+hi]
			src := dout[t*d+lo : t*d+hi]
			for j := range dst {
				dst[j] += src[j]
			}
		}
	})
}

func (c *CPU) RMSNorm(out, rstd, x, w []float32, d int, eps float64) {
	rows := len(x) / d
	c.pool.run(chunks(rows, rowBlock), func(i int) {
		lo, hi := span(i, rowBlock, rows)
		for r := lo; r < hi; r++ {
			rstd[r] = rmsNormRow(out[r*d:(r+1)*d], x[r*d:(r+1)*d], w, eps)
		}
	})
}

// rmsNormRow sets out = x w / rms(x) and returns 1 / rms(x).
func rmsNormRow(out, x, w []float32, eps float64) float32 {
	s := float32(1 / math.Sqrt(float64(dot(x, x))/float64(len(x))+eps))
	mulScale(out, x, w, s)
	return s
}

// RMSNormBackward sums dw per row block and adds the blocks in order.
func (c *CPU) RMSNormBackward(dx, dw, dout, x, w, rstd []float32, d int, accumulate bool) {
	rows := len(x) / d
	nb := chunks(rows, rowBlock)
	sc := getScratch(nb * d)
	defer putScratch(sc)
	partial := sc.buf
	clear(partial)
	c.pool.run(nb, func(i int) {
		lo, hi := span(i, rowBlock, rows)
		pw := partial[i*d : (i+1)*d]
		for r := lo; r < hi; r++ {
			xr, dy := x[r*d:(r+1)*d], dout[r*d:(r+1)*d]
			s := rstd[r]
			// With n = x s: dx = s dy w - x s^3 mean(dy w x).
			sum := rmsBwd1(pw, dy, w, xr, s)
			cc := float32(float64(s) * float64(s) * float64(s) * float64(sum) / float64(d))
			rmsBwd2(dx[r*d:(r+1)*d], dy, w, xr, s, cc, accumulate)
		}
	})
	for i := 0; i < nb; i++ {
		for j := range dw {
			dw[j] += partial[i*d+j]
		}
	}
}

func (c *CPU) RoPE(x, cos, sin []float32, L, heads, hd int, inverse bool) {
	rows := len(x) / (heads * hd)
	c.pool.run(chunks(rows, rowBlock), func(i int) {
		lo, hi := span(i, rowBlock, rows)
		w := heads * hd
		ropeRows(x[lo*w:hi*w], cos, sin, lo, L, heads, hd, inverse)
	})
}

// ropeRows is RefRoPE for rows starting at token index first.
func ropeRows(x, cos, sin []float32, first, L, heads, hd int, inverse bool) {
	half := hd / 2
	for t := 0; t < len(x)/(heads*hd); t++ {
		p := (first + t) % L
		cs, sn := cos[p*half:(p+1)*half], sin[p*half:(p+1)*half]
		if useSIMD && half%8 == 0 {
			row := x[t*heads*hd : (t+1)*heads*hd]
			ropeAVX2(&row[0], &cs[0], &sn[0], heads, half, inverse)
			continue
		}
		for h := 0; h < heads; h++ {
			v := x[(t*heads+h)*hd : (t*heads+h+1)*hd]
			v1, v2 := v[:half], v[half:hd]
			// Each product rounded on its own (no fused multiply-add), as ropeAVX2 does.
			if inverse {
				for i := range v1 {
					x1, x2 := v1[i], v2[i]
					v1[i] = float32(x1*cs[i]) + float32(x2*sn[i])
					v2[i] = float32(x2*cs[i]) - float32(x1*sn[i])
				}
			} else {
				for i := range v1 {
					x1, x2 := v1[i], v2[i]
					v1[i] = float32(x1*cs[i]) - float32(x2*sn[i])
					v2[i] = float32(x2*cs[i]) + float32(x1*sn[i])
				}
			}
		}
	}
}

// swigluBlock is the number of elements per task of SwiGLU and its backward.
const swigluBlock = 1 << 14

func (c *CPU) SwiGLU(out, gate, up []float32) {
	n := len(out)
	c.pool.run(chunks(n, swigluBlock), func(i int) {
		lo, hi := span(i, swigluBlock, n)
		swiglu(out[lo:hi], gate[lo:hi], up[lo:hi])
	})
}

func (c *CPU) SwiGLUBackward(dgate, dup, dout, gate, up []float32) {
	n := len(dout)
	c.pool.run(chunks(n, swigluBlock), func(i int) {
		lo, hi := span(i, swigluBlock, n)
		swigluBwd(dgate[lo:hi], dup[lo:hi], dout[lo:hi], gate[lo:hi], up[lo:hi])
	})
}

func (c *CPU) CrossEntropy(logits []float32, targets []int32, weights []float32, V int, grad bool) float64 {
	rows := len(logits) / V
	nb := chunks(rows, rowBlock)
	partial := make([]float64, nb)
	c.pool.run(nb, func(i int) {
		lo, hi := span(i, rowBlock, rows)
		partial[i] = crossEntropyRows(logits[lo*V:hi*V], targets[lo:hi], weights[lo:hi], V, grad)
	})
	var total float64
	for _, p := range partial {
		total += p
	}
	return total
}

func crossEntropyRows(logits []float32, targets []int32, weights []float32, V int, grad bool) float64 {
	var total float64
	for r := range weights {
		x := logits[r*V : (r+1)*V]
		wt := weights[r]
		if wt == 0 {
			if grad {
				clear(x)
			}
			continue
		}
		mx := maxOf(x)
		xt := x[targets[r]]
		// The exponentials go to x itself when it becomes the gradient, else to a buffer; the
		// chunks are the same either way, so the loss does not depend on grad.
		var z float64
		var buf [256]float32
		for lo := 0; lo < V; lo += len(buf) {
			hi := min(lo+len(buf), V)
			dst := buf[:hi-lo]
			if grad {
				dst = x[lo:hi]
			}
			z += float64(expSubSum(dst, x[lo:hi], mx))
		}
		total += float64(wt) * (float64(mx) + math.Log(z) - float64(xt))
		if grad {
			scale(x, float32(float64(wt)/z))
			x[targets[r]] -= wt
		}
	}
	return total
}

func (c *CPU) Add(dst, a, b []float32) {
	for i := range dst {
		dst[i] = a[i] + b[i]
	}
}

func (c *CPU) Scale(x []float32, s float32) { scale(x, s) }

// SumSquares sums fixed blocks in float64, then the blocks in order.
func (c *CPU) SumSquares(x []float32) float64 {
	const block = 1 << 14
	n := len(x)
	partial := make([]float64, chunks(n, block))
	c.pool.run(len(partial), func(i int) {
		lo, hi := span(i, block, n)
		var s float64
		for _, v := range x[lo:hi] {
			s += float64(v) * float64(v)
		}
		partial[i] = s
	})
	var s float64
	for _, p := range partial {
		s += p
	}
	return s
}

func (c *CPU) AdamW(w, g, m, v []float32, p compute.AdamParams) {
	const block = 1 << 14
	n := len(w)
	c.pool.run(chunks(n, block), func(i int) {
		lo, hi := span(i, block, n)
		adamW(w[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], p)
	})
}
