package model

import "cbs/compute"

// Matrix products with bf16 operands. When the backend implements compute.BF16Gemm and runs its
// products at compute.PrecisionBF16, the model keeps bf16 copies of the products' operands and
// calls GemmBF16 itself, so that each is rounded once rather than at every product that reads
// it: the weights once per optimizer step (at the first forward pass after ZeroGrad, reused by
// the step's other micro-batches), the activations a forward pass keeps once for both passes.
// The results are bit-identical to what the backend's own Gemm gives at bf16, which rounds both
// operands of every call. At fp32 none of this runs: the products are the backend's Gemm on the
// float32 slices, exactly as before.
//
// The bf16 weights are rounded again at every Loss call, after every AdamW.Update and
// Resident.UploadParams, and whenever the parameter vector is another slice. Code that changes
// Params.Data in place between the micro-batches of one step (after ZeroGrad, before Update)
// must call WeightsChanged.

// bf16State is the model's bf16 copies and when they are current.
type bf16State struct {
	be compute.BF16Gemm
	// out writes the results that only products read straight to bf16; nil where the backend
	// cannot.
	out compute.BF16Outputs
	// on: the current forward/backward pair runs its products through the copies.
	on bool
	// w is the bf16 copy of the parameters' matrices (the norm vectors stay zero), current when
	// fresh; accum is true between ZeroGrad and Update, where a fresh w is reused; wOf is the
	// parameter slice w was rounded from.
	w            []uint16
	fresh, accum bool
	wOf          *float32

	B, L int
	// The activations a forward pass keeps for the backward's weight gradients, per layer.
	xn1, o, xn2, act [][]uint16
	xnf              []uint16
	// Backward scratch: the gradients that are product operands.
	dy, dgate, dup, dq, dk, dv []uint16
}

// writesBF16 reports whether the passes starting now write the results that only products read
// (the norms' outputs, SwiGLU's output and its two gradients) straight to bf16: the backend runs
// its products at bf16, implements compute.BF16Outputs, and the model is float32. lowp makes
// the same decision about the products.
func (m *Model[T]) writesBF16() bool {
	bg, ok := m.be.(compute.BF16Gemm)
	if !ok || bg.GemmPrecision() != compute.PrecisionBF16 {
		return false
	}
	if _, ok := any(m.Params.Data).([]float32); !ok {
		return false
	}
	_, ok = m.be.(compute.BF16Outputs)
	return ok
}

// lowp decides whether the forward pass starting now (and its backward pass) runs bf16
// products, and if so makes the copies ready: buffers for B x L tokens, and the weights rounded
// unless they are still fresh.
func (m *Model[T]) lowp(B, L int) {
	lp := &m.lp
	lp.on = false
	bg, ok := m.be.(compute.BF16Gemm)
	if !ok || bg.GemmPrecision() != compute.PrecisionBF16 {
		return
	}
	P, ok := any(m.Params.Data).([]float32)
	if !ok {
		return
	}
	lp.be, lp.on = bg, true
	lp.out, _ = m.be.(compute.BF16Outputs)
	if lp.B != B || lp.L != L {
		m.allocBF16(B, L)
	}
	if len(lp.w) != len(P) {
		lp.w, lp.fresh = make([]uint16, len(P)), false
	}
	if len(P) > 0 && lp.wOf != &P[0] {
		lp.fresh = false
	}
	if lp.fresh && lp.accum {
		return
	}
	// The matrices the products read: all but the embedding when the head is its own.
	for i, t := range m.Params.Tensors {
		if t.Is2D() && (i != 0 || m.Cfg.TieWordEmbeddings) {
			bg.ToBF16(lp.w[t.Offset:t.Offset+t.Size], P[t.Offset:t.Offset+t.Size])
		}
	}
	if len(P) > 0 {
		lp.wOf = &P[0]
	}
	lp.fresh = lp.accum
}

func (m *Model[T]) allocBF16(B, L int) {
	c, lp := m.Cfg, &m.lp
	N, d, ff, V := B*L, c.HiddenSize, c.IntermediateSize, c.VocabSize
	qd, kd := c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	lp.B, lp.L = B, L
	lp.xn1, lp.o, lp.xn2, lp.act = nil, nil, nil, nil
	for range c.NumLayers {
		lp.xn1 = append(lp.xn1, make([]uint16, N*d))
		lp.o = append(lp.o, make([]uint16, N*qd))
		lp.xn2 = append(lp.xn2, make([]uint16, N*d))
		lp.act = append(lp.act, make([]uint16, N*ff))
	}
	lp.xnf = make([]uint16, N*d)
	lp.dy = make([]uint16, N*max(d, V))
	lp.dgate, lp.dup = make([]uint16, N*ff), make([]uint16, N*ff)
	lp.dq, lp.dk, lp.dv = make([]uint16, N*qd), make([]uint16, N*kd), make([]uint16, N*kd)
}

// WeightsChanged says that Params.Data changed in place: the next forward pass rounds the
// weights to bf16 again (and so does every one until the next ZeroGrad). Only needed between
// ZeroGrad and Update (see the comment above).
func (m *Model[T]) WeightsChanged() { m.lp.fresh, m.lp.accum = false, false }

// operand is a product's operand: its values, and their bf16 copy when the pass runs bf16
// products.
type operand[T compute.Float] struct {
	f []T
	h []uint16
}

func op[T compute.Float](f []T, h []uint16) operand[T] { return operand[T]{f, h} }

// layerH holds the bf16 copies of one layer's matrices (nil at fp32).
type layerH struct{ wq, wk, wv, wo, gate, up, down []uint16 }

// hview is the bf16 copy of parameter tensor i, nil when the pass runs fp32 products.
func (m *Model[T]) hview(i int) []uint16 {
	if !m.lp.on {
		return nil
	}
	t := m.Params.Tensors[i]
	return m.lp.w[t.Offset : t.Offset+t.Size]
}

// A sparse layer's MLP products run through the backend's Gemm (moe.go), which rounds its
// operands itself at bf16: its gate, up and down are nil.
func (m *Model[T]) layerH(l int) layerH {
	b := layerStart(&m.Cfg, l)
	v := func(s int) []uint16 { return m.hview(b + s) }
	if m.Cfg.Sparse(l) {
		return layerH{wq: v(1), wk: v(2), wv: v(3), wo: v(4)}
	}
	return layerH{v(1), v(2), v(3), v(4), v(8), v(9), v(10)}
}

func (m *Model[T]) headH() []uint16 {
	if m.Cfg.TieWordEmbeddings {
		return m.hview(0)
	}
	return m.hview(layerStart(&m.Cfg, m.Cfg.NumLayers) + 1)
}

// actH returns the bf16 buffers of layer l's kept activations (nil at fp32).
func (m *Model[T]) actH(l int) (xn1, o, xn2, act []uint16) {
	if !m.lp.on {
		return nil, nil, nil, nil
	}
	return m.lp.xn1[l], m.lp.o[l], m.lp.xn2[l], m.lp.act[l]
}

// scratchH returns the bf16 buffers of the backward pass (nil at fp32): dy holds the gradient
// of a layer output or of the logits.
func (m *Model[T]) scratchH() (dy, dgate, dup, dq, dk, dv []uint16) {
	if !m.lp.on {
		return nil, nil, nil, nil, nil, nil
	}
	lp := &m.lp
	return lp.dy, lp.dgate, lp.dup, lp.dq, lp.dk, lp.dv
}

// round fills dst with src rounded to bf16 when the pass runs bf16 products.
func (m *Model[T]) round(dst []uint16, src []T) {
	if m.lp.on {
		m.lp.be.ToBF16(dst, any(src).([]float32))
	}
}

// The results below are read only by products: at bf16, a backend with compute.BF16Outputs
// writes them straight to their bf16 copies and leaves the fp32 buffers as they were.

// rmsNormOperand is RMSNorm into out, and into its bf16 copy h when the pass runs bf16 products.
func (m *Model[T]) rmsNormOperand(out []T, h []uint16, rstd, x, w []T, d int, eps float64) {
	if m.lp.on && m.lp.out != nil {
		m.lp.out.RMSNormBF16(h, f32(rstd), f32(x), f32(w), d, eps)
		return
	}
	m.be.RMSNorm(out, rstd, x, w, d, eps)
	m.round(h, out)
}

// swigluOperand is SwiGLU into out, and into its bf16 copy h when the pass runs bf16 products.
func (m *Model[T]) swigluOperand(out []T, h []uint16, gate, up []T) {
	if m.lp.on && m.lp.out != nil {
		m.lp.out.SwiGLUBF16(h, f32(gate), f32(up))
		return
	}
	m.be.SwiGLU(out, gate, up)
	m.round(h, out)
}

// swigluBackwardOperands is SwiGLUBackward into dgate and dup, and into their bf16 copies when
// the pass runs bf16 products.
func (m *Model[T]) swigluBackwardOperands(dgate, dup []T, dgateh, duph []uint16, dout, gate, up []T) {
	if m.lp.on && m.lp.out != nil {
		m.lp.out.SwiGLUBackwardBF16(dgateh, duph, f32(dout), f32(gate), f32(up))
		return
	}
	m.be.SwiGLUBackward(dgate, dup, dout, gate, up)
	m.round(dgateh, dgate)
	m.round(duph, dup)
}

// f32 is x as []float32; the bf16 copies exist only for float32 models.
func f32[T compute.Float](x []T) []float32 { return any(x).([]float32) }

// gemm is the backend's Gemm on the float operands, or GemmBF16 on their bf16 copies.
func (m *Model[T]) gemm(transA, transB bool, M, N, K int, alpha T, a operand[T], lda int, b operand[T], ldb int, beta T, c []T, ldc int) {
	if m.lp.on {
		m.lp.be.GemmBF16(transA, transB, M, N, K, float32(alpha), a.h, lda, b.h, ldb, float32(beta), any(c).([]float32), ldc)
		return
	}
	m.be.Gemm(transA, transB, M, N, K, alpha, a.f, lda, b.f, ldb, beta, c, ldc)
}
