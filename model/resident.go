package model

import (
	"errors"

	"cbs/compute"
)

// Memory is what a backend whose buffers live outside Go memory (a GPU) offers besides
// compute.Backend: allocation and copies. compute/cuda's Backend implements it for float32; its
// slices are device views whose elements Go code must never touch.
type Memory[T compute.Float] interface {
	Alloc(n int) ([]T, error) // zeroed
	Free(x []T)
	Upload(dst, src []T)   // host src to device dst
	Download(dst, src []T) // device src to host dst, complete on return
	Copy(dst, src []T)     // device to device
	Zero(x []T)
}

// HostMemory is Memory on ordinary Go slices: a Resident on a CPU backend, which tests use to
// show that Resident computes exactly what Model does.
type HostMemory[T compute.Float] struct{}

func (HostMemory[T]) Alloc(n int) ([]T, error) { return make([]T, n), nil }
func (HostMemory[T]) Free([]T)                 {}
func (HostMemory[T]) Upload(dst, src []T)      { copy(dst, src) }
func (HostMemory[T]) Download(dst, src []T)    { copy(dst, src) }
func (HostMemory[T]) Copy(dst, src []T)        { copy(dst, src) }
func (HostMemory[T]) Zero(x []T)               { clear(x) }

// Resident is a Model whose parameters, gradient, activations (and the moments of an AdamW made
// by NewAdamW) live in a backend's own memory, for backends such as the GPU whose buffers Go
// cannot read. The backward pass and AdamW.Update are Model's own; the forward pass differs only
// in moving data through Memory, and a test holds the two to bit-identical results.
type Resident[T compute.Float] struct {
	// M is the device-side model: its Params.Data and Grad are device buffers. Pass it to
	// AdamW.Update and GradNorm; never read its slices from Go.
	M *Model[T]
	// Host is the host copy of the parameters, current after SyncToHost.
	Host *Params[T]

	mem      Memory[T]
	weights  []T // host scratch for the batch's loss weights
	wsAllocs [][]T
}

// NewResident copies host's parameters into mem and returns a model running on be.
func NewResident[T compute.Float](host *Params[T], be compute.Backend[T], mem Memory[T]) (*Resident[T], error) {
	r := &Resident[T]{Host: host, mem: mem}
	data, err := mem.Alloc(len(host.Data))
	if err != nil {
		return nil, err
	}
	grad, err := mem.Alloc(len(host.Data))
	if err != nil {
		mem.Free(data)
		return nil, err
	}
	mem.Upload(data, host.Data)
	dp := &Params[T]{Config: host.Config, Tensors: host.Tensors, Data: data, index: host.index}
	r.M = &Model[T]{Cfg: host.Config, Params: dp, Grad: grad, be: be}
	return r, nil
}

// Free releases the device memory; r is unusable afterwards.
func (r *Resident[T]) Free() {
	r.freeWorkspace()
	r.mem.Free(r.M.Params.Data)
	r.mem.Free(r.M.Grad)
	r.M = nil
}

// SyncToHost copies the device parameters into r.Host (for checkpoints and finiteness checks).
func (r *Resident[T]) SyncToHost() { r.mem.Download(r.Host.Data, r.M.Params.Data) }

// UploadParams copies r.Host's parameters to the device (after the host copy was changed).
func (r *Resident[T]) UploadParams() { r.mem.Upload(r.M.Params.Data, r.Host.Data) }

// DownloadGrad copies the gradient into dst (len(dst) = number of parameters).
func (r *Resident[T]) DownloadGrad(dst []T) { r.mem.Download(dst, r.M.Grad) }

// NewAdamW returns optimizer state with device moments, copied from host when it is not nil
// (a resumed or inherited optimizer), else zero.
func (r *Resident[T]) NewAdamW(cfg OptimConfig, host *AdamW[T]) (*AdamW[T], error) {
	n := len(r.Host.Data)
	m, err := r.mem.Alloc(n)
	if err != nil {
		return nil, err
	}
	v, err := r.mem.Alloc(n)
	if err != nil {
		r.mem.Free(m)
		return nil, err
	}
	o := &AdamW[T]{Cfg: cfg, M: m, V: v}
	if host != nil {
		if len(host.M) != n || len(host.V) != n {
			return nil, errors.New("resident model: optimizer moments do not match the parameters")
		}
		r.mem.Upload(m, host.M)
		r.mem.Upload(v, host.V)
		o.Step = host.Step
	}
	return o, nil
}

// DownloadAdamW copies device optimizer state into host state (for checkpoints).
func (r *Resident[T]) DownloadAdamW(host, dev *AdamW[T]) {
	r.mem.Download(host.M, dev.M)
	r.mem.Download(host.V, dev.V)
	host.Step, host.Cfg = dev.Step, dev.Cfg
}

// ZeroGrad clears the gradient.
func (r *Resident[T]) ZeroGrad() { r.mem.Zero(r.M.Grad) }

// Loss returns the batch's weighted loss without touching the gradient.
func (r *Resident[T]) Loss(b *Batch, causal bool) float64 {
	r.forward(b, causal)
	return r.lossOf(b, false)
}

// LossAndGrad returns the batch's weighted loss and adds its gradient to the device gradient.
func (r *Resident[T]) LossAndGrad(b *Batch, causal bool) float64 {
	loss := r.ForwardLoss(b, causal)
	r.Backward(b, causal)
	return loss
}

// ForwardLoss and Backward are LossAndGrad's halves, as on Model.
func (r *Resident[T]) ForwardLoss(b *Batch, causal bool) float64 {
	r.forward(b, causal)
	return r.lossOf(b, true)
}

// Backward adds the gradient of the last ForwardLoss.
func (r *Resident[T]) Backward(b *Batch, causal bool) { r.M.backward(b, causal) }

func (r *Resident[T]) lossOf(b *Batch, grad bool) float64 {
	m := r.M
	r.weights = r.weights[:0]
	for _, w := range b.Weights {
		r.weights = append(r.weights, T(w))
	}
	r.mem.Upload(m.ws.weights, r.weights)
	return m.be.CrossEntropy(m.ws.logits, b.Targets, m.ws.weights, m.Cfg.VocabSize, grad)
}

func (r *Resident[T]) freeWorkspace() {
	for _, x := range r.wsAllocs {
		r.mem.Free(x)
	}
	r.wsAllocs = nil
	r.M.ws = workspace[T]{}
	r.M.ropeLen = 0
}

// ensure is Model.ensure with the buffers in device memory; Model.ensure then finds them in
// place and does nothing.
func (r *Resident[T]) ensure(B, L int) error {
	m := r.M
	if m.ws.B == B && m.ws.L == L {
		return nil
	}
	r.freeWorkspace()
	c := m.Cfg
	N, d, ff := B*L, c.HiddenSize, c.IntermediateSize
	qd, kd := c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	var err error
	mk := func(n int) []T {
		if err != nil {
			return nil
		}
		var x []T
		if x, err = r.mem.Alloc(n); err == nil {
			r.wsAllocs = append(r.wsAllocs, x)
		}
		return x
	}
	ws := workspace[T]{B: B, L: L}
	for l := 0; l <= c.NumLayers; l++ {
		ws.xs = append(ws.xs, mk(N*d))
	}
	for l := 0; l < c.NumLayers; l++ {
		ws.acts = append(ws.acts, layerActs[T]{
			xn1: mk(N * d), rstd1: mk(N),
			qraw: mk(N * qd), qrstd: mk(N * c.NumHeads), q: mk(N * qd),
			kraw: mk(N * kd), krstd: mk(N * c.NumKVHeads), k: mk(N * kd),
			v: mk(N * kd), probs: mk(B * c.NumHeads * L * L), o: mk(N * qd),
			h: mk(N * d), xn2: mk(N * d), rstd2: mk(N),
			gate: mk(N * ff), up: mk(N * ff), act: mk(N * ff),
		})
	}
	ws.xnf, ws.rstdf = mk(N*d), mk(N)
	ws.logits, ws.weights = mk(N*c.VocabSize), mk(N)
	ws.dx, ws.dxn = mk(N*d), mk(N*d)
	ws.dact, ws.dgate, ws.dup = mk(N*ff), mk(N*ff), mk(N*ff)
	ws.do, ws.dq, ws.dqraw = mk(N*qd), mk(N*qd), mk(N*qd)
	ws.dk, ws.dv, ws.dkraw = mk(N*kd), mk(N*kd), mk(N*kd)
	cos, sin := compute.RoPETables[T](L, c.HeadDim, c.RopeTheta)
	dcos, dsin := mk(len(cos)), mk(len(sin))
	if err != nil {
		r.freeWorkspace()
		return err
	}
	r.mem.Upload(dcos, cos)
	r.mem.Upload(dsin, sin)
	m.ws, m.cos, m.sin, m.ropeLen = ws, dcos, dsin, L
	return nil
}

// Prepare allocates the activations for micro-batches of B sequences of length L, so that an
// out-of-memory error surfaces here rather than as a panic inside a step.
func (r *Resident[T]) Prepare(B, L int) error { return r.ensure(B, L) }

// forward is Model.forward with the two residual copies done by Memory.Copy.
func (r *Resident[T]) forward(b *Batch, causal bool) {
	if err := r.ensure(b.B, b.L); err != nil {
		panic("resident model: " + err.Error())
	}
	m := r.M
	c, be, ws := m.Cfg, m.be, &m.ws
	N, d, ff, V := b.B*b.L, c.HiddenSize, c.IntermediateSize, c.VocabSize
	H, KV, hd := c.NumHeads, c.NumKVHeads, c.HeadDim
	qd, kd := H*hd, KV*hd
	P := m.Params.Data
	be.Embedding(ws.xs[0], m.embedding(P), b.Inputs, d)
	for l := 0; l < c.NumLayers; l++ {
		w, a, x := m.layer(P, l), &ws.acts[l], ws.xs[l]
		be.RMSNorm(a.xn1, a.rstd1, x, w.in, d, c.RMSNormEps)
		be.Gemm(false, true, N, qd, d, 1, a.xn1, d, w.wq, d, 0, a.qraw, qd)
		be.Gemm(false, true, N, kd, d, 1, a.xn1, d, w.wk, d, 0, a.kraw, kd)
		be.Gemm(false, true, N, kd, d, 1, a.xn1, d, w.wv, d, 0, a.v, kd)
		be.RMSNorm(a.q, a.qrstd, a.qraw, w.qn, hd, c.RMSNormEps)
		be.RMSNorm(a.k, a.krstd, a.kraw, w.kn, hd, c.RMSNormEps)
		be.RoPE(a.q, m.cos, m.sin, b.L, H, hd, false)
		be.RoPE(a.k, m.cos, m.sin, b.L, KV, hd, false)
		be.Attention(a.o, a.probs, a.q, a.k, a.v, b.B, b.L, H, KV, hd, causal)
		r.mem.Copy(a.h, x)
		be.Gemm(false, true, N, d, qd, 1, a.o, qd, w.wo, qd, 1, a.h, d)
		be.RMSNorm(a.xn2, a.rstd2, a.h, w.post, d, c.RMSNormEps)
		be.Gemm(false, true, N, ff, d, 1, a.xn2, d, w.gate, d, 0, a.gate, ff)
		be.Gemm(false, true, N, ff, d, 1, a.xn2, d, w.up, d, 0, a.up, ff)
		be.SwiGLU(a.act, a.gate, a.up)
		next := ws.xs[l+1]
		r.mem.Copy(next, a.h)
		be.Gemm(false, true, N, d, ff, 1, a.act, ff, w.down, ff, 1, next, d)
	}
	be.RMSNorm(ws.xnf, ws.rstdf, ws.xs[c.NumLayers], m.finalNorm(P), d, c.RMSNormEps)
	be.Gemm(false, true, N, V, d, 1, ws.xnf, d, m.head(P), d, 0, ws.logits, V)
}
