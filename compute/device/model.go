package device

import "cbs/model"

// Model is a model placed on a device. Training and cbs bench place theirs here so that the
// GPU's copies, and the cleanup when one of them fails, are written once.
type Model struct {
	// M computes, and is what AdamW.Update and model.GradNorm take. On a GPU its parameters,
	// gradient and activations are device memory: Go code must never read its slices.
	M   *model.Model[float32]
	res *model.Resident[float32]
}

// NewModel places host's parameters on h. On the CPU the model computes on host itself; on a
// GPU on a device copy, which Host brings back.
func (h *Handle) NewModel(host *model.Params[float32]) (*Model, error) {
	if h.Memory == nil {
		return &Model{M: model.New(host, h.Backend)}, nil
	}
	res, err := model.NewResident(host, h.Backend, h.Memory)
	if err != nil {
		return nil, err
	}
	return &Model{M: res.M, res: res}, nil
}

// Resident reports whether the model lives in device memory, where Go code cannot read it.
func (m *Model) Resident() bool { return m.res != nil }

// NewAdamW returns optimizer state with hyperparameters cfg that continues host's moments when
// host is not nil (a resumed or inherited optimizer), else starts from zero. On the CPU that
// state is host itself; on a GPU a device copy, which Host brings back.
func (m *Model) NewAdamW(cfg model.OptimConfig, host *model.AdamW[float32]) (*model.AdamW[float32], error) {
	if m.res != nil {
		return m.res.NewAdamW(cfg, host)
	}
	if host == nil {
		host = model.NewAdamW[float32](cfg, len(m.M.Params.Data))
	}
	host.Cfg = cfg
	return host, nil
}

// Host returns the parameters and opt's state in Go memory, for a checkpoint. On a GPU they are
// copied into the host parameters NewModel was given and into hostOpt (which must match opt's
// size); on the CPU they are m's own parameters and opt.
func (m *Model) Host(opt, hostOpt *model.AdamW[float32]) (*model.Params[float32], *model.AdamW[float32]) {
	if m.res == nil {
		return m.M.Params, opt
	}
	m.res.SyncToHost()
	m.res.DownloadAdamW(hostOpt, opt)
	return m.res.Host, hostOpt
}

// Free releases the device memory of the model and of the optimizers NewAdamW made.
func (m *Model) Free() {
	if m.res != nil {
		m.res.Free()
	}
}
