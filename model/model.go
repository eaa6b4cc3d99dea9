// Package model is the network cbs trains: a Qwen3-style decoder (RMSNorm, q/k norm, RoPE,
// grouped-query attention, SwiGLU, tied or untied head), optionally with Qwen3-MoE's sparse
// expert layers (moe.go), with a hand-written backward pass, the AR and MDM objectives, AdamW
// with parameter groups, and the checkpoint format.
package model

import (
	"strconv"

	"cbs/compute"
)

// Model is the network with its gradient buffer and the activations of the last forward pass.
// It is not safe for concurrent use: one Model per training branch.
type Model[T compute.Float] struct {
	Cfg    Config
	Params *Params[T]
	// Grad has the layout of Params.Data; LossAndGrad adds to it.
	Grad []T
	be   compute.Backend[T]
	// gradViews and gradSums serve GradNorm on a backend that sums every tensor at once.
	gradViews [][]T
	gradSums  []float64
	// mem holds the activations and moves data between them: Go memory for a CPU backend, the
	// device's for a Resident model.
	mem Memory[T]

	ws       workspace[T]
	wsAllocs [][]T
	cos, sin []T
	weights  []T // host scratch for the batch's loss weights
	// lp holds the bf16 copies of the products' operands (bf16.go).
	lp bf16State
	// aux is the router load-balancing loss of the last forward pass (moe.go).
	aux auxState
}

// New wraps params (and allocates the gradient) to run on backend be.
func New[T compute.Float](p *Params[T], be compute.Backend[T]) *Model[T] {
	return &Model[T]{Cfg: p.Config, Params: p, Grad: make([]T, len(p.Data)), be: be, mem: HostMemory[T]{}}
}

// Backend returns the backend the model runs on.
func (m *Model[T]) Backend() compute.Backend[T] { return m.be }

// layerWeights are views of one layer's tensors in a flat vector (the parameters or the gradient).
// A sparse layer has router and experts (the index of expert 0's gate projection in the layout,
// see expert) instead of gate, up and down.
type layerWeights[T compute.Float] struct {
	in, wq, wk, wv, wo, qn, kn, post, gate, up, down []T
	router                                           []T
	experts                                          int
}

func (m *Model[T]) view(flat []T, i int) []T {
	t := m.Params.Tensors[i]
	return flat[t.Offset : t.Offset+t.Size]
}

func (m *Model[T]) layer(flat []T, l int) layerWeights[T] {
	b := layerStart(&m.Cfg, l)
	v := func(s int) []T { return m.view(flat, b+s) }
	w := layerWeights[T]{in: v(0), wq: v(1), wk: v(2), wv: v(3), wo: v(4), qn: v(5), kn: v(6), post: v(7)}
	if m.Cfg.Sparse(l) {
		w.router, w.experts = v(8), b+sparseSlots
	} else {
		w.gate, w.up, w.down = v(8), v(9), v(10)
	}
	return w
}

func (m *Model[T]) embedding(flat []T) []T { return m.view(flat, 0) }
func (m *Model[T]) finalNorm(flat []T) []T { return m.view(flat, layerStart(&m.Cfg, m.Cfg.NumLayers)) }
func (m *Model[T]) head(flat []T) []T {
	if m.Cfg.TieWordEmbeddings {
		return m.embedding(flat)
	}
	return m.view(flat, layerStart(&m.Cfg, m.Cfg.NumLayers)+1)
}

// activations of one layer, kept for the backward pass.
type layerActs[T compute.Float] struct {
	xn1, rstd1     []T // input norm
	qraw, qrstd, q []T // q projection, its per-head rstd, q after norm and RoPE
	kraw, krstd, k []T
	v, probs, o    []T
	h, xn2, rstd2  []T // residual after attention, post-attention norm
	gate, up, act  []T
	moe            *moeActs[T] // a sparse layer's routing and expert activations (no gate, up, act)
}

type workspace[T compute.Float] struct {
	B, L int
	// bf16Out: the passes write the results only products read straight to bf16 (bf16.go), so
	// their fp32 buffers (xn1, xn2 of dense layers, act, xnf, dgate, dup) are not allocated.
	bf16Out bool
	xs      [][]T // xs[l] is the input of layer l; xs[NumLayers] enters the final norm
	acts    []layerActs[T]
	xnf     []T
	rstdf   []T
	logits  []T
	weights []T
	// backward scratch
	dx, dxn, dact, dgate, dup, do, dq, dk, dv, dqraw, dkraw []T
	moe                                                     moeScratch[T]
}

// ensure allocates the activations for micro-batches of B sequences of length L (when they
// differ from the last ones, or the passes start or stop writing bf16 outputs) and the RoPE
// tables.
func (m *Model[T]) ensure(B, L int) error {
	out := m.writesBF16()
	if m.ws.B == B && m.ws.L == L && m.ws.bf16Out == out {
		return nil
	}
	m.freeWorkspace()
	c := m.Cfg
	N, d, ff := B*L, c.HiddenSize, c.IntermediateSize
	qd, kd := c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	var err error
	mk := func(n int) []T {
		if err != nil {
			return nil
		}
		var x []T
		if x, err = m.mem.Alloc(n); err == nil {
			m.wsAllocs = append(m.wsAllocs, x)
		}
		return x
	}
	// fp32 is mk, or nothing where the passes write bf16 outputs instead.
	fp32 := func(n int) []T {
		if out {
			return nil
		}
		return mk(n)
	}
	ws := workspace[T]{B: B, L: L, bf16Out: out}
	for l := 0; l <= c.NumLayers; l++ {
		ws.xs = append(ws.xs, mk(N*d))
	}
	for l := 0; l < c.NumLayers; l++ {
		a := layerActs[T]{
			xn1: fp32(N * d), rstd1: mk(N),
			qraw: mk(N * qd), qrstd: mk(N * c.NumHeads), q: mk(N * qd),
			kraw: mk(N * kd), krstd: mk(N * c.NumKVHeads), k: mk(N * kd),
			v: mk(N * kd), probs: mk(compute.AttentionStateLen(m.be, B, c.NumHeads, L)), o: mk(N * qd),
			h: mk(N * d), rstd2: mk(N),
		}
		if c.Sparse(l) {
			// The router and the experts read xn2 in fp32.
			a.xn2, a.moe = mk(N*d), newMoEActs(&c, N, mk)
		} else {
			a.xn2, a.gate, a.up, a.act = fp32(N*d), mk(N*ff), mk(N*ff), fp32(N*ff)
		}
		ws.acts = append(ws.acts, a)
	}
	ws.xnf, ws.rstdf = fp32(N*d), mk(N)
	ws.logits, ws.weights = mk(N*c.VocabSize), mk(N)
	ws.dx, ws.dxn = mk(N*d), mk(N*d)
	if c.SparseLayers() < c.NumLayers {
		ws.dact, ws.dgate, ws.dup = mk(N*ff), fp32(N*ff), fp32(N*ff)
	}
	if c.SparseLayers() > 0 {
		ws.moe = newMoEScratch(&c, N, mk)
	}
	ws.do, ws.dq, ws.dqraw = mk(N*qd), mk(N*qd), mk(N*qd)
	ws.dk, ws.dv, ws.dkraw = mk(N*kd), mk(N*kd), mk(N*kd)
	cos, sin := compute.RoPETables[T](L, c.HeadDim, c.RopeTheta)
	dcos, dsin := mk(len(cos)), mk(len(sin))
	if err != nil {
		m.freeWorkspace()
		return err
	}
	m.mem.Upload(dcos, cos)
	m.mem.Upload(dsin, sin)
	m.ws, m.cos, m.sin = ws, dcos, dsin
	return nil
}

func (m *Model[T]) freeWorkspace() {
	for _, x := range m.wsAllocs {
		m.mem.Free(x)
	}
	m.wsAllocs, m.ws, m.cos, m.sin = nil, workspace[T]{}, nil, nil
}

// forward runs the network on b.Inputs and leaves the logits in the workspace.
func (m *Model[T]) forward(b *Batch, causal bool) {
	if err := m.ensure(b.B, b.L); err != nil {
		panic("model: activations for a batch of " + fmtShape(b) + ": " + err.Error())
	}
	c, be, ws := m.Cfg, m.be, &m.ws
	N, d, ff, V := b.B*b.L, c.HiddenSize, c.IntermediateSize, c.VocabSize
	H, KV, hd := c.NumHeads, c.NumKVHeads, c.HeadDim
	qd, kd := H*hd, KV*hd
	P := m.Params.Data
	// The products run through the bf16 copies when the backend is at bf16 (bf16.go); at fp32,
	// m.gemm is be.Gemm on the float slices and m.round does nothing.
	m.lowp(b.B, b.L)
	be.Embedding(ws.xs[0], m.embedding(P), b.Inputs, d)
	for l := 0; l < c.NumLayers; l++ {
		w, a, x := m.layer(P, l), &ws.acts[l], ws.xs[l]
		wh := m.layerH(l)
		xn1h, oh, xn2h, acth := m.actH(l)
		m.rmsNormOperand(a.xn1, xn1h, a.rstd1, x, w.in, d, c.RMSNormEps)
		xn1 := op(a.xn1, xn1h)
		m.gemm(false, true, N, qd, d, 1, xn1, d, op(w.wq, wh.wq), d, 0, a.qraw, qd)
		m.gemm(false, true, N, kd, d, 1, xn1, d, op(w.wk, wh.wk), d, 0, a.kraw, kd)
		m.gemm(false, true, N, kd, d, 1, xn1, d, op(w.wv, wh.wv), d, 0, a.v, kd)
		be.RMSNorm(a.q, a.qrstd, a.qraw, w.qn, hd, c.RMSNormEps)
		be.RMSNorm(a.k, a.krstd, a.kraw, w.kn, hd, c.RMSNormEps)
		be.RoPE(a.q, m.cos, m.sin, b.L, H, hd, false)
		be.RoPE(a.k, m.cos, m.sin, b.L, KV, hd, false)
		be.Attention(a.o, a.probs, a.q, a.k, a.v, b.B, b.L, H, KV, hd, causal)
		m.mem.Copy(a.h, x)
		m.round(oh, a.o)
		m.gemm(false, true, N, d, qd, 1, op(a.o, oh), qd, op(w.wo, wh.wo), qd, 1, a.h, d)
		if a.moe != nil {
			be.RMSNorm(a.xn2, a.rstd2, a.h, w.post, d, c.RMSNormEps)
			m.moeForward(w, a, ws.xs[l+1], N)
			continue
		}
		m.rmsNormOperand(a.xn2, xn2h, a.rstd2, a.h, w.post, d, c.RMSNormEps)
		xn2 := op(a.xn2, xn2h)
		m.gemm(false, true, N, ff, d, 1, xn2, d, op(w.gate, wh.gate), d, 0, a.gate, ff)
		m.gemm(false, true, N, ff, d, 1, xn2, d, op(w.up, wh.up), d, 0, a.up, ff)
		m.swigluOperand(a.act, acth, a.gate, a.up)
		next := ws.xs[l+1]
		m.mem.Copy(next, a.h)
		m.gemm(false, true, N, d, ff, 1, op(a.act, acth), ff, op(w.down, wh.down), ff, 1, next, d)
	}
	if c.MoE() {
		m.routerAux(b)
	}
	var xnfh []uint16
	if m.lp.on {
		xnfh = m.lp.xnf
	}
	m.rmsNormOperand(ws.xnf, xnfh, ws.rstdf, ws.xs[c.NumLayers], m.finalNorm(P), d, c.RMSNormEps)
	m.gemm(false, true, N, V, d, 1, op(ws.xnf, xnfh), d, op(m.head(P), m.headH()), d, 0, ws.logits, V)
}

func (m *Model[T]) lossOf(b *Batch, grad bool) float64 {
	m.weights = m.weights[:0]
	for _, w := range b.Weights {
		m.weights = append(m.weights, T(w))
	}
	m.mem.Upload(m.ws.weights, m.weights)
	return m.be.CrossEntropy(m.ws.logits, b.Targets, m.ws.weights, m.Cfg.VocabSize, grad)
}

func fmtShape(b *Batch) string { return strconv.Itoa(b.B) + " x " + strconv.Itoa(b.L) }

// Loss returns the batch's weighted loss without touching the gradient. It is the objective
// alone: a Qwen3-MoE model's router load-balancing loss is not in it (see AuxLoss).
func (m *Model[T]) Loss(b *Batch, causal bool) float64 {
	// Evaluation may run on weights swapped in place (an average): round them afresh.
	m.WeightsChanged()
	m.forward(b, causal)
	return m.lossOf(b, false)
}

// LossAndGrad returns the batch's weighted loss and adds its gradient to m.Grad. Because the
// weights of a micro-batch already carry the global normalisation, calling it on every
// micro-batch of a step accumulates exactly the gradient of the whole batch. When the config
// turns the router load-balancing loss on (Config.AuxLossOn), the loss and its gradient include
// router_aux_loss_coef times that loss, weighted by the micro-batch's share of the step's
// sequences (Batch.Seqs): the mean over micro-batches of their own load-balancing losses, which
// is the whole batch's when the step is one micro-batch (see moe.go).
func (m *Model[T]) LossAndGrad(b *Batch, causal bool) float64 {
	loss := m.ForwardLoss(b, causal)
	m.Backward(b, causal)
	return loss
}

// ForwardLoss is the first half of LossAndGrad: the forward pass and the loss, leaving the
// gradient of the loss with respect to the logits for Backward. The two halves exist apart so
// that benchmarks can time them; they must be called in pairs on the same batch.
func (m *Model[T]) ForwardLoss(b *Batch, causal bool) float64 {
	m.forward(b, causal)
	loss := m.lossOf(b, true)
	if m.aux.on {
		loss += m.aux.weight * m.aux.loss
	}
	return loss
}

// Backward is the second half of LossAndGrad: it adds the gradient of the loss of the last
// ForwardLoss to m.Grad.
func (m *Model[T]) Backward(b *Batch, causal bool) { m.backward(b, causal) }

// ZeroGrad clears the gradient. It also starts an optimizer step: at bf16, the weights are
// rounded at the next forward pass and reused until Update (see bf16.go).
func (m *Model[T]) ZeroGrad() {
	m.mem.Zero(m.Grad)
	m.lp.fresh, m.lp.accum = false, true
}

func (m *Model[T]) backward(b *Batch, causal bool) {
	c, be, ws := m.Cfg, m.be, &m.ws
	N, d, ff, V := b.B*b.L, c.HiddenSize, c.IntermediateSize, c.VocabSize
	H, KV, hd := c.NumHeads, c.NumKVHeads, c.HeadDim
	qd, kd := H*hd, KV*hd
	P, G := m.Params.Data, m.Grad

	// The products run through bf16 copies when the forward pass did (bf16.go).
	dyh, dgateh, duph, dqh, dkh, dvh := m.scratchH()
	var xnfh []uint16
	if m.lp.on {
		xnfh = m.lp.xnf
	}

	// Head: logits = xnf W^T.
	dlogits := ws.logits
	m.round(dyh, dlogits)
	dl := op(dlogits, dyh)
	m.gemm(false, false, N, d, V, 1, dl, V, op(m.head(P), m.headH()), d, 0, ws.dxn, d)
	m.gemm(true, false, V, d, N, 1, dl, V, op(ws.xnf, xnfh), d, 1, m.head(G), d)
	be.RMSNormBackward(ws.dx, m.finalNorm(G), ws.dxn, ws.xs[c.NumLayers], m.finalNorm(P), ws.rstdf, d, false)

	// ws.dx holds the gradient of the current layer's output and becomes that of its input.
	for l := c.NumLayers - 1; l >= 0; l-- {
		w, g, a, x := m.layer(P, l), m.layer(G, l), &ws.acts[l], ws.xs[l]
		wh := m.layerH(l)
		xn1h, oh, xn2h, acth := m.actH(l)
		if a.moe != nil {
			// Sparse MoE block: out = h + moe(xn2); it sets ws.dxn.
			m.moeBackward(w, g, a, N)
		} else {
			// MLP: out = h + act Wdown^T.
			m.round(dyh, ws.dx)
			dx := op(ws.dx, dyh)
			m.gemm(false, false, N, ff, d, 1, dx, d, op(w.down, wh.down), ff, 0, ws.dact, ff)
			m.gemm(true, false, d, ff, N, 1, dx, d, op(a.act, acth), ff, 1, g.down, ff)
			m.swigluBackwardOperands(ws.dgate, ws.dup, dgateh, duph, ws.dact, a.gate, a.up)
			dgate, dup, xn2 := op(ws.dgate, dgateh), op(ws.dup, duph), op(a.xn2, xn2h)
			m.gemm(false, false, N, d, ff, 1, dgate, ff, op(w.gate, wh.gate), d, 0, ws.dxn, d)
			m.gemm(false, false, N, d, ff, 1, dup, ff, op(w.up, wh.up), d, 1, ws.dxn, d)
			m.gemm(true, false, ff, d, N, 1, dgate, ff, xn2, d, 1, g.gate, d)
			m.gemm(true, false, ff, d, N, 1, dup, ff, xn2, d, 1, g.up, d)
		}
		be.RMSNormBackward(ws.dx, g.post, ws.dxn, a.h, w.post, a.rstd2, d, true)

		// Attention: h = x + o Wo^T.
		m.round(dyh, ws.dx)
		dx := op(ws.dx, dyh)
		m.gemm(false, false, N, qd, d, 1, dx, d, op(w.wo, wh.wo), qd, 0, ws.do, qd)
		m.gemm(true, false, d, qd, N, 1, dx, d, op(a.o, oh), qd, 1, g.wo, qd)
		be.AttentionBackward(ws.dq, ws.dk, ws.dv, ws.do, a.probs, a.q, a.k, a.v, b.B, b.L, H, KV, hd, causal)
		be.RoPE(ws.dq, m.cos, m.sin, b.L, H, hd, true)
		be.RoPE(ws.dk, m.cos, m.sin, b.L, KV, hd, true)
		be.RMSNormBackward(ws.dqraw, g.qn, ws.dq, a.qraw, w.qn, a.qrstd, hd, false)
		be.RMSNormBackward(ws.dkraw, g.kn, ws.dk, a.kraw, w.kn, a.krstd, hd, false)
		m.round(dqh, ws.dqraw)
		m.round(dkh, ws.dkraw)
		m.round(dvh, ws.dv)
		dq, dk, dv, xn1 := op(ws.dqraw, dqh), op(ws.dkraw, dkh), op(ws.dv, dvh), op(a.xn1, xn1h)
		m.gemm(false, false, N, d, qd, 1, dq, qd, op(w.wq, wh.wq), d, 0, ws.dxn, d)
		m.gemm(false, false, N, d, kd, 1, dk, kd, op(w.wk, wh.wk), d, 1, ws.dxn, d)
		m.gemm(false, false, N, d, kd, 1, dv, kd, op(w.wv, wh.wv), d, 1, ws.dxn, d)
		m.gemm(true, false, qd, d, N, 1, dq, qd, xn1, d, 1, g.wq, d)
		m.gemm(true, false, kd, d, N, 1, dk, kd, xn1, d, 1, g.wk, d)
		m.gemm(true, false, kd, d, N, 1, dv, kd, xn1, d, 1, g.wv, d)
		be.RMSNormBackward(ws.dx, g.in, ws.dxn, x, w.in, a.rstd1, d, true)
	}
	be.EmbeddingBackward(m.embedding(G), ws.dx, b.Inputs, d)
}
