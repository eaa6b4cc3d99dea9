// Package device opens the backend a command computes on, from a device string and a precision.
// Training, cbs bench and cbs eval all start their backend here, so a device means the same
// thing, is named the same way in logs and segments.jsonl, and is released the same way
// whichever command asked for it. It is the only package that imports compute/cuda (its
// tests aside): compute/cuda imports compute, so compute itself cannot hold the factory.
package device

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"cbs/compute"
	"cbs/compute/cpu"
	"cbs/compute/cuda"
)

// Kinds of device.
const (
	CPU  = "cpu"
	CUDA = "cuda"
	// Auto is GPU 0 when one is usable, else the CPU: a config that says auto stays portable,
	// since the choice is made where the run starts, not where the config was written.
	Auto = "auto"
)

// Precisions of the operands of the matrix products; accumulation is fp32 at every one.
const (
	FP32 = "fp32"
	BF16 = "bf16"
	TF32 = "tf32"
)

// Target is a parsed device string.
type Target struct {
	Kind    string // CPU, CUDA or Auto
	Ordinal int    // which GPU, for CUDA
}

func (t Target) String() string {
	if t.Kind == CUDA {
		return fmt.Sprintf("cuda:%d", t.Ordinal)
	}
	return t.Kind
}

// Parse reads a device string: "cpu", "cuda" (GPU 0), "cuda:N" or "auto". "" is auto, as in
// specs written before the device was recorded.
func Parse(s string) (Target, error) {
	switch {
	case s == "" || s == Auto:
		return Target{Kind: Auto}, nil
	case s == CPU:
		return Target{Kind: CPU}, nil
	case s == CUDA:
		return Target{Kind: CUDA}, nil
	case strings.HasPrefix(s, CUDA+":"):
		n, err := strconv.Atoi(s[len(CUDA+":"):])
		if err != nil || n < 0 {
			return Target{}, fmt.Errorf("want \"cuda:N\" with N a GPU ordinal >= 0")
		}
		return Target{Kind: CUDA, Ordinal: n}, nil
	}
	return Target{}, fmt.Errorf("want \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"")
}

// Allowed lists the precisions a kind of device accepts, its default first. bf16 is not the
// CPU's default: it needs oneDNN, and it changes a run's numbers. auto may end on either
// device, so it allows what both do.
func Allowed(kind string) []string {
	switch kind {
	case CUDA:
		return []string{BF16, TF32, FP32}
	case CPU:
		return []string{FP32, BF16}
	}
	return []string{FP32, BF16}
}

// CheckPrecision reports whether precision ("" for the device's default) is allowed on t,
// without opening anything: what a config is checked against before any run starts.
func CheckPrecision(t Target, precision string) error {
	allowed := Allowed(t.Kind)
	for _, p := range append(allowed, "") {
		if precision == p {
			return nil
		}
	}
	q := make([]string, len(allowed))
	for i, p := range allowed {
		q[i] = strconv.Quote(p)
	}
	list := strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
	hint := ""
	if precision == TF32 {
		hint = "; tf32 needs a cuda device"
	}
	switch t.Kind {
	case CPU:
		return fmt.Errorf("want %s on the CPU%s", list, hint)
	case CUDA:
		return fmt.Errorf("want %s on a GPU", list)
	}
	return fmt.Errorf("want %s with device auto, which may run on the CPU%s", list, hint)
}

// Error is a device or a precision that could not be honoured. Setting says which, so a caller
// can name it as its user wrote it: Keyed turns it into `run.device = "cuda:3": ...` or
// `--precision = "bf16": ...`.
type Error struct {
	Setting string // "device" or "precision"
	Value   string
	Err     error
}

func (e *Error) Error() string { return fmt.Sprintf("%s = %q: %v", e.Setting, e.Value, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Keyed names the setting of an *Error with prefix ("run.", "--"); other errors pass unchanged.
func Keyed(err error, prefix string) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("%s%s = %q: %w", prefix, e.Setting, e.Value, e.Err)
}

// Options say which device to open.
type Options struct {
	Device    string // see Parse
	Precision string // see Allowed; "" is the device's default
	Threads   int    // CPU goroutines (0: all cores)
	// Log, when set, is told in one line where auto landed and why.
	Log func(line string)
}

// Memory allocates a backend's own buffers and moves data between them and Go memory: what
// model.Resident needs of a GPU. *cuda.Backend implements it.
type Memory interface {
	Alloc(n int) ([]float32, error) // zeroed
	Free(x []float32)
	Upload(dst, src []float32)   // host src to device dst
	Download(dst, src []float32) // device src to host dst, complete on return
	Copy(dst, src []float32)     // device to device
	Zero(x []float32)
}

// GPUInfo says what a GPU backend loaded and compiled; GPUs is what the driver reports of the
// machine's GPUs. Both are the cuda package's, named here so no other package imports it.
type (
	GPUInfo = cuda.Info
	GPUs    = cuda.Probe
)

// ProbeGPUs lists the driver and the GPUs without compiling anything; the error says what is
// missing.
func ProbeGPUs() (*GPUs, error) { return cuda.ProbeDevices() }

// Handle is an open device.
type Handle struct {
	// Backend runs the operations. On a GPU its slices are device memory that Memory moves.
	Backend compute.Backend[float32]
	// Memory is nil where the backend computes on Go slices (the CPU).
	Memory Memory
	// Target is where it runs, never Auto.
	Target Target
	// Precision is that of the matrix products' operands: FP32, BF16 or TF32.
	Precision string

	cpu *cpu.CPU
	gpu *cuda.Backend
}

// Open starts the device o names at the precision o asks for. Its errors are *Error when the
// device or the precision is to blame.
func Open(o Options) (*Handle, error) {
	t, err := Parse(o.Device)
	if err != nil {
		return nil, &Error{Setting: "device", Value: o.Device, Err: err}
	}
	if err := CheckPrecision(t, o.Precision); err != nil {
		return nil, &Error{Setting: "precision", Value: o.Precision, Err: err}
	}
	switch t.Kind {
	case CPU:
		return openCPU(o)
	case CUDA:
		return openGPU(o, t)
	}
	h, why := openAuto(o)
	if o.Log != nil {
		o.Log(why)
	}
	if h == nil {
		return openCPU(o)
	}
	return h, nil
}

// openAuto opens GPU 0 when a driver sees one and the GPU backend starts on it; it returns nil
// otherwise, and in either case a line saying what it found.
func openAuto(o Options) (*Handle, string) {
	p, err := ProbeGPUs()
	switch {
	case err != nil:
		return nil, fmt.Sprintf("device auto: no GPU (%v); running on the CPU", err)
	case len(p.Devices) == 0:
		return nil, fmt.Sprintf("device auto: driver %s sees no GPU; running on the CPU", p.DriverPath)
	}
	h, err := openGPU(o, Target{Kind: CUDA})
	if err != nil {
		return nil, fmt.Sprintf("device auto: %s found but the GPU backend did not start (%v); running on the CPU", p.Devices[0].Name, errors.Unwrap(err))
	}
	return h, fmt.Sprintf("device auto: %s found; running on cuda:0", p.Devices[0].Name)
}

func openCPU(o Options) (*Handle, error) {
	c := cpu.New(o.Threads)
	prec := compute.PrecisionFP32
	if o.Precision == BF16 {
		prec = compute.PrecisionBF16
	}
	if err := c.SetPrecision(prec); err != nil {
		return nil, &Error{Setting: "precision", Value: o.Precision, Err: err}
	}
	return &Handle{Backend: c, Target: Target{Kind: CPU}, Precision: prec.String(), cpu: c}, nil
}

func openGPU(o Options, t Target) (*Handle, error) {
	prec, err := cuda.ParsePrecision(o.Precision)
	if err != nil {
		return nil, &Error{Setting: "precision", Value: o.Precision, Err: err}
	}
	g, err := cuda.Open(cuda.Options{Ordinal: t.Ordinal, Precision: prec})
	if err != nil {
		return nil, &Error{Setting: "device", Value: o.Device, Err: err}
	}
	return &Handle{Backend: g, Memory: g, Target: t, Precision: prec.String(), gpu: g}, nil
}

// Name says which implementation runs, with its library versions and precision: what logs and
// segments.jsonl record, so a run resumed elsewhere says where its rounding changed.
func (h *Handle) Name() string { return h.Backend.Name() }

// CPU is the CPU backend, for what only it reports (BLAS and oneDNN libraries); nil on a GPU.
func (h *Handle) CPU() *cpu.CPU { return h.cpu }

// GPU describes the GPU backend; nil on the CPU.
func (h *Handle) GPU() *GPUInfo {
	if h.gpu == nil {
		return nil
	}
	info := h.gpu.Info()
	return &info
}

// Sync waits for the device's queued work and reports its first asynchronous error: a GPU runs
// ops in the background, so timings need it. On the CPU every op is done on return.
func (h *Handle) Sync() error {
	if h.gpu == nil {
		return nil
	}
	return h.gpu.Sync()
}

// MemInfo is the device's free and total memory in bytes, where the device reports them (a
// GPU); ok is false on the CPU.
func (h *Handle) MemInfo() (free, total int64, ok bool) {
	if h.gpu == nil {
		return 0, 0, false
	}
	free, total = h.gpu.MemInfo()
	return free, total, true
}

// Close releases the device and every buffer still allocated on it. It may be called more than
// once.
func (h *Handle) Close() {
	if h.gpu != nil {
		h.gpu.Close()
	}
}
