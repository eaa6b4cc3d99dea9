package model

import (
	"testing"

	"cbs/compute"
	"cbs/compute/cpu"
)

// benchConfig is torch_ref.py bench's default model: 256 wide, 4 layers of 4 heads of 64, ff 1024.
func benchConfig() Config {
	return Config{
		ModelType: "qwen3", HiddenSize: 256, IntermediateSize: 1024, NumLayers: 4,
		NumHeads: 4, NumKVHeads: 4, HeadDim: 64, RMSNormEps: 1e-6, RopeTheta: 10000,
		VocabSize: 256, MaxPositionEmbeddings: 2048, MaskTokenID: 255, Attention: Causal,
	}
}

// BenchmarkTrainStep times one full training step (forward, loss, backward, clipping and AdamW)
// of the default bench model on 16 sequences of 256 tokens. Profile it with
//
//	go test ./model -run '^$' -bench TrainStep/default/ar -cpuprofile cpu.out
func BenchmarkTrainStep(b *testing.B) { benchTrainStep(b, compute.PrecisionFP32) }

// BenchmarkTrainStepBF16 is BenchmarkTrainStep with bf16 matrix products (oneDNN); it skips
// where the library is absent.
func BenchmarkTrainStepBF16(b *testing.B) { benchTrainStep(b, compute.PrecisionBF16) }

// benchD512Config is the larger shape of the PyTorch comparison: 512 wide, 8 layers of 8
// heads of 64, ff 2048, run on 8 sequences of 512 tokens.
func benchD512Config() Config {
	c := benchConfig()
	c.HiddenSize, c.NumLayers, c.NumHeads, c.NumKVHeads, c.IntermediateSize = 512, 8, 8, 8, 2048
	return c
}

func benchTrainStep(b *testing.B, prec compute.Precision) {
	be := cpu.New(2)
	if err := be.SetPrecision(prec); err != nil {
		b.Skip(err)
	}
	shapes := []struct {
		name   string
		config Config
		B, L   int
	}{{"default", benchConfig(), 16, 256}, {"d512", benchD512Config(), 8, 512}}
	for _, shape := range shapes {
		for _, objective := range []string{AR, MDM} {
			b.Run(shape.name+"/"+objective, func(b *testing.B) {
				c, B, L := shape.config, shape.B, shape.L
				p := NewParams[float32](c)
				p.Init(1, 0.02)
				m := New(p, be)
				opt := NewAdamW[float32](DefaultOptim(), len(p.Data))
				batch := randomBatch(c, objective, B, L, 7)
				b.ReportAllocs()
				for b.Loop() {
					m.ZeroGrad()
					m.LossAndGrad(batch, IsCausal(objective))
					opt.Update(m, 1e-3)
				}
				b.ReportMetric(float64(B*L)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}

// BenchmarkTrainStepTiny is the same on torch_ref.py's tiny model (16 x 64 tokens), where the
// per-call overheads of the small products show.
func BenchmarkTrainStepTiny(b *testing.B) {
	c := Config{
		ModelType: "qwen3", HiddenSize: 64, IntermediateSize: 128, NumLayers: 2,
		NumHeads: 4, NumKVHeads: 2, HeadDim: 16, RMSNormEps: 1e-6, RopeTheta: 10000,
		VocabSize: 260, MaxPositionEmbeddings: 2048, MaskTokenID: 259, Attention: Causal,
	}
	const B, L = 16, 64
	p := NewParams[float32](c)
	p.Init(1, 0.02)
	m := New(p, cpu.New(2))
	opt := NewAdamW[float32](DefaultOptim(), len(p.Data))
	batch := randomBatch(c, AR, B, L, 7)
	b.ReportAllocs()
	for b.Loop() {
		m.ZeroGrad()
		m.LossAndGrad(batch, true)
		opt.Update(m, 1e-3)
	}
	b.ReportMetric(float64(B*L)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
