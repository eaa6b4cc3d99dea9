package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"cbs/compute"
)

const elemBlock = 256

// elementwise grids stop growing at a few waves: the kernels loop over the rest.
func (b *Backend) elemGrid(n int) int {
	return max(1, min(ceilDiv(n, elemBlock), 32*max(b.info.Device.Multiprocs, 1)))
}

// ---- matrix products ----

// operand is a matrix as cuBLAS reads it: an address, its element type and size.
type operand struct {
	p     uintptr
	dtype int32
	esize uintptr
}

func (o operand) at(elems int) operand { o.p += uintptr(elems) * o.esize; return o }

// input prepares n floats at p for a matrix product: as they are for fp32 and tf32, or rounded
// into the bf16 scratch buffer slot for bf16. Must be called inside enter/leave.
func (b *Backend) input(p uintptr, n int, slot string) operand {
	if b.prec != BF16 {
		return operand{p, cudaR32F, 4}
	}
	s := b.scratchBuf("bf16."+slot, n*2)
	b.launch("cast_f32_bf16", b.elemGrid(n), 1, elemBlock, ap(s), ap(p), al(n))
	return operand{s, cudaR16BF, 2}
}

func (b *Backend) computeType() int32 {
	switch b.prec {
	case TF32:
		return cublasCompute32FFastTF32
	default:
		return cublasCompute32F
	}
}

// extent is how many elements a row-major operand spans: rows x cols with row stride ld.
func extent(trans bool, rows, cols, ld int) int {
	if trans {
		rows, cols = cols, rows
	}
	return (rows-1)*ld + cols
}

// Gemm computes C = alpha op(A) op(B) + beta C in row-major layout.
func (b *Backend) Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, bm []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	pa, pb, pc := b.ptr(a, "Gemm A"), b.ptr(bm, "Gemm B"), b.ptr(c, "Gemm C")
	b.enter()
	defer b.leave()
	A := b.input(pa, extent(transA, m, k, lda), "a")
	B := b.input(pb, extent(transB, k, n, ldb), "b")
	b.gemm(transA, transB, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, pc, ldc, 0, 1)
}

// gemm runs count row-major products C_i = alpha op(A_i) op(B_i) + beta C_i, the i-th operands
// strideX elements after the previous ones, as one strided batched cuBLAS call (or GemmEx when
// count is 1).
func (b *Backend) gemm(transA, transB bool, m, n, k int, alpha float32, A operand, lda, strideA int,
	B operand, ldb, strideB int, beta float32, c uintptr, ldc, strideC, count int) {
	g := toColMajor(transA, transB, m, n, k, lda, ldb, ldc)
	b.alpha, b.beta = alpha, beta
	// cuBLAS's first operand is our B and its second our A (see toColMajor).
	first, second := B, A
	sFirst, sSecond := strideB, strideA
	var st cublasStatus
	if count == 1 {
		st = b.blas.cublasGemmEx(b.handle, g.OpA, g.OpB, int32(g.M), int32(g.N), int32(g.K), unsafe.Pointer(&b.alpha),
			first.p, first.dtype, int32(g.LDA), second.p, second.dtype, int32(g.LDB), unsafe.Pointer(&b.beta),
			c, cudaR32F, int32(g.LDC), b.computeType(), cublasGemmDefault)
	} else {
		st = b.blas.cublasGemmStridedBatchedEx(b.handle, g.OpA, g.OpB, int32(g.M), int32(g.N), int32(g.K), unsafe.Pointer(&b.alpha),
			first.p, first.dtype, int32(g.LDA), int64(sFirst), second.p, second.dtype, int32(g.LDB), int64(sSecond),
			unsafe.Pointer(&b.beta), c, cudaR32F, int32(g.LDC), int64(strideC), int32(count), b.computeType(), cublasGemmDefault)
	}
	if err := b.blas.check(st, "cublasGemmEx"); err != nil {
		panic(fmt.Sprintf("cuda: %v (m=%d n=%d k=%d, %s)", err, m, n, k, b.prec))
	}
}

// ---- embedding ----

// Embedding gathers rows of table [V, d] into out.
func (b *Backend) Embedding(out, table []float32, ids []int32, d int) {
	if len(ids) == 0 {
		return
	}
	po, pt := b.ptr(out[:len(ids)*d], "Embedding out"), b.ptr(table, "Embedding table")
	b.enter()
	defer b.leave()
	pid := b.uploadInts("ids", ids)
	b.launch("embedding_fwd", b.elemGrid(len(ids)*d), 1, elemBlock, ap(po), ap(pt), ap(pid), ai(len(ids)), ai(d))
}

// csrScratch is the host side of the embedding gradient's grouping of tokens by id.
type csrScratch struct {
	count []int32
	buf   []int32
}

// group lays out, in one array, the tokens of ids grouped by id in token order: order (len(ids)),
// then starts (one per distinct id, plus the end), then the distinct ids in increasing order.
// It returns the array and the number of distinct ids.
func (s *csrScratch) group(ids []int32, V int) ([]int32, int) {
	if cap(s.count) < V+1 {
		s.count = make([]int32, V+1)
	}
	count := s.count[:V+1]
	clear(count)
	for _, id := range ids {
		count[id+1]++
	}
	distinct := 0
	for v := 0; v < V; v++ {
		if count[v+1] > 0 {
			distinct++
		}
		count[v+1] += count[v]
	}
	n := len(ids)
	size := n + distinct + 1 + distinct
	if cap(s.buf) < size {
		s.buf = make([]int32, size)
	}
	buf := s.buf[:size]
	order, starts, rows := buf[:n], buf[n:n+distinct+1], buf[n+distinct+1:]
	u := 0
	for v := 0; v < V; v++ {
		if count[v+1] > count[v] {
			starts[u], rows[u] = count[v], int32(v)
			u++
		}
	}
	starts[distinct] = int32(n)
	// count[v] is now the next free place of id v.
	for i, id := range ids {
		order[count[id]] = int32(i)
		count[id]++
	}
	return buf, distinct
}

// EmbeddingBackward adds row i of dout to row ids[i] of dtable, in token order per row.
func (b *Backend) EmbeddingBackward(dtable, dout []float32, ids []int32, d int) {
	if len(ids) == 0 {
		return
	}
	pt, po := b.ptr(dtable, "EmbeddingBackward dtable"), b.ptr(dout[:len(ids)*d], "EmbeddingBackward dout")
	buf, u := b.csr.group(ids, len(dtable)/d)
	b.enter()
	defer b.leave()
	p := b.uploadInts("csr", buf)
	n := uintptr(len(ids))
	order, starts, rows := p, p+4*n, p+4*(n+uintptr(u)+1)
	b.launch("embedding_bwd", min(u, 65535), 1, min(256, max(32, ceilDiv(d, 32)*32)),
		ap(pt), ap(po), ap(order), ap(starts), ap(rows), ai(u), ai(d))
}

// ---- RMSNorm ----

const rowsPerBlock = 8 // warps per block in the warp-per-row kernels

// RMSNorm normalises rows of width d.
func (b *Backend) RMSNorm(out, rstd, x, w []float32, d int, eps float64) {
	rows := len(x) / d
	if rows == 0 {
		return
	}
	po, pr, px, pw := b.ptr(out[:len(x)], "RMSNorm out"), b.ptr(rstd[:rows], "RMSNorm rstd"), b.ptr(x, "RMSNorm x"), b.ptr(w[:d], "RMSNorm w")
	b.enter()
	defer b.leave()
	b.launch("rmsnorm_fwd", ceilDiv(rows, rowsPerBlock), 1, 32*rowsPerBlock, ap(po), ap(pr), ap(px), ap(pw), ai(rows), ai(d), af(float32(eps)))
}

// RMSNormBackward sets (or adds to) dx and adds to dw. dw's column sums go through a partial
// sum per chunk of rows and a second pass over the chunks in order: no atomics.
func (b *Backend) RMSNormBackward(dx, dw, dout, x, w, rstd []float32, d int, accumulate bool) {
	rows := len(x) / d
	if rows == 0 {
		return
	}
	pdx, pdw, pdy := b.ptr(dx[:len(x)], "RMSNormBackward dx"), b.ptr(dw[:d], "RMSNormBackward dw"), b.ptr(dout[:len(x)], "RMSNormBackward dout")
	px, pw, pr := b.ptr(x, "RMSNormBackward x"), b.ptr(w[:d], "RMSNormBackward w"), b.ptr(rstd[:rows], "RMSNormBackward rstd")
	b.enter()
	defer b.leave()
	b.launch("rmsnorm_bwd_dx", ceilDiv(rows, rowsPerBlock), 1, 32*rowsPerBlock, ap(pdx), ap(pdy), ap(px), ap(pw), ap(pr), ai(rows), ai(d), ab(accumulate))
	chunk := max(16, ceilDiv(rows, 1024))
	chunks := ceilDiv(rows, chunk)
	part := b.scratchBuf("dw.partial", chunks*d*8)
	b.launch("rmsnorm_bwd_dw_partial", ceilDiv(d, 128), chunks, 128, ap(part), ap(pdy), ap(px), ap(pr), ai(rows), ai(d), ai(chunk))
	b.launch("colsum_finish", ceilDiv(d, 128), 1, 128, ap(pdw), ap(part), ai(chunks), ai(d))
}

// ---- RoPE ----

// RoPE rotates x [B*L, heads*hd] in place.
func (b *Backend) RoPE(x, cos, sin []float32, L, heads, hd int, inverse bool) {
	ntok := len(x) / (heads * hd)
	if ntok == 0 {
		return
	}
	half := hd / 2
	px, pc, ps := b.ptr(x, "RoPE x"), b.ptr(cos[:L*half], "RoPE cos"), b.ptr(sin[:L*half], "RoPE sin")
	b.enter()
	defer b.leave()
	b.launch("rope", b.elemGrid(ntok*heads*half), 1, elemBlock, ap(px), ap(pc), ap(ps), ai(ntok), ai(L), ai(heads), ai(hd), ab(inverse))
}

// ---- attention ----

// Attention: per batch element and query head h (kv head h/g), S = Q K^T / sqrt(hd) by cuBLAS
// into probs, a row softmax in place, then O = P V. The products are batched over the kv heads,
// one call per (batch element, h mod g), because the token-major layout has no single stride
// over (batch, head). Causal attention computes the full S and masks it in the softmax.
func (b *Backend) Attention(o, probs, q, k, v []float32, B, L, H, KV, hd int, causal bool) {
	g, qs, ks, N := H/KV, H*hd, KV*hd, B*L
	if N == 0 {
		return
	}
	po, pp := b.ptr(o[:N*qs], "Attention o"), b.ptr(probs[:B*H*L*L], "Attention probs")
	pq, pk, pv := b.ptr(q[:N*qs], "Attention q"), b.ptr(k[:N*ks], "Attention k"), b.ptr(v[:N*ks], "Attention v")
	b.enter()
	defer b.leave()
	lay := attnLayout{B: B, L: L, H: H, KV: KV, hd: hd}
	scale := float32(1 / math.Sqrt(float64(hd)))
	Q, K := b.input(pq, N*qs, "q"), b.input(pk, N*ks, "k")
	for bb := 0; bb < B; bb++ {
		for r := 0; r < g; r++ {
			b.gemm(false, true, L, L, hd, scale, Q.at(lay.qOff(bb, r)), qs, g*hd, K.at(lay.kOff(bb)), ks, hd,
				0, pp+4*uintptr(lay.pOff(bb, r)), L, g*L*L, KV)
		}
	}
	b.launch("softmax_fwd", min(B*H*L, 65535*4), 1, softmaxBlock(L), ap(pp), ai(B*H*L), ai(L), ab(causal))
	P, V := b.input(pp, B*H*L*L, "p"), b.input(pv, N*ks, "v")
	for bb := 0; bb < B; bb++ {
		for r := 0; r < g; r++ {
			b.gemm(false, false, L, hd, L, 1, P.at(lay.pOff(bb, r)), L, g*L*L, V.at(lay.kOff(bb)), ks, hd,
				0, po+4*uintptr(lay.qOff(bb, r)), qs, g*hd, KV)
		}
	}
}

// AttentionBackward: dP = dO V^T, dS = P (dP - rowsum(dP P)) / sqrt(hd), dQ = dS K,
// dK = sum over the group's heads of dS^T Q, dV = the same sum of P^T dO. The group sums
// accumulate in head order (beta = 1 after the first head).
func (b *Backend) AttentionBackward(dq, dk, dv, do, probs, q, k, v []float32, B, L, H, KV, hd int, causal bool) {
	g, qs, ks, N := H/KV, H*hd, KV*hd, B*L
	if N == 0 {
		return
	}
	pdq, pdk, pdv := b.ptr(dq[:N*qs], "AttentionBackward dq"), b.ptr(dk[:N*ks], "AttentionBackward dk"), b.ptr(dv[:N*ks], "AttentionBackward dv")
	pdo, pp := b.ptr(do[:N*qs], "AttentionBackward do"), b.ptr(probs[:B*H*L*L], "AttentionBackward probs")
	pq, pk, pv := b.ptr(q[:N*qs], "AttentionBackward q"), b.ptr(k[:N*ks], "AttentionBackward k"), b.ptr(v[:N*ks], "AttentionBackward v")
	b.enter()
	defer b.leave()
	lay := attnLayout{B: B, L: L, H: H, KV: KV, hd: hd}
	scale := float32(1 / math.Sqrt(float64(hd)))
	pdp := b.scratchBuf("attn.dp", B*H*L*L*4)
	DO, V := b.input(pdo, N*qs, "do"), b.input(pv, N*ks, "v")
	for bb := 0; bb < B; bb++ {
		for r := 0; r < g; r++ {
			b.gemm(false, true, L, L, hd, 1, DO.at(lay.qOff(bb, r)), qs, g*hd, V.at(lay.kOff(bb)), ks, hd,
				0, pdp+4*uintptr(lay.pOff(bb, r)), L, g*L*L, KV)
		}
	}
	b.launch("softmax_bwd", min(B*H*L, 65535*4), 1, softmaxBlock(L), ap(pdp), ap(pp), ai(B*H*L), ai(L), af(scale), ab(causal))
	DS, K, Q, P := b.input(pdp, B*H*L*L, "ds"), b.input(pk, N*ks, "k"), b.input(pq, N*qs, "q"), b.input(pp, B*H*L*L, "p")
	for bb := 0; bb < B; bb++ {
		for r := 0; r < g; r++ {
			var beta float32
			if r > 0 {
				beta = 1
			}
			b.gemm(false, false, L, hd, L, 1, DS.at(lay.pOff(bb, r)), L, g*L*L, K.at(lay.kOff(bb)), ks, hd,
				0, pdq+4*uintptr(lay.qOff(bb, r)), qs, g*hd, KV)
			b.gemm(true, false, L, hd, L, 1, DS.at(lay.pOff(bb, r)), L, g*L*L, Q.at(lay.qOff(bb, r)), qs, g*hd,
				beta, pdk+4*uintptr(lay.kOff(bb)), ks, hd, KV)
			b.gemm(true, false, L, hd, L, 1, P.at(lay.pOff(bb, r)), L, g*L*L, DO.at(lay.qOff(bb, r)), qs, g*hd,
				beta, pdv+4*uintptr(lay.kOff(bb)), ks, hd, KV)
		}
	}
}

// attnLayout gives the element offsets of the first kv head's matrices for batch element bb and
// query head r (then every g-th head): q, o, do are [B*L, H*hd], k, v [B*L, KV*hd], probs
// [B, H, L, L].
type attnLayout struct{ B, L, H, KV, hd int }

func (a attnLayout) qOff(bb, r int) int { return bb*a.L*a.H*a.hd + r*a.hd }
func (a attnLayout) kOff(bb int) int    { return bb * a.L * a.KV * a.hd }
func (a attnLayout) pOff(bb, r int) int { return (bb*a.H + r) * a.L * a.L }

func softmaxBlock(L int) int { return min(1024, max(32, ceilDiv(L, 4*32)*32)) }

// ---- elementwise ----

// SwiGLU computes out = silu(gate) up.
func (b *Backend) SwiGLU(out, gate, up []float32) {
	n := len(out)
	if n == 0 {
		return
	}
	po, pg, pu := b.ptr(out, "SwiGLU out"), b.ptr(gate[:n], "SwiGLU gate"), b.ptr(up[:n], "SwiGLU up")
	b.enter()
	defer b.leave()
	b.launch("swiglu_fwd", b.elemGrid(n), 1, elemBlock, ap(po), ap(pg), ap(pu), al(n))
}

// SwiGLUBackward sets dgate and dup.
func (b *Backend) SwiGLUBackward(dgate, dup, dout, gate, up []float32) {
	n := len(dout)
	if n == 0 {
		return
	}
	pdg, pdu, pd := b.ptr(dgate[:n], "SwiGLUBackward dgate"), b.ptr(dup[:n], "SwiGLUBackward dup"), b.ptr(dout, "SwiGLUBackward dout")
	pg, pu := b.ptr(gate[:n], "SwiGLUBackward gate"), b.ptr(up[:n], "SwiGLUBackward up")
	b.enter()
	defer b.leave()
	b.launch("swiglu_bwd", b.elemGrid(n), 1, elemBlock, ap(pdg), ap(pdu), ap(pd), ap(pg), ap(pu), al(n))
}

// Add sets dst = a + b.
func (b *Backend) Add(dst, x, y []float32) {
	n := len(dst)
	if n == 0 {
		return
	}
	pd, px, py := b.ptr(dst, "Add dst"), b.ptr(x[:n], "Add a"), b.ptr(y[:n], "Add b")
	b.enter()
	defer b.leave()
	b.launch("add", b.elemGrid(n), 1, elemBlock, ap(pd), ap(px), ap(py), al(n))
}

// Scale multiplies x by s.
func (b *Backend) Scale(x []float32, s float32) {
	n := len(x)
	if n == 0 {
		return
	}
	px := b.ptr(x, "Scale")
	b.enter()
	defer b.leave()
	b.launch("scale", b.elemGrid(n), 1, elemBlock, ap(px), af(s), al(n))
}

// ---- reductions ----

// CrossEntropy returns sum_r weights[r] CE(logits[r], targets[r]) and, with grad, overwrites
// logits with its gradient. The row losses are summed in row order by one block.
func (b *Backend) CrossEntropy(logits []float32, targets []int32, weights []float32, V int, grad bool) float64 {
	rows := len(logits) / V
	if rows == 0 {
		return 0
	}
	pl, pw := b.ptr(logits, "CrossEntropy logits"), b.ptr(weights[:rows], "CrossEntropy weights")
	b.enter()
	defer b.leave()
	pt := b.uploadInts("targets", targets[:rows])
	rowloss := b.scratchBuf("ce.rows", rows*8)
	out := b.scratchBuf("sum.out", 8)
	b.launch("cross_entropy", min(rows, 65535*4), 1, 512, ap(pl), ap(pt), ap(pw), ap(rowloss), ai(rows), ai(V), ab(grad))
	b.launch("sum_d", 1, 1, 1024, ap(out), ap(rowloss), ai(rows))
	return b.readDouble(out)
}

// sumsqGrid depends on n alone, so the order of additions does too.
func sumsqGrid(n int) int { return max(1, min(1024, ceilDiv(n, 4*elemBlock))) }

// SumSquares returns the sum of x^2 in float64: per-block sums of a grid that depends only on
// len(x), then one block adds those in order.
func (b *Backend) SumSquares(x []float32) float64 {
	n := len(x)
	if n == 0 {
		return 0
	}
	px := b.ptr(x, "SumSquares")
	b.enter()
	defer b.leave()
	grid := sumsqGrid(n)
	part, out := b.scratchBuf("sum.partial", grid*8), b.scratchBuf("sum.out", 8)
	b.launch("sumsq_partial", grid, 1, elemBlock, ap(part), ap(px), al(n))
	b.launch("sum_d", 1, 1, 1024, ap(out), ap(part), ai(grid))
	return b.readDouble(out)
}

// SumSquaresEach sets out[i] to SumSquares(xs[i]), bit for bit, waiting for the device once
// rather than once per slice: model.Resident routes GradNorm's per-tensor calls here (about 135
// tensors at 12 layers). Each sum is queued as SumSquares queues it, into its own slot.
func (b *Backend) SumSquaresEach(out []float64, xs [][]float32) {
	if len(out) < len(xs) {
		panic(fmt.Sprintf("cuda: SumSquaresEach: %d results for %d slices", len(out), len(xs)))
	}
	if len(xs) == 0 {
		return
	}
	px := make([]uintptr, len(xs))
	maxGrid := 1
	for i, x := range xs {
		px[i] = b.ptr(x, "SumSquaresEach")
		maxGrid = max(maxGrid, sumsqGrid(len(x)))
	}
	b.enter()
	defer b.leave()
	// The stream orders each sum_d before the next sumsq_partial, so one partial buffer serves all.
	part, res := b.scratchBuf("sum.partial", maxGrid*8), b.scratchBuf("sum.each", len(xs)*8)
	for i, x := range xs {
		slot := res + uintptr(i)*8
		if len(x) == 0 {
			b.must(b.drv.cuMemsetD32Async(slot, 0, 2, b.stream), "cuMemsetD32Async")
			continue
		}
		grid := sumsqGrid(len(x))
		b.launch("sumsq_partial", grid, 1, elemBlock, ap(part), ap(px[i]), al(len(x)))
		b.launch("sum_d", 1, 1, 1024, ap(slot), ap(part), ai(grid))
	}
	// The copy lands in the Backend's own heap buffer: out may live on a goroutine stack, which
	// can move between the asynchronous copy and the wait.
	if cap(b.sums) < len(xs) {
		b.sums = make([]float64, len(xs))
	}
	sums := b.sums[:len(xs)]
	b.must(b.drv.cuMemcpyDtoHAsync(unsafe.Pointer(&sums[0]), res, uintptr(len(xs))*8, b.stream), "cuMemcpyDtoHAsync_v2")
	b.must(b.drv.cuStreamSynchronize(b.stream), "cuStreamSynchronize")
	copy(out, sums)
}

// ---- optimizer ----

// AdamW applies one AdamW step in float64 arithmetic on fp32 weights and moments (the master
// copy: the bf16 copies the products read are made afresh from it).
func (b *Backend) AdamW(w, g, m, v []float32, p compute.AdamParams) {
	n := len(w)
	if n == 0 {
		return
	}
	pw, pg, pm, pv := b.ptr(w, "AdamW w"), b.ptr(g[:n], "AdamW g"), b.ptr(m[:n], "AdamW m"), b.ptr(v[:n], "AdamW v")
	bc1 := 1 - math.Pow(p.Beta1, float64(p.Step))
	bc2 := 1 - math.Pow(p.Beta2, float64(p.Step))
	b.enter()
	defer b.leave()
	b.launch("adamw", b.elemGrid(n), 1, elemBlock, ap(pw), ap(pg), ap(pm), ap(pv), al(n),
		ad(1-p.LR*p.WeightDecay), ad(p.Beta1), ad(p.Beta2), ad(p.Eps), ad(p.LR/bc1), ad(math.Sqrt(bc2)))
}
