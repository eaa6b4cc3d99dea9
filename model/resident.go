package model

import (
	"errors"
	"fmt"

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

// HostMemory is Memory on ordinary Go slices: what a Model made by New uses, and what tests give
// a Resident on a CPU backend to show that it computes exactly what Model does.
type HostMemory[T compute.Float] struct{}

func (HostMemory[T]) Alloc(n int) ([]T, error) { return make([]T, n), nil }
func (HostMemory[T]) Free([]T)                 {}
func (HostMemory[T]) Upload(dst, src []T)      { copy(dst, src) }
func (HostMemory[T]) Download(dst, src []T)    { copy(dst, src) }
func (HostMemory[T]) Copy(dst, src []T)        { copy(dst, src) }
func (HostMemory[T]) Zero(x []T)               { clear(x) }

// Resident is a Model whose parameters, gradient, activations (and the moments of an AdamW made
// by NewAdamW) live in a backend's own memory, for backends such as the GPU whose buffers Go
// cannot read. It is a Model whose Memory is the backend's, plus the host copies and transfers a
// trainer needs; a test holds it to bit-identical results with a plain Model on the CPU.
type Resident[T compute.Float] struct {
	// M is the device-side model: its Params.Data and Grad are device buffers. Pass it to
	// AdamW.Update and GradNorm; never read its slices from Go.
	M *Model[T]
	// Host is the host copy of the parameters, current after SyncToHost.
	Host *Params[T]

	mem Memory[T]
	// opts are the optimizers NewAdamW made, whose device moments Free releases.
	opts []*AdamW[T]
}

// NewResident copies host's parameters into mem and returns a model running on be.
// A Qwen3-MoE model is refused: its routing runs in Go on host memory (moe.go).
func NewResident[T compute.Float](host *Params[T], be compute.Backend[T], mem Memory[T]) (*Resident[T], error) {
	if host.Config.MoE() {
		return nil, fmt.Errorf("resident model: %s (sparse MoE layers) runs on the CPU only for now; the device path has no routing", Qwen3MoE)
	}
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
	r.M = &Model[T]{Cfg: host.Config, Params: dp, Grad: grad, be: be, mem: mem}
	return r, nil
}

// Free releases the device memory, the moments of the optimizers NewAdamW made included; r and
// those optimizers are unusable afterwards.
func (r *Resident[T]) Free() {
	r.M.freeWorkspace()
	r.mem.Free(r.M.Params.Data)
	r.mem.Free(r.M.Grad)
	for _, o := range r.opts {
		r.mem.Free(o.M)
		r.mem.Free(o.V)
		o.M, o.V = nil, nil
	}
	r.M, r.opts = nil, nil
}

// SyncToHost copies the device parameters into r.Host (for checkpoints and finiteness checks).
func (r *Resident[T]) SyncToHost() { r.mem.Download(r.Host.Data, r.M.Params.Data) }

// UploadParams copies r.Host's parameters to the device (after the host copy was changed).
func (r *Resident[T]) UploadParams() {
	r.mem.Upload(r.M.Params.Data, r.Host.Data)
	r.M.WeightsChanged()
}

// DownloadGrad copies the gradient into dst (len(dst) = number of parameters).
func (r *Resident[T]) DownloadGrad(dst []T) { r.mem.Download(dst, r.M.Grad) }

// NewAdamW returns optimizer state with device moments, copied from host when it is not nil
// (a resumed or inherited optimizer), else zero.
func (r *Resident[T]) NewAdamW(cfg OptimConfig, host *AdamW[T]) (*AdamW[T], error) {
	n := len(r.Host.Data)
	if host != nil && (len(host.M) != n || len(host.V) != n) {
		return nil, errors.New("resident model: optimizer moments do not match the parameters")
	}
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
		r.mem.Upload(m, host.M)
		r.mem.Upload(v, host.V)
		o.Step = host.Step
	}
	r.opts = append(r.opts, o)
	return o, nil
}

// DownloadAdamW copies device optimizer state into host state (for checkpoints).
func (r *Resident[T]) DownloadAdamW(host, dev *AdamW[T]) {
	r.mem.Download(host.M, dev.M)
	r.mem.Download(host.V, dev.V)
	host.Step, host.Cfg = dev.Step, dev.Cfg
}

// ZeroGrad, Loss, LossAndGrad, ForwardLoss and Backward are the Model's: it moves its data
// through the backend's Memory.
func (r *Resident[T]) ZeroGrad() { r.M.ZeroGrad() }

// Loss returns the batch's weighted loss without touching the gradient.
func (r *Resident[T]) Loss(b *Batch, causal bool) float64 { return r.M.Loss(b, causal) }

// LossAndGrad returns the batch's weighted loss and adds its gradient to the device gradient.
func (r *Resident[T]) LossAndGrad(b *Batch, causal bool) float64 { return r.M.LossAndGrad(b, causal) }

// ForwardLoss is LossAndGrad's first half, as on Model.
func (r *Resident[T]) ForwardLoss(b *Batch, causal bool) float64 { return r.M.ForwardLoss(b, causal) }

// Backward adds the gradient of the last ForwardLoss.
func (r *Resident[T]) Backward(b *Batch, causal bool) { r.M.Backward(b, causal) }

// Prepare allocates the activations for micro-batches of B sequences of length L, so that an
// out-of-memory error surfaces here rather than as a panic inside a step.
func (r *Resident[T]) Prepare(B, L int) error { return r.M.ensure(B, L) }
