package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cbs/analysis"
	"cbs/internal/torchref"
	"cbs/model"
	"cbs/runfmt"
)

// moeParentTrain continues a fresh Qwen3-MoE checkpoint with cbs train, so that the sweeps of
// branchSweep fork from a MoE parent with AdamW moments and a data cursor, as from tinyParent.
const moeParentTrain = `
[experiment]
name = "moe-parent"
seed = 1
[parent]
checkpoint = %q
optimizer_state = "reset"
[objective]
name = "mdm"
[data]
source = "synthetic"
seq_len = 32
synthetic_tokens = 262144
[optimizer]
lr = 3e-3
[train]
budget = "16Ki"
batch = "1Ki"
micro_batch = 8
[eval]
tokens = "4Ki"
`

// trainMoEParent writes a fresh Qwen3-MoE model of config c (tinyParent's shape and
// vocabulary, with experts) and trains it 16Ki tokens with cbs train; it returns the checkpoint.
func trainMoEParent(t *testing.T, dir, name string, c model.Config) string {
	t.Helper()
	p := model.NewParams[float32](c)
	p.Init(11, 0.02)
	init := filepath.Join(dir, name+"-init")
	if err := model.Save(init, p, nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	cfg := writeConfig(t, dir, name+".toml", fmt.Sprintf(moeParentTrain, init))
	if code, _, stderr := cbs(t, "train", "--config", cfg, "--out", out, "--quiet"); code != 0 {
		t.Fatalf("MoE parent: exit %d: %s", code, stderr)
	}
	return filepath.Join(out, "ckpt")
}

// moeConfig is tinyParent's model with sparse layers: 4 experts of width 32, 2 per token.
func moeConfig(norm bool, sparseStep int, mlpOnly []int, aux float64) model.Config {
	return model.Config{
		ModelType: model.Qwen3MoE, HiddenSize: 32, IntermediateSize: 64, NumLayers: 3, NumHeads: 4, NumKVHeads: 2,
		HeadDim: 8, RMSNormEps: 1e-6, RopeTheta: 10000, VocabSize: 260, MaxPositionEmbeddings: 32, MaskTokenID: 258,
		Attention: model.Bidirectional, Tokenizer: "byte",
		NumExperts: 4, NumExpertsPerTok: 2, MoEIntermediateSize: 32, NormTopKProb: norm,
		DecoderSparseStep: sparseStep, MLPOnlyLayers: mlpOnly, RouterAuxLossCoef: aux, OutputRouterLogits: aux > 0,
	}
}

// noiseScales is what cbs fit reports for each branch: the final B_simple (EMA) and the
// window's ratio of means, by branch id.
func noiseScales(t *testing.T, run string) map[string][2]float64 {
	t.Helper()
	var res struct {
		NoiseScale *struct {
			Branches []struct {
				ID     string   `json:"id"`
				Final  *float64 `json:"b_simple_final_tokens"`
				Window *float64 `json:"b_simple_window_tokens"`
			} `json:"branches"`
			Missing []struct{ ID, Reason string } `json:"missing"`
		} `json:"noise_scale"`
	}
	if err := json.Unmarshal([]byte(mustRead(t, filepath.Join(run, "fit", "cbs.json"))), &res); err != nil {
		t.Fatal(err)
	}
	if res.NoiseScale == nil || len(res.NoiseScale.Missing) > 0 {
		t.Fatalf("%s: cbs fit reports no noise scale for some branches: %+v", run, res.NoiseScale)
	}
	out := map[string][2]float64{}
	for _, b := range res.NoiseScale.Branches {
		v := [2]float64{math.NaN(), math.NaN()}
		if b.Final != nil {
			v[0] = *b.Final
		}
		if b.Window != nil {
			v[1] = *b.Window
		}
		out[b.ID] = v
	}
	return out
}

// TestExternalTorchMoEAndNoiseScale trains small sweeps twice, natively and through the PyTorch
// trainer of experiments/external-torch, and compares them branch by branch: from the dense
// parent (the gradient-noise-scale keys), and from Qwen3-MoE parents (a dense layer beside
// sparse ones, renormalised top-k routing with the load-balancing loss in the training loss and
// an LR multiplier on the routers; then plain top-k without it, every second layer sparse, under
// the ar objective). Every eval loss agrees to 1e-4 relative, every step's training loss to 1e-5
// and its gradient norm to 1e-3, every step's noise-scale inputs
// (the micro-batches' and the batch's squared gradient norms) to 1e-3, and cbs fit reports a
// noise scale for every torch branch within 1e-3 of the native one.
func TestExternalTorchMoEAndNoiseScale(t *testing.T) {
	if testing.Short() {
		t.Skip("trains sweeps with PyTorch")
	}
	workdir, command := torchTrainer(t)
	bin := cbsBinary(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, objective, parent string
		cfg                     *model.Config
	}{
		{name: "dense", objective: "mdm"},
		{name: "moe-mdm", objective: "mdm", cfg: ptrTo(moeConfig(true, 1, []int{0}, 0.01))},
		{name: "moe-ar", objective: "ar", cfg: ptrTo(moeConfig(false, 2, nil, 0))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var parent string
			if tc.cfg == nil {
				parent = trainParent(t, dir)
			} else {
				parent = trainMoEParent(t, dir, tc.name+"-parent", *tc.cfg)
			}
			sweepOf := func(out, run string) string {
				body := fmt.Sprintf(branchSweep, out, parent, tc.objective, run)
				if tc.cfg != nil {
					body = strings.Replace(body, "[optimizer.groups]\n", "[optimizer.groups]\nrouter = 0.5\n", 1)
				}
				return writeConfig(t, dir, filepath.Base(out)+".toml", body)
			}
			native, torch := filepath.Join(dir, tc.name+"-native"), filepath.Join(dir, tc.name+"-torch")
			if code, _, stderr := cbs(t, "sweep", "--config", sweepOf(native, "[run]\nparallel = 2\nthreads = 1")); code != 0 {
				t.Fatalf("native sweep: exit %d: %s", code, stderr)
			}
			ext := fmt.Sprintf("[run]\nexecutor = \"external\"\nparallel = 2\nthreads = 1\n[external]\n%s\nworkdir = %q", command, workdir)
			if o, err := exec.Command(bin, "sweep", "--config", sweepOf(torch, ext)).CombinedOutput(); err != nil {
				t.Fatalf("torch sweep: %v\n%s", err, o)
			}
			var worstEval, worstGNS, worstTrain, worstNorm float64
			for _, id := range branchIDs {
				nb, tb := filepath.Join(native, "branches", id), filepath.Join(torch, "branches", id)
				st, _ := runfmt.ReadState(nb)
				ts, err := model.LoadTrainerState(filepath.Join(tb, "ckpt"))
				if err != nil || ts == nil || ts.StreamHash != st.StreamHash {
					t.Errorf("%s: torch checkpoint %+v (%v); native stream_hash %s", id, ts, err, st.StreamHash)
				}
				nl, err := analysis.ReadMetricsFile(filepath.Join(nb, runfmt.MetricsFile))
				if err != nil {
					t.Fatal(err)
				}
				tl, err := analysis.ReadMetricsFile(filepath.Join(tb, runfmt.MetricsFile))
				if err != nil {
					t.Fatal(err)
				}
				if len(nl) != len(tl) {
					t.Fatalf("%s: %d native lines, %d torch lines", id, len(nl), len(tl))
				}
				for i := range nl {
					n, p := nl[i], tl[i]
					if n.TrainLoss == nil || p.TrainLoss == nil || n.GradNorm == nil || p.GradNorm == nil {
						t.Fatalf("%s step %d: train_loss or grad_norm missing: native %+v, torch %+v", id, n.Step, n, p)
					}
					worstTrain = math.Max(worstTrain, relErr(*p.TrainLoss, *n.TrainLoss))
					worstNorm = math.Max(worstNorm, relErr(*p.GradNorm, *n.GradNorm))
					if (n.EvalLoss == nil) != (p.EvalLoss == nil) {
						t.Fatalf("%s step %d: eval loss native %v, torch %v", id, n.Step, n.EvalLoss, p.EvalLoss)
					}
					if n.EvalLoss != nil {
						worstEval = math.Max(worstEval, relErr(*p.EvalLoss, *n.EvalLoss))
					}
					if n.GNSSmallSq == nil || p.GNSSmallSq == nil || n.GNSBigSq == nil || p.GNSBigSq == nil || p.GNSBSimple == nil ||
						p.GNSBSmall != n.GNSBSmall || p.GNSBBig != n.GNSBBig {
						t.Fatalf("%s step %d: noise-scale keys: native %+v, torch %+v", id, n.Step, n, p)
					}
					worstGNS = math.Max(worstGNS, math.Max(relErr(*p.GNSSmallSq, *n.GNSSmallSq), relErr(*p.GNSBigSq, *n.GNSBigSq)))
				}
			}
			t.Logf("largest relative gap: eval loss %.2g, train loss %.2g, grad norm %.2g, gns_small_sq and gns_big_sq %.2g", worstEval, worstTrain, worstNorm, worstGNS)
			if worstEval > 1e-4 {
				t.Errorf("eval losses differ by up to %.2g relative, want <= 1e-4", worstEval)
			}
			// The sparse blocks of these small models move the loss little: a routing weight left
			// unnormalised shifts the eval loss by less than 1e-4, but each step's loss and
			// gradient by far more than float32 rounding. (A step whose gradient norm jumps tenfold
			// amplifies rounding: such a step's norms differ by up to 5e-5.)
			if worstTrain > 1e-5 || worstNorm > 1e-3 {
				t.Errorf("per-step train loss and gradient norm differ by up to %.2g and %.2g relative, want <= 1e-5 and 1e-3", worstTrain, worstNorm)
			}
			if worstGNS > 1e-3 {
				t.Errorf("noise-scale inputs differ by up to %.2g relative, want <= 1e-3", worstGNS)
			}
			if tc.cfg != nil {
				// The trainer's checkpoint is a Qwen3-MoE checkpoint cbs evaluates to the loss the
				// trainer logged.
				tb := filepath.Join(torch, "branches", "b2Ki-r1")
				if c, err := model.LoadConfig(filepath.Join(tb, "ckpt", "config.json")); err != nil || c.SparseLayers() != tc.cfg.SparseLayers() {
					t.Errorf("torch checkpoint config: %+v, %v", c, err)
				}
				exp := filepath.Join(dir, tc.name+"-export")
				if code, _, stderr := cbs(t, "data", "export", "--branch", tb, "--out", exp); code != 0 {
					t.Fatalf("export: %s", stderr)
				}
				args := []string{"--checkpoint", filepath.Join(tb, "ckpt"), "--tokens", filepath.Join(exp, "eval_tokens.npy"), "--objective", tc.objective}
				if tc.objective == "mdm" {
					args = append(args, "--mask", filepath.Join(exp, "eval_mask.npy"), "--p", filepath.Join(exp, "eval_p.npy"))
				}
				if got, want := evalJSON(t, args...), finalEval(t, filepath.Join(tb, "metrics.jsonl")); relErr(got, want) > 1e-5 {
					t.Errorf("cbs eval of the torch checkpoint: %.7f, the trainer logged %.7f", got, want)
				}
			}
			if tc.objective == "ar" {
				torchRefuses(t, filepath.Join(torch, "branches", "b1Ki-r0"), workdir, parent)
			}
			for _, run := range []string{native, torch} {
				if code, _, stderr := cbs(t, "fit", run); code != 0 {
					t.Fatalf("fit %s: exit %d: %s", run, code, stderr)
				}
			}
			nn, tn := noiseScales(t, native), noiseScales(t, torch)
			for _, id := range branchIDs {
				n, p := nn[id], tn[id]
				if math.IsNaN(p[0]) || relErr(p[0], n[0]) > 1e-3 || (!math.IsNaN(n[1]) && relErr(p[1], n[1]) > 1e-3) {
					t.Errorf("%s: cbs fit's B_simple (final, window) %.6g with torch, %.6g natively", id, p, n)
				}
			}
			t.Logf("B_simple at the end, native and torch: %v / %v", nn, tn)
		})
	}
}

func ptrTo[T any](v T) *T { return &v }

// torchRefuses runs the trainer of the branch in dir again, from copies of its parent whose
// config.json asks for what train.py does not compute, and checks that it stops and names the key.
func torchRefuses(t *testing.T, dir, workdir, parent string) {
	t.Helper()
	var run struct{ Env []string }
	if err := json.Unmarshal([]byte(mustRead(t, filepath.Join(dir, "external.json"))), &run); err != nil {
		t.Fatal(err)
	}
	var config map[string]any
	if err := json.Unmarshal([]byte(mustRead(t, filepath.Join(parent, "config.json"))), &config); err != nil {
		t.Fatal(err)
	}
	for key, value := range map[string]any{
		"rope_scaling":       map[string]any{"rope_type": "yarn", "factor": 4},
		"use_sliding_window": true,
		"model_type":         "llama",
	} {
		bad := t.TempDir()
		c := map[string]any{key: value}
		for k, v := range config {
			if k != key {
				c[k] = v
			}
		}
		b, _ := json.Marshal(c)
		writeConfig(t, bad, "config.json", string(b))
		cmd := exec.Command(torchref.Python, "train.py", "--data", filepath.Join(dir, "data.npz"))
		cmd.Dir = workdir
		cmd.Env = append(append(os.Environ(), run.Env...), "CBS_PARENT="+bad, "CBS_OUT="+filepath.Join(bad, "out"))
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "train.py: "+filepath.Join(bad, "config.json")+": "+key+" = ") {
			t.Errorf("config.json with %s = %v: %v\n%s", key, value, err, out)
		}
	}
}
