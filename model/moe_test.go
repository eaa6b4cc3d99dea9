package model

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cbs/compute/cpu"
	"cbs/internal/rng"
)

// moeConfig is a tiny Qwen3-MoE config: 3 layers, hidden 16, experts of width 12.
func moeConfig(experts, k int, norm bool, step int, mlpOnly []int, aux float64, tied bool) Config {
	c := tinyConfig(4, 2, tied)
	c.ModelType, c.NumLayers = Qwen3MoE, 3
	c.NumExperts, c.NumExpertsPerTok, c.MoEIntermediateSize, c.NormTopKProb = experts, k, 12, norm
	c.DecoderSparseStep, c.MLPOnlyLayers = step, mlpOnly
	c.RouterAuxLossCoef, c.OutputRouterLogits = aux, aux > 0
	return c
}

// routing is every sparse layer's top-k choice of the last forward pass.
func routing[T float32 | float64](m *Model[T]) []int32 {
	var r []int32
	for _, a := range m.ws.acts {
		if a.moe != nil {
			r = append(r, a.moe.sel...)
		}
	}
	return r
}

// TestMoELayout: the sparse layers, tensor names, groups and parameter counts follow the config;
// Layout, NumParams and ParamCount agree.
func TestMoELayout(t *testing.T) {
	c := moeConfig(4, 2, true, 2, []int{3}, 0.01, false)
	c.NumLayers = 6 // sparse: (l+1) % 2 == 0 and l != 3, so layers 1 and 5
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var sparse []int
	for l := range c.NumLayers {
		if c.Sparse(l) {
			sparse = append(sparse, l)
		}
	}
	if !slices.Equal(sparse, []int{1, 5}) || c.SparseLayers() != 2 {
		t.Fatalf("sparse layers %v, want [1 5]", sparse)
	}
	p := NewParams[float32](c)
	for _, name := range []string{"model.layers.0.mlp.gate_proj.weight", "model.layers.3.mlp.down_proj.weight",
		"model.layers.1.mlp.gate.weight", "model.layers.5.mlp.experts.3.down_proj.weight"} {
		if _, ok := p.Lookup(name); !ok {
			t.Errorf("no tensor %s", name)
		}
	}
	for _, name := range []string{"model.layers.1.mlp.gate_proj.weight", "model.layers.3.mlp.gate.weight"} {
		if _, ok := p.Lookup(name); ok {
			t.Errorf("unexpected tensor %s", name)
		}
	}
	for _, tn := range p.Tensors {
		want := ""
		switch {
		case strings.HasSuffix(tn.Name, "mlp.gate.weight"):
			want = GroupRouter
		case strings.Contains(tn.Name, ".experts."):
			want = GroupMLP
		}
		if want != "" && tn.Group != want {
			t.Errorf("%s: group %s, want %s", tn.Name, tn.Group, want)
		}
	}
	if i, _ := p.Lookup("model.layers.5.mlp.experts.3.down_proj.weight"); !slices.Equal(p.Tensors[i].Shape, []int{16, 12}) {
		t.Errorf("expert down_proj shape %v, want [16 12]", p.Tensors[i].Shape)
	}
	for _, cc := range []Config{c, moeConfig(3, 1, false, 3, []int{2, 2, 0}, 0, true), moeConfig(5, 2, true, 1, []int{0, 1, 2}, 0.1, false),
		moeConfig(2, 2, false, 4, nil, 0, false)} {
		if got := cc.ParamCount(); got != float64(NumParams(cc)) {
			t.Errorf("step %d, mlp-only %v: ParamCount %v, NumParams %d", cc.DecoderSparseStep, cc.MLPOnlyLayers, got, NumParams(cc))
		}
	}
	// No sparse layer: no aux loss, and nothing divides by zero.
	none := moeConfig(5, 2, true, 1, []int{0, 1, 2}, 0.1, false)
	m0 := New(perturbedParams(none, 1), cpu.Reference[float64]{})
	b0 := randomBatch(none, AR, 1, 4, 1)
	if l, aux := m0.Loss(b0, true), m0.ForwardLoss(b0, true); math.IsNaN(aux) || l != aux {
		t.Errorf("all layers dense: loss %v, training loss %v", l, aux)
	}
	if _, ok := m0.AuxLoss(); ok {
		t.Error("all layers dense: AuxLoss reports a loss")
	}
	// A size that cannot fit is blamed on the expert count.
	big := moeConfig(4, 2, true, 1, nil, 0, false)
	big.NumExperts = 1 << 40
	if err := big.Validate(); err == nil || !strings.Contains(err.Error(), "num_experts") {
		t.Errorf("2^40 experts: err = %v, want one naming num_experts", err)
	}
	// One token reads the router and 2 of the 4 experts of each sparse layer.
	if got, want := c.ActiveParamCount(), c.ParamCount()-2*2*3*12*16; got != want {
		t.Errorf("ActiveParamCount %v, want %v", got, want)
	}
	m := New(p, cpu.Reference[float32]{})
	if i, _ := p.Lookup("model.norm.weight"); &m.finalNorm(p.Data)[0] != &p.View(i)[0] {
		t.Error("finalNorm is not model.norm.weight")
	}
	if i, _ := p.Lookup("lm_head.weight"); &m.head(p.Data)[0] != &p.View(i)[0] {
		t.Error("head is not lm_head.weight")
	}
	w := m.layer(p.Data, 5)
	if i, _ := p.Lookup("model.layers.5.mlp.gate.weight"); &w.router[0] != &p.View(i)[0] {
		t.Error("layer 5's router view is wrong")
	}
	_, _, down := m.expert(p.Data, w, 3)
	if i, _ := p.Lookup("model.layers.5.mlp.experts.3.down_proj.weight"); &down[0] != &p.View(i)[0] {
		t.Error("layer 5's expert 3 view is wrong")
	}
}

// TestMoEConfigJSON: config.json round-trips, takes Hugging Face's defaults for missing keys,
// and names the key of every inconsistency; a dense config's JSON has no MoE key.
func TestMoEConfigJSON(t *testing.T) {
	c := moeConfig(8, 2, true, 2, []int{0}, 0.01, true)
	b := c.JSON()
	for _, key := range []string{`"model_type": "qwen3_moe"`, `"Qwen3MoeForCausalLM"`, `"num_experts": 8`, `"mlp_only_layers": [`,
		`"router_aux_loss_coef": 0.01`, `"output_router_logits": true`, `"norm_topk_prob": true`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("config.json lacks %s:\n%s", key, b)
		}
	}
	got, err := ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
	}
	dense := string(tinyConfig(4, 2, false).JSON())
	for _, key := range []string{"experts", "moe", "router", "sparse", "topk", "mlp_only"} {
		if strings.Contains(dense, key) {
			t.Errorf("dense config.json mentions %q:\n%s", key, dense)
		}
	}
	// Hugging Face's defaults; a dense model_type ignores expert keys.
	const sizes = `"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 10`
	minimal := `{"model_type": "qwen3_moe", ` + sizes
	got, err = ParseConfig([]byte(minimal + "}"))
	if err != nil {
		t.Fatal(err)
	}
	if got.NumExperts != 128 || got.NumExpertsPerTok != 8 || got.MoEIntermediateSize != 768 || got.NormTopKProb ||
		got.DecoderSparseStep != 1 || got.MLPOnlyLayers != nil || got.RouterAuxLossCoef != 0.001 || got.OutputRouterLogits || got.AuxLossOn() {
		t.Errorf("defaults: %+v", got)
	}
	got, err = ParseConfig([]byte(`{"model_type": "qwen3", "num_experts": 4, "num_experts_per_tok": 2, ` + sizes + "}"))
	if err != nil || got.MoE() || got.ModelType != Qwen3 {
		t.Errorf("qwen3 with num_experts: %+v, %v", got, err)
	}
	for _, tc := range []struct{ edit, key string }{
		{`"num_experts": 0`, "num_experts"},
		{`"num_experts": 4, "num_experts_per_tok": 5`, "num_experts_per_tok"},
		{`"moe_intermediate_size": 0`, "moe_intermediate_size"},
		{`"decoder_sparse_step": 0`, "decoder_sparse_step"},
		{`"mlp_only_layers": [2]`, "mlp_only_layers"},
		{`"router_aux_loss_coef": -1`, "router_aux_loss_coef"},
	} {
		_, err := ParseConfig([]byte(minimal + ", " + tc.edit + "}"))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: err = %v, want one naming %s", tc.edit, err, tc.key)
		}
	}
	d := tinyConfig(4, 2, false)
	d.NumExperts = 4
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "model_type") {
		t.Errorf("qwen3 with experts: err = %v", err)
	}
}

// TestMoEGradient compares the hand-written backward pass with 5-point finite differences in
// float64, along a random direction and the largest-gradient entry of every tensor. A direction
// whose stencil changes a top-k choice has no derivative and is skipped (the count is logged),
// as the reference's own check does.
func TestMoEGradient(t *testing.T) {
	cases := []struct {
		name string
		c    Config
	}{
		{"E4-k2-norm-aux", moeConfig(4, 2, true, 1, nil, 0.05, false)},
		{"E4-k2-raw", moeConfig(4, 2, false, 1, nil, 0, true)},
		{"E5-k1-raw-aux-step2", moeConfig(5, 1, false, 2, nil, 0.1, false)},
		{"E3-k3-norm-aux-mlponly0", moeConfig(3, 3, true, 1, []int{0}, 0.05, true)},
		{"E6-k2-raw-aux-mlponly2", moeConfig(6, 2, false, 1, []int{2}, 0.2, false)},
	}
	const tol = 1e-6
	for _, tc := range cases {
		for _, objective := range []string{AR, MDM} {
			t.Run(tc.name+"/"+objective, func(t *testing.T) {
				p := perturbedParams(tc.c, 7)
				m := New(p, cpu.Reference[float64]{})
				b := randomBatch(tc.c, objective, 2, 6, 3)
				causal := IsCausal(objective)
				m.ZeroGrad()
				m.LossAndGrad(b, causal)
				base := routing(m)
				dir := rng.New(11, "test-dir", 0)
				skipped, checked, worst := 0, 0, 0.0
				for i, tn := range p.Tensors {
					w, g := p.View(i), m.view(m.Grad, i)
					u := make([]float64, len(w))
					var un float64
					for j := range u {
						u[j] = dir.NormFloat64()
						un += u[j] * u[j]
					}
					for j := range u {
						u[j] /= math.Sqrt(un)
					}
					big := 0
					for j := range g {
						if math.Abs(g[j]) > math.Abs(g[big]) {
							big = j
						}
					}
					e := make([]float64, len(w))
					e[big] = 1
					for _, d := range [][]float64{u, e} {
						var analytic float64
						for j := range d {
							analytic += g[j] * d[j]
						}
						crossed := false
						numeric := directional(func() float64 {
							// The training loss: objective plus the weighted aux loss.
							l := m.ForwardLoss(b, causal)
							crossed = crossed || !slices.Equal(routing(m), base)
							return l
						}, w, d, 1e-3)
						if crossed {
							skipped++
							continue
						}
						checked++
						err := math.Abs(numeric-analytic) / math.Max(math.Abs(analytic), 1e-8)
						worst = math.Max(worst, err)
						if err > tol {
							t.Errorf("%s: analytic %.12g, numeric %.12g, relative error %.2g > %g", tn.Name, analytic, numeric, err, tol)
						}
					}
				}
				t.Logf("%d directions checked (worst relative error %.2g), %d skipped (a top-k choice changed)", checked, worst, skipped)
				if skipped > checked/4 {
					t.Errorf("%d of %d directions skipped: the check no longer covers the routing", skipped, checked+skipped)
				}
			})
		}
	}
}

// TestMoEAuxLoss: the load-balancing loss is E sum_j f_j P_j over the tokens of every sparse
// layer, recomputed here from the routing; the training loss adds coef x aux, weighted by the
// micro-batch's share of the step's sequences.
func TestMoEAuxLoss(t *testing.T) {
	c := moeConfig(5, 2, true, 1, []int{1}, 0.1, false)
	p := perturbedParams(c, 3)
	m := New(p, cpu.Reference[float64]{})
	b := randomBatch(c, AR, 2, 6, 5)
	obj := m.Loss(b, true)
	aux, ok := m.AuxLoss()
	if !ok {
		t.Fatal("no aux loss")
	}
	E, rows := c.NumExperts, 0
	f, P := make([]float64, E), make([]float64, E)
	for _, a := range m.ws.acts {
		if a.moe == nil {
			continue
		}
		rows += b.B * b.L
		for _, e := range a.moe.sel {
			f[e]++
		}
		for i, v := range a.moe.probs {
			P[i%E] += v
		}
	}
	var want float64
	for j := range f {
		want += f[j] / float64(rows) * P[j] / float64(rows)
	}
	want *= float64(E)
	if relErr(aux, want) > 1e-12 {
		t.Errorf("aux %v, recomputed %v", aux, want)
	}
	if total := m.ForwardLoss(b, true); relErr(total, obj+0.1*aux) > 1e-12 {
		t.Errorf("training loss %v, want %v + 0.1 x %v", total, obj, aux)
	}
	b.Seqs = 8 // a micro-batch of 2 sequences of a step of 8
	if total := m.ForwardLoss(b, true); relErr(total, obj+0.1*aux/4) > 1e-12 {
		t.Errorf("quarter-share training loss %v, want %v + 0.1 x %v / 4", total, obj, aux)
	}
	// Off: output_router_logits false.
	m.Cfg.OutputRouterLogits = false
	if total := m.ForwardLoss(b, true); total != obj {
		t.Errorf("aux off: training loss %v, objective %v", total, obj)
	}
}

// TestMoEAccumulationEqualsBigBatch: without the load-balancing loss (which is not a sum over
// tokens), the gradient summed over micro-batches equals the whole batch's.
func TestMoEAccumulationEqualsBigBatch(t *testing.T) {
	for _, objective := range []string{AR, MDM} {
		c := moeConfig(4, 2, true, 1, nil, 0, false)
		p := perturbedParams(c, 5)
		big := randomBatch(c, objective, 4, 6, 9)
		m := New(p, cpu.Reference[float64]{})
		m.ZeroGrad()
		whole := m.LossAndGrad(big, IsCausal(objective))
		want := append([]float64(nil), m.Grad...)
		m.ZeroGrad()
		var parts float64
		for mb := 0; mb < 2; mb++ {
			half := &Batch{B: 2, L: 6, Seqs: 4,
				Inputs: big.Inputs[mb*12 : (mb+1)*12], Targets: big.Targets[mb*12 : (mb+1)*12],
				Weights: big.Weights[mb*12 : (mb+1)*12]}
			parts += m.LossAndGrad(half, IsCausal(objective))
		}
		if math.Abs(parts-whole) > 1e-12*math.Abs(whole) {
			t.Errorf("%s: loss over micro-batches %v, whole batch %v", objective, parts, whole)
		}
		for j := range want {
			if math.Abs(m.Grad[j]-want[j]) > 1e-12*(1+math.Abs(want[j])) {
				t.Fatalf("%s: gradient element %d: accumulated %v, whole batch %v", objective, j, m.Grad[j], want[j])
			}
		}
	}
}

// TestMoEDeterministic: losses, gradients and the weights after two AdamW steps are bit-identical
// with 1, 2 and 3 threads (the micro-batch has more rows than a product's block, so the products
// are split).
func TestMoEDeterministic(t *testing.T) {
	c := moeConfig(4, 2, true, 1, []int{0}, 0.01, false)
	c.HiddenSize, c.MoEIntermediateSize, c.MaxPositionEmbeddings = 32, 24, 80
	var ref []float32
	var refLoss []float64
	for _, threads := range []int{1, 2, 3} {
		p := NewParams[float32](c)
		p.Init(4, 0.1)
		m := New(p, cpu.New(threads))
		opt := NewAdamW[float32](DefaultOptim(), len(p.Data))
		var losses []float64
		var grads []float32
		for step := 0; step < 2; step++ {
			b := randomBatch(c, []string{AR, MDM}[step], 4, 80, uint64(step))
			m.ZeroGrad()
			losses = append(losses, m.LossAndGrad(b, step == 0))
			grads = append(grads, m.Grad...)
			opt.Update(m, 1e-3)
		}
		got := append(grads, p.Data...)
		if ref == nil {
			ref, refLoss = got, losses
			continue
		}
		if !slices.Equal(losses, refLoss) {
			t.Errorf("%d threads: losses %v, 1 thread %v", threads, losses, refLoss)
		}
		for i := range ref {
			if math.Float32bits(got[i]) != math.Float32bits(ref[i]) {
				t.Fatalf("%d threads: element %d of the gradients and weights is %v, 1 thread %v", threads, i, got[i], ref[i])
			}
		}
	}
}

// TestMoEUnusedExpertDecays: an expert no token reaches has a zero gradient, so AdamW decays its
// weights and leaves its moments at zero; routers take their own group's LR multiplier.
func TestMoEUnusedExpertDecays(t *testing.T) {
	// 12 tokens, 16 experts, top-1: at least 4 experts of each layer get no token.
	c := moeConfig(16, 1, false, 1, nil, 0, false)
	p := perturbedParams(c, 2)
	m := New(p, cpu.Reference[float64]{})
	b := randomBatch(c, AR, 2, 6, 1)
	m.ZeroGrad()
	m.LossAndGrad(b, true)
	var unused []int
	for j, n := range m.ws.acts[0].moe.count {
		if n == 0 {
			unused = append(unused, j)
		}
	}
	if len(unused) == 0 {
		t.Fatal("every expert of layer 0 was routed a token")
	}
	before := append([]float64(nil), p.Data...)
	cfg := DefaultOptim()
	cfg.LRMult = map[string]float64{GroupRouter: 0}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opt := NewAdamW[float64](cfg, len(p.Data))
	opt.Update(m, 1e-2)
	decay := 1 - 1e-2*cfg.WeightDecay
	for _, j := range unused {
		for s, part := range []string{"gate_proj", "up_proj", "down_proj"} {
			i, _ := p.Lookup(fmt.Sprintf("model.layers.0.mlp.experts.%d.%s.weight", j, part))
			tn := p.Tensors[i]
			for x := tn.Offset; x < tn.Offset+tn.Size; x++ {
				if m.Grad[x] != 0 || opt.M[x] != 0 || opt.V[x] != 0 || math.Abs(p.Data[x]-before[x]*decay) > 1e-15*math.Abs(before[x]) {
					t.Fatalf("expert %d %s[%d] (slot %d): grad %v, moments %v %v, weight %v -> %v, want decayed only",
						j, part, x-tn.Offset, s, m.Grad[x], opt.M[x], opt.V[x], before[x], p.Data[x])
				}
			}
		}
	}
	for i, tn := range p.Tensors {
		if tn.Group != GroupRouter {
			continue
		}
		for x := tn.Offset; x < tn.Offset+tn.Size; x++ {
			if p.Data[x] != before[x] {
				t.Fatalf("%s changed with an LR multiplier of 0", p.Tensors[i].Name)
			}
		}
	}
	if err := (OptimConfig{LR: 1, Eps: 1, LRMult: map[string]float64{"routers": 1}}).Validate(); err == nil ||
		!strings.Contains(err.Error(), GroupRouter) {
		t.Errorf("unknown group: err = %v, want the list with %q", err, GroupRouter)
	}
}

// TestMoECheckpointAndMaskToken: an MoE checkpoint saves and loads, and AddMaskToken turns it
// into a model with a mask token whose experts and routers are copied unchanged.
func TestMoECheckpointAndMaskToken(t *testing.T) {
	c := moeConfig(4, 2, true, 1, []int{1}, 0.01, false)
	c.MaskTokenID = -1
	p := perturbedParams(c, 9)
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := Save(dir, p, nil, nil, "F64"); err != nil {
		t.Fatal(err)
	}
	q, err := Load[float64](dir)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(q.Config) != fmt.Sprint(p.Config) || !slices.Equal(q.Data, p.Data) {
		t.Fatal("MoE checkpoint did not round-trip")
	}
	r := AddMaskToken(q)
	if !r.Config.MoE() || r.Config.MaskTokenID != c.VocabSize || len(r.Tensors) != len(q.Tensors) {
		t.Fatalf("AddMaskToken: %+v", r.Config)
	}
	for i, tn := range q.Tensors {
		if tn.Name != r.Tensors[i].Name {
			t.Fatalf("tensor %d: %s became %s", i, tn.Name, r.Tensors[i].Name)
		}
		if strings.Contains(tn.Name, ".mlp.") && !slices.Equal(q.View(i), r.View(i)) {
			t.Errorf("%s changed", tn.Name)
		}
	}
	m := New(r, cpu.Reference[float64]{})
	if l := m.Loss(randomBatch(r.Config, MDM, 2, 6, 1), false); math.IsNaN(l) || math.IsInf(l, 0) {
		t.Errorf("loss after AddMaskToken: %v", l)
	}
}

// TestMoEResidentRefused: the device path refuses a Qwen3-MoE model with a clear error.
func TestMoEResidentRefused(t *testing.T) {
	p := NewParams[float32](moeConfig(4, 2, true, 1, nil, 0, false))
	_, err := NewResident[float32](p, cpu.New(1), HostMemory[float32]{})
	if err == nil || !strings.Contains(err.Error(), Qwen3MoE) {
		t.Errorf("NewResident on an MoE model: err = %v", err)
	}
}

// TestMoEBF16Pass: at bf16 products (the experts' and routers' through the backend's Gemm, which
// rounds the operands) a pass follows fp32 within the dense tolerances, and is the same with 1
// and 3 threads.
func TestMoEBF16Pass(t *testing.T) {
	for _, objective := range []string{AR, MDM} {
		c := bf16TestConfig(objective, false)
		c.ModelType, c.NumExperts, c.NumExpertsPerTok, c.MoEIntermediateSize, c.NormTopKProb = Qwen3MoE, 4, 2, 48, true
		c.DecoderSparseStep, c.MLPOnlyLayers, c.RouterAuxLossCoef, c.OutputRouterLogits = 1, []int{0}, 0.01, true
		p := NewParams[float32](c)
		p.Init(5, 0.02)
		b := randomBatch(c, objective, 4, 96, 6)
		ref := New(cloneParams(p), cpu.New(2))
		ref.ZeroGrad()
		want := ref.LossAndGrad(b, IsCausal(objective))
		var first []float32
		for _, threads := range []int{1, 3} {
			m := New(cloneParams(p), bf16CPU(t, threads))
			m.ZeroGrad()
			got := m.LossAndGrad(b, IsCausal(objective))
			if first == nil {
				first = append([]float32(nil), m.Grad...)
			} else if !slices.Equal(first, m.Grad) {
				t.Errorf("%s: bf16 gradients differ between 1 and 3 threads", objective)
			}
			e := math.Abs(got-want) / math.Abs(want)
			same, total := 0, 0
			for l, a := range m.ws.acts {
				if a.moe != nil {
					for i, e := range a.moe.sel {
						total++
						if e == ref.ws.acts[l].moe.sel[i] {
							same++
						}
					}
				}
			}
			g := relL2(m.Grad, ref.Grad)
			t.Logf("%s, %d threads: loss relative error %.2e, gradient relative error %.2e, %d of %d routing choices as at fp32",
				objective, threads, e, g, same, total)
			if e > bf16Tolerance["loss"] || e == 0 {
				t.Errorf("%s: loss %v, fp32 %v: relative error %.3g, want (0, %g]", objective, got, want, e, bf16Tolerance["loss"])
			}
			if g > bf16Tolerance["grad"] {
				t.Errorf("%s: gradient relative error %.3g > %g", objective, g, bf16Tolerance["grad"])
			}
		}
	}
}
