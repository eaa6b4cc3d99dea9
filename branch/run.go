package branch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"cbs/compute/device"
	"cbs/data"
	"cbs/internal/atomicio"
	"cbs/model"
	"cbs/runfmt"
)

// CkptDir is the directory of a run's latest complete checkpoint, in its run directory.
const CkptDir = "ckpt"

// ErrInterrupted is returned when the context was cancelled: the run finished its step, wrote
// a checkpoint and stopped; running it again continues.
var ErrInterrupted = errors.New("interrupted")

// ErrDiverged is returned when the loss became NaN or exploded; state.json says at which step.
var ErrDiverged = errors.New("diverged")

// PanicError is returned when training panicked: state.json says failed and log.txt holds the
// stack.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Progress is reported after every step.
type Progress struct {
	ID         string
	Step       int
	Steps      int
	Tokens     int64
	Budget     int64
	TrainLoss  float64
	EvalLoss   float64 // NaN until the first eval
	TokensPerS float64
}

// Options are how a run is executed, not what it computes.
type Options struct {
	Dir      string         // run directory
	Progress func(Progress) // called after every step; may be nil
	Log      io.Writer      // human-readable log lines (also appended to log.txt); may be nil
	// Corpus, when set, is used instead of opening spec.Data again: branches of one sweep
	// share it. It must have been opened from the same data config.
	Corpus *data.Corpus
	// Threads, when set, is the CPU threads the run may use from its next step on: a local
	// sweep raises it for the branches still running when others finish. Results do not
	// depend on it.
	Threads *atomic.Int32
}

// gnsEMATokens is the time constant, in tokens, of the EMAs of the gradient-noise-scale
// numerator and denominator: one window for every batch size, so branches smooth alike.
const gnsEMATokens = 128 << 10

// A run has diverged when its loss is NaN or infinite, or when its smoothed training loss (an
// EMA with a time constant of lossEMATokens tokens, so every batch size smooths alike) rises
// above divergenceFactor times the lowest it has been, or above twice ln(vocabulary). Raw losses are no guide: a masked-diffusion
// batch of a few sequences can score several times the mean when its t draws are high.
const (
	divergenceFactor = 2
	lossEMATokens    = 64 << 10
)

// Run trains spec in opts.Dir, resuming from opts.Dir/ckpt when it holds a checkpoint of the
// same spec. It returns nil when the budget is done, ErrInterrupted when ctx was cancelled (after
// checkpointing), ErrDiverged, or another error (state.json then says failed).
func Run(ctx context.Context, spec *Spec, opts Options) (err error) {
	if err := spec.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return err
	}
	// Without the lock a second process on this directory would replace metrics.jsonl while the
	// first kept appending to the unlinked file. The lock is taken before state.json is touched:
	// that file belongs to whoever holds it.
	lk, err := atomicio.Lock(opts.Dir)
	if err != nil {
		return err
	}
	defer lk.Close()
	r := &runner{spec: spec, opts: opts}
	logFile, err := os.OpenFile(filepath.Join(opts.Dir, runfmt.LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	r.log = logFile
	defer func() {
		// A panic unwinds through here with err still nil: without recovering it the branch
		// would be recorded done at whatever step it reached.
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: debug.Stack()}
			fmt.Fprintf(r.log, "%s panic: %v\n%s\n", time.Now().UTC().Format(time.RFC3339), p, err.(*PanicError).Stack)
			if r.opts.Log != nil {
				fmt.Fprintf(r.opts.Log, "%s: panic: %v (stack in %s)\n", r.spec.ID, p, filepath.Join(r.opts.Dir, runfmt.LogFile))
			}
		}
		switch {
		case err == nil:
			r.writeState(runfmt.StateDone, "")
		case errors.Is(err, ErrInterrupted):
			r.writeState(runfmt.StatePending, "interrupted; run again to continue")
		case errors.Is(err, ErrDiverged):
			// writeState was called where divergence was detected.
		default:
			r.writeState(runfmt.StateFailed, err.Error())
		}
	}()
	err = r.setup()
	if r.release != nil {
		defer r.release()
	}
	if err != nil {
		return err
	}
	return r.loop(ctx)
}

type runner struct {
	spec   *Spec
	opts   Options
	log    io.Writer
	corpus *data.Corpus
	m      *model.Model[float32]
	opt    *model.AdamW[float32]
	state  model.TrainerState
	peakLR float64

	cursor     *data.Cursor
	tokens     []int32
	masks      []bool
	probs      []float64
	batch      *model.Batch
	lossEMA    float64 // EMA of the training loss, and its weight, for the divergence test
	lossWeight float64
	lossMin    float64 // lowest bias-corrected EMA once warm
	traceEMA   float64
	gradSqEMA  float64
	prevGrad   []float32 // the accumulated gradient before the current micro-batch
	swap       []float32 // the weights while eval runs on their average
	emaWeight  float64
	wallOffset float64
	lastEval   float64
	metrics    *os.File
	perf       *os.File

	// dev is the model on its device, and m its model that computes: on a GPU m's slices are
	// device memory, and hostOpt holds the optimizer state that checkpoints save.
	dev     *device.Model
	hostOpt *model.AdamW[float32]
	release func()
	// cpu is the CPU backend when the run computes there (nil on a GPU).
	cpu threadBudget
}

// threadBudget is a backend whose thread count a run may change between steps.
type threadBudget interface {
	Threads() int
	SetThreads(int)
}

func (r *runner) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	fmt.Fprintln(r.log, time.Now().UTC().Format(time.RFC3339), line)
	if r.opts.Log != nil {
		fmt.Fprintf(r.opts.Log, "%s: %s\n", r.spec.ID, line)
	}
}

func (r *runner) writeState(state, reason string) {
	st := runfmt.State{State: state, Reason: reason, Step: r.state.Step, Tokens: r.state.TokensSeen, StreamHash: r.state.StreamHash}
	if err := WriteState(r.opts.Dir, st); err != nil {
		r.logf("writing state: %v", err)
	}
}

// WriteState replaces dir/state.json with st. The file belongs to whoever holds the directory's
// lock.
func WriteState(dir string, st runfmt.State) error {
	return atomicio.WriteFile(filepath.Join(dir, runfmt.StateFile), st.Marshal(), 0o644)
}

// setup readies the run in steps, each with one job: the spec and the corpus, the starting
// point (the run's own checkpoint, its parent's, or fresh weights), the mask row an A2D
// conversion needs, the optimizer state, the device, the running statistics, and the record
// files.
func (r *runner) setup() error {
	if err := r.begin(); err != nil {
		return err
	}
	params, resumed, err := r.start()
	if err != nil {
		return err
	}
	if resumed == nil {
		params = r.addMaskRow(params) // a resumed run has its row already
	}
	if err := r.checkModel(params); err != nil {
		return err
	}
	r.initOptimizer(params, resumed != nil)
	backend, err := r.place(params)
	if err != nil {
		return err
	}
	r.restoreStats(resumed)
	if err := r.openRecords(); err != nil {
		return err
	}
	r.prepareBatches()
	c := r.corpus
	docs := ""
	if in := c.Info(); in.Documents > 0 {
		// Duplicates are said here, where a user reads what the run trains on.
		docs = fmt.Sprintf("%d documents, %d duplicates dropped, ", in.Documents, in.DuplicatesDropped)
	}
	r.logf("%d parameters, %s objective, corpus %s (%s%d tokens, unigram entropy %.4f nats/token), backend %s",
		len(params.Data), r.spec.Objective, c.Fingerprint(), docs, c.NumTokens(), c.UnigramEntropy(), backend)
	return r.recordSegment(backend)
}

// begin records the spec, marks the run running and opens its corpus, unless the caller shares
// one.
func (r *runner) begin() error {
	s := r.spec
	if err := WriteSpec(r.opts.Dir, s); err != nil {
		return err
	}
	r.writeState(runfmt.StateRunning, "")
	r.peakLR = s.Optim.LR * s.LRScale
	r.corpus = r.opts.Corpus
	if r.corpus == nil {
		var err error
		if r.corpus, err = data.Open(s.Data); err != nil {
			return err
		}
	}
	return nil
}

// start loads what the run starts from and sets r.state to go on from there: the run's own
// checkpoint when it has one (resumed is then its trainer state), else the parent checkpoint,
// else fresh weights. r.opt is set when there are moments to continue.
func (r *runner) start() (params *model.Params[float32], resumed *model.TrainerState, err error) {
	ckpt := filepath.Join(r.opts.Dir, CkptDir)
	if resumed, err = model.LoadTrainerState(ckpt); err != nil {
		return nil, nil, fmt.Errorf("resume: %w", err)
	}
	switch {
	case resumed != nil:
		params, err = r.resume(ckpt, resumed)
	case r.spec.Parent != "":
		params, err = r.fork()
	default:
		params, err = r.fresh()
	}
	if err != nil {
		return nil, nil, err
	}
	s := r.spec
	r.state.Objective, r.state.ConfigFingerprint = s.Objective, s.Fingerprint()
	sch := s.Schedule
	sch.Total = s.Budget
	r.state.Schedule, _ = json.Marshal(sch)
	return params, resumed, nil
}

// resume continues the run's own checkpoint, which must be of the same configuration.
func (r *runner) resume(ckpt string, resumed *model.TrainerState) (*model.Params[float32], error) {
	s := r.spec
	if fp := s.Fingerprint(); resumed.ConfigFingerprint != fp {
		return nil, fmt.Errorf("%s holds a checkpoint of a different configuration (fingerprint %s, this config %s): use another output directory or remove it", ckpt, resumed.ConfigFingerprint, fp)
	}
	params, err := model.Load[float32](ckpt)
	if err != nil {
		return nil, err
	}
	if r.opt, err = model.LoadOptimizer(ckpt, params, s.Optim.ModelOptim()); err != nil {
		return nil, err
	}
	r.state = *resumed
	r.logf("resuming at step %d (%d tokens)", r.state.Step, r.state.TokensSeen)
	return params, nil
}

// fork starts from the parent checkpoint: its weights, its moments when
// parent.optimizer_state is keep, and the rest of its token stream.
func (r *runner) fork() (*model.Params[float32], error) {
	s := r.spec
	params, notes, err := model.LoadNotes[float32](s.Parent)
	if err != nil {
		return nil, fmt.Errorf("parent.checkpoint: %w", err)
	}
	for _, n := range notes {
		r.logf("parent.checkpoint: %s", n)
	}
	if s.OptimizerState == "keep" {
		if r.opt, err = model.LoadOptimizer(s.Parent, params, s.Optim.ModelOptim()); err != nil {
			return nil, fmt.Errorf("parent.checkpoint: %w", err)
		}
		if r.opt == nil {
			return nil, fmt.Errorf("parent.optimizer_state = \"keep\" but %s has no %s", s.Parent, model.OptimizerFile)
		}
	}
	parent, err := model.LoadTrainerState(s.Parent)
	if err != nil {
		return nil, fmt.Errorf("parent.checkpoint: %w", err)
	}
	r.state = model.TrainerState{Seed: s.Seed}
	if parent != nil {
		r.state.DataCursor = parent.DataCursor // the branch continues the parent's token stream
		r.state.ForkCursor = parent.DataCursor
	}
	return params, nil
}

// fresh initialises the model of the [model] table, with the corpus tokenizer's vocabulary.
func (r *runner) fresh() (*model.Params[float32], error) {
	s, tok := r.spec, r.corpus.Tokenizer()
	c := model.Config{
		ModelType: "qwen3", HiddenSize: s.Init.Hidden, IntermediateSize: s.Init.FF, NumLayers: s.Init.Layers,
		NumHeads: s.Init.Heads, NumKVHeads: s.Init.KVHeads, HeadDim: s.Init.HeadDim, RMSNormEps: s.Init.RMSNormEps,
		RopeTheta: s.Init.RopeTheta, VocabSize: tok.VocabSize(), TieWordEmbeddings: s.Init.Tie,
		MaxPositionEmbeddings: s.SeqLen(), MaskTokenID: int(tok.Mask()), Tokenizer: tok.Name(),
	}
	if s.Objective == model.MDM {
		c.Attention = model.Bidirectional
	} else {
		c.Attention = model.Causal
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	params := model.NewParams[float32](c)
	params.Init(s.InitSeed, s.Init.InitStd)
	r.state = model.TrainerState{Seed: s.Seed}
	return params, nil
}

// addMaskRow readies a checkpoint with no spare token for the mdm objective (an A2D
// conversion): its vocabulary, and the moments the run continues, gain a mask row.
func (r *runner) addMaskRow(params *model.Params[float32]) *model.Params[float32] {
	if r.spec.Objective != model.MDM || params.Config.MaskTokenID >= 0 {
		return params
	}
	grown := model.AddMaskToken(params)
	if r.opt != nil {
		r.opt = model.AddMaskTokenMoments(r.opt, params, grown)
	}
	r.logf("added mask token %d (vocab_size %d) for the mdm objective", grown.Config.MaskTokenID, grown.Config.VocabSize)
	return grown
}

// checkModel checks the model against the corpus and the objective, and gives it the attention
// the objective trains with, whatever its checkpoint recorded.
func (r *runner) checkModel(params *model.Params[float32]) error {
	s, tok := r.spec, r.corpus.Tokenizer()
	c := params.Config
	if c.VocabSize < tok.VocabSize() {
		return fmt.Errorf("model vocab_size = %d is smaller than tokenizer %s's %d", c.VocabSize, tok.Name(), tok.VocabSize())
	}
	if c.MaxPositionEmbeddings < s.SeqLen() {
		r.logf("warning: data.seq_len = %d exceeds the model's max_position_embeddings = %d", s.SeqLen(), c.MaxPositionEmbeddings)
	}
	if s.Objective == model.MDM && c.MaskTokenID < 0 {
		return fmt.Errorf("objective mdm needs a mask token: the checkpoint's config.json has no mask_token_id")
	}
	if s.Objective == model.MDM {
		params.Config.Attention = model.Bidirectional
	} else {
		params.Config.Attention = model.Causal
	}
	return nil
}

// initOptimizer gives the run its optimizer state in Go memory: the moments it continues, or
// zero ones, under this run's hyperparameters, with the weight average eval measures when it
// keeps one.
func (r *runner) initOptimizer(params *model.Params[float32], resumed bool) {
	s := r.spec
	if r.opt == nil {
		r.opt = model.NewAdamW[float32](s.Optim.ModelOptim(), len(params.Data))
	}
	r.opt.Cfg = s.Optim.ModelOptim()
	switch {
	case s.EvalEWA == 0:
		r.opt.EWA = nil // a parent's average is not this run's
	case !resumed || r.opt.EWA == nil:
		// The average starts at the weights the run starts from, a fork's parent's included.
		r.opt.EWA = append([]float32(nil), params.Data...)
	}
}

// place opens run.device at run.precision and puts the model and its optimizer state there,
// returning the backend's name. The state in Go memory stays r.hostOpt, which checkpoints
// save; on the CPU it is r.opt itself.
func (r *runner) place(params *model.Params[float32]) (string, error) {
	s := r.spec
	h, err := device.Open(device.Options{Device: s.Device, Precision: s.Precision, Threads: s.Threads,
		Log: func(line string) { r.logf("%s", line) }})
	if err != nil {
		return "", device.Keyed(err, "run.")
	}
	if h.Memory != nil && s.EvalEWA > 0 {
		h.Close()
		return "", fmt.Errorf("eval.weight_average = %v: the weight average is kept on the CPU only; set run.device = \"cpu\" or remove the key", s.EvalEWA)
	}
	m, err := h.NewModel(params)
	if err != nil {
		h.Close()
		return "", fmt.Errorf("run.device = %q: %w", s.Device, err)
	}
	opt, err := m.NewAdamW(r.opt.Cfg, r.opt)
	if err != nil {
		m.Free()
		h.Close()
		return "", fmt.Errorf("run.device = %q: %w", s.Device, err)
	}
	r.dev, r.m, r.hostOpt, r.opt = m, m.M, r.opt, opt
	if c := h.CPU(); c != nil {
		r.cpu = c
	}
	r.release = func() { m.Free(); h.Close() }
	if free, total, ok := h.MemInfo(); ok {
		r.logf("%s: %s of %s memory free", h.Target, model.HumanBytes(float64(free)), model.HumanBytes(float64(total)))
	}
	return h.Name(), nil
}

// restoreStats continues the running statistics of the checkpoint the run resumes from; any
// other run starts them at zero.
func (r *runner) restoreStats(resumed *model.TrainerState) {
	r.lastEval = math.NaN()
	if resumed == nil {
		return
	}
	st := resumed.Stats
	r.lossEMA, r.lossWeight, r.lossMin = st.LossEMA, st.LossEMAWeight, st.LossEMAMin
	r.traceEMA, r.gradSqEMA, r.emaWeight = st.GNSTraceEMA, st.GNSGradSqEMA, st.GNSEMAWeight
	r.wallOffset = st.WallS
}

// openRecords opens metrics.jsonl and perf.jsonl for appending, first dropping the lines past
// the checkpoint: they belong to steps that will be redone.
func (r *runner) openRecords() (err error) {
	metrics, perf := filepath.Join(r.opts.Dir, runfmt.MetricsFile), filepath.Join(r.opts.Dir, runfmt.PerfFile)
	for _, path := range []string{metrics, perf} {
		if err := truncateJSONL(path, r.state.Step); err != nil {
			return err
		}
	}
	if r.metrics, err = os.OpenFile(metrics, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return err
	}
	r.perf, err = os.OpenFile(perf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	return err
}

// prepareBatches positions the token stream at the run's cursor and allocates one
// micro-batch's buffers.
func (r *runner) prepareBatches() {
	s := r.spec
	r.cursor = r.corpus.Cursor(r.state.DataCursor)
	r.cursor.Replica = data.Replica{Index: int64(s.Replicate), From: r.state.ForkCursor}
	L := s.SeqLen()
	r.tokens, r.masks, r.probs = make([]int32, s.MicroBatch*L), make([]bool, s.MicroBatch*L), make([]float64, s.MicroBatch)
	r.batch = model.NewBatch(s.MicroBatch, L)
}

var threadCount = regexp.MustCompile(`\d+ threads?`)

// recordSegment appends this start to segments.jsonl, and warns when the backend differs from
// the one the run last trained under (thread counts aside: they never change the numbers).
func (r *runner) recordSegment(backend string) error {
	var last runfmt.Segment
	if segs, _ := runfmt.ReadSegments(r.opts.Dir); len(segs) > 0 {
		last = segs[len(segs)-1]
	}
	if last.Backend != "" && r.state.Step > 0 && threadCount.ReplaceAllString(last.Backend, "") != threadCount.ReplaceAllString(backend, "") {
		r.logf("warning: resuming at step %d under %s; the steps before it ran under %s, so from here the numbers can differ in rounding from a run never interrupted", r.state.Step, backend, last.Backend)
	}
	f, err := os.OpenFile(filepath.Join(r.opts.Dir, runfmt.SegmentsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	return r.appendLine(f, runfmt.Segment{FromStep: r.state.Step, Backend: backend})
}

// truncateJSONL keeps the lines of path whose "step" is at most step.
func truncateJSONL(path string, step int) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var keep bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		var l struct {
			Step *int `json:"step"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Step == nil || *l.Step > step {
			break // a torn last line, or the first line of a step to redo
		}
		keep.Write(sc.Bytes())
		keep.WriteByte('\n')
	}
	if keep.Len() == len(b) {
		return nil
	}
	return atomicio.WriteFile(path, keep.Bytes(), 0o644)
}

func (r *runner) appendLine(f *os.File, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n')) // one write per line: appends are line-atomic
	return err
}

func (r *runner) loop(ctx context.Context) error {
	defer r.metrics.Close()
	defer r.perf.Close()
	s := r.spec
	steps, accum, L := s.Steps(), s.Accum(), s.SeqLen()
	microTokens := int64(s.MicroBatch * L)
	start := time.Now()
	for r.state.Step < steps {
		if ctx.Err() != nil {
			if err := r.checkpoint(start); err != nil {
				return err
			}
			r.logf("interrupted at step %d; checkpoint written", r.state.Step)
			return ErrInterrupted
		}
		r.adoptThreads()
		t0 := time.Now()
		lr := r.peakLR * s.Schedule.withTotal(s.Budget).Factor(Tokens(r.state.TokensSeen)+s.BatchTokens)
		r.m.ZeroGrad()
		var loss, smallSq float64
		for a := 0; a < accum; a++ {
			if err := r.fill(); err != nil {
				return err
			}
			loss += r.m.LossAndGrad(r.batch, model.IsCausal(s.Objective))
			if accum > 1 {
				smallSq += r.microGradSq(a, accum) / float64(r.gnsMicroBatches(accum))
			}
		}
		st := r.opt.Update(r.m, lr)
		r.averageWeights()
		r.state.Step++
		r.state.TokensSeen += int64(s.BatchTokens)
		r.state.BatchTokens, r.state.LR = int64(s.BatchTokens), lr
		r.state.DataCursor = r.cursor.Next
		exploded := r.trackLoss(loss)
		met := runfmt.Metrics{Tokens: r.state.TokensSeen, Step: r.state.Step, LR: lr, TrainLoss: ptr(loss), GradNorm: ptr(st.GradNorm)}
		if accum > 1 {
			r.gns(&met, smallSq, sq(st.GradNorm), microTokens, int64(s.BatchTokens))
		}
		// On a GPU the weights stay on the device; a NaN or Inf in them reaches the loss and the
		// gradient norm within a step.
		finite := !math.IsNaN(st.GradNorm) && !math.IsInf(st.GradNorm, 0) && (r.dev.Resident() || r.m.Params.Finite())
		if math.IsNaN(loss) || math.IsInf(loss, 0) || exploded || !finite {
			met.TrainLoss = nil
			r.appendLine(r.metrics, met)
			reason := fmt.Sprintf("training loss %v at step %d (smoothed %.4g, lowest smoothed %.4g)", loss, r.state.Step, r.lossEMA/r.lossWeight, r.lossMin)
			r.writeState(runfmt.StateDiverged, reason)
			r.logf("diverged: %s", reason)
			return fmt.Errorf("%w: %s", ErrDiverged, reason)
		}
		final := r.state.Step == steps
		if final || (s.EvalEvery > 0 && r.state.TokensSeen%int64(s.EvalEvery) == 0) {
			if err := r.withAveragedWeights(func() error { return r.eval(&met) }); err != nil {
				return err
			}
		}
		if err := r.appendLine(r.metrics, met); err != nil {
			return err
		}
		dt := time.Since(t0).Seconds()
		wall := r.wallOffset + time.Since(start).Seconds()
		tps := float64(s.BatchTokens) / dt
		if err := r.appendLine(r.perf, runfmt.Perf{Step: r.state.Step, Tokens: r.state.TokensSeen, TokensPerS: tps, WallS: wall}); err != nil {
			return err
		}
		if r.opts.Progress != nil {
			r.opts.Progress(Progress{ID: s.ID, Step: r.state.Step, Steps: steps, Tokens: r.state.TokensSeen,
				Budget: int64(s.Budget), TrainLoss: loss, EvalLoss: r.lastEval, TokensPerS: tps})
		}
		if final || (s.CheckpointEvery > 0 && r.state.TokensSeen%int64(s.CheckpointEvery) == 0) {
			if err := r.checkpoint(start); err != nil {
				return err
			}
		}
	}
	r.logf("done: %d steps, %d tokens", r.state.Step, r.state.TokensSeen)
	return nil
}

func sq(x float64) float64   { return x * x }
func ptr(x float64) *float64 { return &x }
func (s Schedule) withTotal(t Tokens) Schedule {
	s.Total = t
	return s
}

// fill reads the next micro-batch from the stream into r.batch.
func (r *runner) fill() error {
	s := r.spec
	first := r.cursor.Read(r.tokens)
	r.hashTokens(r.tokens)
	if s.Objective == model.AR {
		r.batch.SetAR(r.tokens, s.BatchSeqs())
		return nil
	}
	data.MDMBatchMasks(s.Seed, data.PurposeTrainMask, first, s.MaskEps, s.SeqLen(), r.masks, r.probs)
	return r.batch.SetMDM(r.tokens, r.masks, r.probs, r.m.Cfg.MaskTokenID, s.BatchSeqs())
}

// trackLoss updates the smoothed training loss and reports whether it has exploded.
func (r *runner) trackLoss(loss float64) bool {
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return false // reported as such by the caller
	}
	beta := math.Exp(-float64(r.spec.BatchTokens) / lossEMATokens)
	r.lossEMA = beta*r.lossEMA + (1-beta)*loss
	r.lossWeight = beta*r.lossWeight + (1 - beta)
	smoothed := r.lossEMA / r.lossWeight
	// ln V is the loss of a model that knows nothing, under either objective: twice that is an
	// explosion whatever the history.
	if smoothed > 2*math.Log(float64(r.m.Cfg.VocabSize)) {
		return true
	}
	if r.state.TokensSeen < min(lossEMATokens, int64(r.spec.Budget)/8) {
		return false // not enough tokens smoothed yet
	}
	if r.lossMin == 0 || smoothed < r.lossMin {
		r.lossMin = smoothed
	}
	return smoothed > divergenceFactor*r.lossMin
}

// hashTokens folds tokens into the running stream hash (FNV-1a over the token ids).
func (r *runner) hashTokens(tokens []int32) {
	h := uint64(14695981039346656037)
	if r.state.StreamHash != "" {
		h, _ = strconv.ParseUint(r.state.StreamHash, 16, 64)
	}
	for _, t := range tokens {
		h ^= uint64(uint32(t))
		h *= 1099511628211
	}
	r.state.StreamHash = strconv.FormatUint(h, 16)
}

// gnsMicroBatches is how many micro-batch gradients a step's small-batch estimate averages:
// every one on the CPU, where the accumulated gradient is host memory, the first on a GPU.
func (r *runner) gnsMicroBatches(accum int) int {
	if r.dev.Resident() {
		return 1
	}
	return accum
}

// microGradSq is the squared norm of micro-batch a's own gradient, rescaled to the mean over its
// sequences: the accumulated gradient less what it held before the micro-batch. On a GPU only
// the first micro-batch counts (its gradient is the accumulated one), and later ones add 0.
func (r *runner) microGradSq(a, accum int) float64 {
	scale := float64(accum)
	if r.dev.Resident() {
		if a > 0 {
			return 0
		}
		return sq(model.GradNorm(r.m) * scale)
	}
	g := r.m.Grad
	if len(r.prevGrad) != len(g) {
		r.prevGrad = make([]float32, len(g))
	}
	if a == 0 {
		clear(r.prevGrad)
	}
	var ss float64
	for i, v := range g {
		d := float64(v) - float64(r.prevGrad[i])
		ss += d * d
	}
	copy(r.prevGrad, g)
	return ss * scale * scale
}

// gns records the gradient-noise-scale estimates of McCandlish et al.: unbiased |G|^2 and
// tr(Sigma) from the micro-batches (bSmall tokens each; smallSq is the mean of their squared
// norms) and the whole batch (bBig tokens), smoothed as bias-corrected EMAs with a time constant
// in tokens; B_simple is the ratio of the EMAs.
func (r *runner) gns(met *runfmt.Metrics, smallSq, bigSq float64, bSmall, bBig int64) {
	bs, bb := float64(bSmall), float64(bBig)
	g2 := (bb*bigSq - bs*smallSq) / (bb - bs)
	tr := (smallSq - bigSq) / (1/bs - 1/bb)
	beta := math.Exp(-bb / gnsEMATokens)
	r.traceEMA = beta*r.traceEMA + (1-beta)*tr
	r.gradSqEMA = beta*r.gradSqEMA + (1-beta)*g2
	r.emaWeight = beta*r.emaWeight + (1 - beta)
	te, ge := r.traceEMA/r.emaWeight, r.gradSqEMA/r.emaWeight
	met.GNSSmallSq, met.GNSBigSq, met.GNSBSmall, met.GNSBBig = ptr(smallSq), ptr(bigSq), bSmall, bBig
	met.GNSTraceEMA, met.GNSGradSqEMA = ptr(te), ptr(ge)
	if ge > 0 {
		met.GNSBSimple = ptr(te / ge)
	}
}

// adoptThreads gives the CPU backend the thread budget of Options.Threads when that changed.
func (r *runner) adoptThreads() {
	if r.opts.Threads == nil || r.cpu == nil {
		return
	}
	if n := int(r.opts.Threads.Load()); n > 0 && n != r.cpu.Threads() {
		r.cpu.SetThreads(n)
		r.logf("%d threads from step %d on (branches that ran beside it finished)", n, r.state.Step+1)
	}
}

// averageWeights moves the weight average toward the weights by one step's worth of tokens: the
// same time constant in tokens for every batch size, so branches average alike.
func (r *runner) averageWeights() {
	ewa := r.opt.EWA
	if ewa == nil {
		return
	}
	beta := math.Exp(-float64(r.spec.BatchTokens) / float64(r.spec.EvalEWA))
	for i, w := range r.m.Params.Data {
		ewa[i] = float32(beta*float64(ewa[i]) + (1-beta)*float64(w))
	}
}

// withAveragedWeights runs f with the model's weights replaced by their average, when the run
// keeps one, and puts the weights back.
func (r *runner) withAveragedWeights(f func() error) error {
	if r.opt.EWA == nil {
		return f()
	}
	w := r.m.Params.Data
	if len(r.swap) != len(w) {
		r.swap = make([]float32, len(w))
	}
	copy(r.swap, w)
	copy(w, r.opt.EWA)
	defer copy(w, r.swap)
	return f()
}

// evalShards is the number of contiguous groups the eval set is split into for the bootstrap.
const evalShards = 8

// eval computes the loss on the frozen eval set: every eval sequence with, for mdm, its frozen
// mask and t. The loss is the mean over sequences of each sequence's loss, overall and per
// contiguous shard.
func (r *runner) eval(met *runfmt.Metrics) error {
	s := r.spec
	n := r.corpus.NumEvalSeqs()
	if n == 0 {
		return nil
	}
	L, mb := s.SeqLen(), s.MicroBatch
	shards := min(evalShards, n)
	shardSum := make([]float64, shards)
	shardN := make([]int, shards)
	causal := model.IsCausal(s.Objective)
	for sh := 0; sh < shards; sh++ {
		first, end := sh*n/shards, (sh+1)*n/shards
		shardN[sh] = end - first
		// Micro-batches stay inside a shard, so each loss belongs to one shard. With a
		// normalisation of one sequence, a batch's loss is the sum of its sequences' losses.
		for lo := first; lo < end; lo += mb {
			hi := min(lo+mb, end)
			b := r.batch
			if hi-lo != mb {
				b = model.NewBatch(hi-lo, L)
			}
			toks := r.tokens[:(hi-lo)*L]
			for k := lo; k < hi; k++ {
				r.corpus.EvalSeq(k, toks[(k-lo)*L:(k-lo+1)*L])
			}
			if s.Objective == model.AR {
				b.SetAR(toks, 1)
			} else {
				for k := lo; k < hi; k++ {
					r.probs[k-lo] = data.EvalMask(s.EvalSeed, k, s.MaskEps, r.masks[(k-lo)*L:(k-lo+1)*L])
				}
				if err := b.SetMDM(toks, r.masks[:(hi-lo)*L], r.probs[:hi-lo], r.m.Cfg.MaskTokenID, 1); err != nil {
					return err
				}
			}
			shardSum[sh] += r.m.Loss(b, causal)
		}
	}
	var total float64
	met.EvalShards = make([]float64, shards)
	for i := range shardSum {
		met.EvalShards[i] = shardSum[i] / float64(shardN[i])
		total += shardSum[i]
	}
	met.EvalLoss = ptr(total / float64(n))
	r.lastEval = *met.EvalLoss
	return nil
}

func (r *runner) checkpoint(start time.Time) error {
	r.state.Stats = model.RunningStats{
		LossEMA: r.lossEMA, LossEMAWeight: r.lossWeight, LossEMAMin: r.lossMin,
		GNSTraceEMA: r.traceEMA, GNSGradSqEMA: r.gradSqEMA, GNSEMAWeight: r.emaWeight,
		WallS: r.wallOffset + time.Since(start).Seconds(),
	}
	st := r.state
	params, opt := r.dev.Host(r.opt, r.hostOpt)
	err := model.Save(filepath.Join(r.opts.Dir, CkptDir), params, opt, &st, "")
	if err == nil {
		// state.json follows the checkpoint, so status shows how far a running branch has got.
		r.writeState(runfmt.StateRunning, "")
	}
	return err
}
