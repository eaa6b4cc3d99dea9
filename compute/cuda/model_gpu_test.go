package cuda

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"cbs/compute/cpu"
	"cbs/internal/rng"
	"cbs/model"
)

func smallConfig(objective string) model.Config {
	att := model.Causal
	if !model.IsCausal(objective) {
		att = model.Bidirectional
	}
	return model.Config{
		ModelType: "qwen3", HiddenSize: 64, IntermediateSize: 128, NumLayers: 2, NumHeads: 4, NumKVHeads: 2,
		HeadDim: 16, RMSNormEps: 1e-6, RopeTheta: 10000, VocabSize: 260, MaxPositionEmbeddings: 128,
		MaskTokenID: 259, Attention: att,
	}
}

// markovBatch draws sequences from a fixed sparse Markov chain (each token has 4 likely
// successors), so that a small model's loss falls well below log(V) within a few hundred steps.
func markovBatch(c model.Config, objective string, B, L int, step int) *model.Batch {
	V := c.VocabSize - 1 // the last id is the mask token
	s := rng.New(7, "markov", uint64(step))
	tokens := make([]int32, B*L)
	for i := range tokens {
		if i%L == 0 {
			tokens[i] = int32(s.Intn(V))
			continue
		}
		prev := int(tokens[i-1])
		tokens[i] = int32((prev*31 + 7 + 17*s.Intn(4)) % V)
	}
	b := model.NewBatch(B, L)
	if model.IsCausal(objective) {
		b.SetAR(tokens, B)
		return b
	}
	masks, p := make([]bool, B*L), make([]float64, B)
	for i := range p {
		p[i] = 0.1 + 0.8*s.Float64()
		for j := 0; j < L; j++ {
			masks[i*L+j] = s.Float64() < p[i]
		}
		masks[i*L] = true
	}
	if err := b.SetMDM(tokens, masks, p, c.MaskTokenID, B); err != nil {
		panic(err)
	}
	return b
}

// TestModelLossAndGradient: a small model's loss and every tensor's gradient on the GPU match
// the CPU within the precision's tolerance (relative L2 error per tensor).
func TestModelLossAndGradient(t *testing.T) {
	for _, pc := range []struct {
		p             Precision
		lossTol, gTol float64
	}{{FP32, 1e-5, 1e-4}, {BF16, 1e-2, 5e-2}} {
		b := gpu(t, pc.p)
		for _, objective := range []string{model.AR, model.MDM} {
			c := smallConfig(objective)
			host := model.NewParams[float32](c)
			host.Init(3, 0.1)
			batch := markovBatch(c, objective, 4, 64, 0)
			causal := model.IsCausal(objective)
			ref := model.New(host, cpu.New(2))
			ref.ZeroGrad()
			want := ref.LossAndGrad(batch, causal)
			res, err := model.NewResident(host, b, b)
			if err != nil {
				t.Fatal(err)
			}
			res.ZeroGrad()
			got := res.LossAndGrad(batch, causal)
			if math.Abs(got-want) > pc.lossTol*math.Abs(want) {
				t.Errorf("%s %s: loss %v, CPU %v", pc.p, objective, got, want)
			}
			g := make([]float32, len(host.Data))
			res.DownloadGrad(g)
			for i, tn := range host.Tensors {
				var num, den float64
				for j := tn.Offset; j < tn.Offset+tn.Size; j++ {
					d := float64(g[j]) - float64(ref.Grad[j])
					num += d * d
					den += float64(ref.Grad[j]) * float64(ref.Grad[j])
				}
				if e := math.Sqrt(num / math.Max(den, 1e-30)); e > pc.gTol || math.IsNaN(e) {
					t.Errorf("%s %s: tensor %d %s: gradient relative error %.3g > %g", pc.p, objective, i, tn.Name, e, pc.gTol)
				}
			}
			res.Free()
		}
	}
}

// TestTrainingTracksCPU trains the same small model for 200 steps on the CPU and on the GPU
// (bf16 products) from the same weights and batches; the GPU's loss curve must stay within 3%
// (plus 0.02 nats) of the CPU's at every step, and both must learn.
func TestTrainingTracksCPU(t *testing.T) {
	b := gpu(t, BF16)
	const steps, B, L = 200, 8, 64
	for _, objective := range []string{model.AR, model.MDM} {
		c := smallConfig(objective)
		causal := model.IsCausal(objective)
		p1 := model.NewParams[float32](c)
		p1.Init(11, 0.05)
		p2 := model.NewParams[float32](c)
		copy(p2.Data, p1.Data)
		cfg := model.DefaultOptim()
		cfg.LR = 3e-3
		cm := model.New(p1, cpu.New(2))
		co := model.NewAdamW[float32](cfg, len(p1.Data))
		gm, err := model.NewResident(p2, b, b)
		if err != nil {
			t.Fatal(err)
		}
		gopt, err := gm.NewAdamW(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		var first, lastC, lastG float64
		worst := 0.0
		for step := 0; step < steps; step++ {
			batch := markovBatch(c, objective, B, L, step)
			cm.ZeroGrad()
			lc := cm.LossAndGrad(batch, causal)
			co.Update(cm, cfg.LR)
			gm.ZeroGrad()
			lg := gm.LossAndGrad(batch, causal)
			gopt.Update(gm.M, cfg.LR)
			if step == 0 {
				first = lc
			}
			d := math.Abs(lg - lc)
			worst = math.Max(worst, d/lc)
			if d > 0.03*lc+0.02 || math.IsNaN(lg) {
				t.Fatalf("%s step %d: GPU loss %.5f, CPU %.5f", objective, step, lg, lc)
			}
			lastC, lastG = lc, lg
		}
		t.Logf("%s: loss %.4f -> CPU %.4f, GPU %.4f; worst relative gap %.4f", objective, first, lastC, lastG, worst)
		if lastC > 0.8*first {
			t.Errorf("%s: the CPU run did not learn (%.4f -> %.4f), so tracking it shows little", objective, first, lastC)
		}
		gm.Free()
	}
}

// TestBenchReport times training steps of a model on the GPU when CBS_GPU_BENCH names a JSON
// output file (the ~125M config by default: d768, 12 layers, 12 heads, seq 1024, vocab 50304):
// what scripts/gpu-check.sh runs until `cbs bench --device cuda` exists. Sizes can be changed
// with CBS_GPU_BENCH_{HIDDEN,LAYERS,HEADS,KV,FF,VOCAB,SEQ,BATCH,STEPS,PRECISION}.
func TestBenchReport(t *testing.T) {
	out := os.Getenv("CBS_GPU_BENCH")
	if out == "" {
		t.Skip("set CBS_GPU_BENCH=<file.json> to run the GPU training benchmark")
	}
	env := func(k string, d int) int {
		if v, err := strconv.Atoi(os.Getenv("CBS_GPU_BENCH_" + k)); err == nil {
			return v
		}
		return d
	}
	prec, err := ParsePrecision(os.Getenv("CBS_GPU_BENCH_PRECISION"))
	if err != nil {
		t.Fatal(err)
	}
	b := gpu(t, prec)
	c := model.Config{
		ModelType: "qwen3", HiddenSize: env("HIDDEN", 768), NumLayers: env("LAYERS", 12), NumHeads: env("HEADS", 12),
		VocabSize: env("VOCAB", 50304), RMSNormEps: 1e-6, RopeTheta: 10000, MaskTokenID: -1, Attention: model.Causal,
	}
	c.NumKVHeads = env("KV", c.NumHeads)
	c.HeadDim = c.HiddenSize / c.NumHeads
	c.IntermediateSize = env("FF", 4*c.HiddenSize)
	L, B, steps, warmup := env("SEQ", 1024), env("BATCH", 16), env("STEPS", 10), 3
	c.MaxPositionEmbeddings = L
	host := model.NewParams[float32](c)
	host.Init(0, 0.02)
	m, err := model.NewResident(host, b, b)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.Prepare(B, L); err != nil {
		t.Fatal(err)
	}
	opt, err := m.NewAdamW(model.DefaultOptim(), nil)
	if err != nil {
		t.Fatal(err)
	}
	batch := model.NewBatch(B, L)
	tokens := make([]int32, B*L)
	var totals, gpuMS []float64
	var loss float64
	for step := 0; step < warmup+steps; step++ {
		s := rng.New(0, "bench", uint64(step))
		for i := range tokens {
			tokens[i] = int32(s.Intn(c.VocabSize))
		}
		batch.SetAR(tokens, B)
		t0 := time.Now()
		ms, err := b.Time(func() {
			m.ZeroGrad()
			loss = m.LossAndGrad(batch, true)
			opt.Update(m.M, 1e-4)
		})
		if err != nil {
			t.Fatal(err)
		}
		if step >= warmup {
			totals = append(totals, time.Since(t0).Seconds())
			gpuMS = append(gpuMS, ms)
		}
	}
	sort.Float64s(totals)
	med := totals[len(totals)/2]
	d, qd, kd := c.HiddenSize, c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	linear := c.NumLayers*(qd*d+2*kd*d+d*qd+3*d*c.IntermediateSize) + c.VocabSize*d
	tok := float64(B * L)
	flops := 6*float64(linear)*tok + 12*float64(c.NumLayers)*float64(L)*float64(qd)*tok
	free, total := b.MemInfo()
	res := map[string]any{
		"backend": b.Name(), "info": b.Info(), "config": c, "batch": B, "seq": L, "steps": steps, "warmup": warmup,
		"params": len(host.Data), "tokens_per_step": B * L, "median_s": med, "min_s": totals[0],
		"gpu_ms": gpuMS, "tokens_per_s": tok / med, "tflops_per_s": flops / med / 1e12,
		"flops_formula": "torch_ref.py's: 6 * n_linear * tokens + 12 * layers * seq * heads * head_dim * tokens",
		"last_loss":     loss, "memory_used_bytes": total - free,
	}
	if peak := b.Info().Device.PeakBF16TFLOP; peak > 0 {
		res["mfu_vs_bf16_peak"] = flops / med / 1e12 / peak
	}
	j, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(out, append(j, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", j)
	fmt.Printf("gpu bench: %.0f tokens/s, %.1f TFLOP/s\n", tok/med, flops/med/1e12)
}
