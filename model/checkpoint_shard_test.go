package model

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cbs/compute/cpu"
	"cbs/data"
	"cbs/internal/rng"
	"cbs/internal/safetensors"
	"cbs/internal/torchref"
)

func bf16Round(x float32) float32 { return safetensors.BF16ToFloat32(safetensors.BF16FromFloat32(x)) }

// TestShardedCheckpointRoundTrip: SaveWith writes shards with the index, and Load, LoadOptimizer
// and LoadTrainerState read them back: F32 weights exactly, BF16 rounded to nearest even; the
// optimizer state stays one file; trainer.json vouches for every shard and the index.
func TestShardedCheckpointRoundTrip(t *testing.T) {
	for _, c := range []Config{tinyConfig(4, 2, false), moeConfig(4, 2, true, 1, []int{0}, 0.01, true)} {
		for _, dtype := range []string{"F32", "BF16"} {
			t.Run(fmt.Sprintf("%s/%s", c.ModelType, dtype), func(t *testing.T) {
				p := NewParams[float32](c)
				p.Init(3, 0.02)
				opt := NewAdamW[float32](DefaultOptim(), len(p.Data))
				for i := range opt.M {
					opt.M[i], opt.V[i] = float32(i)*1e-3+1e-4, float32(i)*1e-6
				}
				opt.Step = 5
				state := &TrainerState{Objective: AR, Step: 5, TokensSeen: 640, DataCursor: 10, Seed: 1}
				dir := filepath.Join(t.TempDir(), "ckpt")
				if err := SaveWith(dir, p, opt, state, SaveOptions{DType: dtype, ShardBytes: 700}); err != nil {
					t.Fatal(err)
				}
				files, err := WeightFiles(dir)
				if err != nil || files[0] != IndexFile || len(files) < 4 {
					t.Fatalf("weight files %v, %v: want the index and several shards", files, err)
				}
				if _, err := os.Stat(filepath.Join(dir, WeightsFile)); err == nil {
					t.Errorf("%s written beside the shards", WeightsFile)
				}
				cfg, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
				want := map[string]string{"F32": `"torch_dtype": "float32"`, "BF16": `"torch_dtype": "bfloat16"`}[dtype]
				if !strings.Contains(string(cfg), want) {
					t.Errorf("config.json lacks %s", want)
				}
				q, notes, err := LoadNotes[float32](dir)
				if err != nil {
					t.Fatal(err)
				}
				for i, v := range p.Data {
					if dtype == "BF16" {
						v = bf16Round(v)
					}
					if math.Float32bits(q.Data[i]) != math.Float32bits(v) {
						t.Fatalf("weight %d: loaded %v, want %v", i, q.Data[i], v)
					}
				}
				if dtype == "BF16" != slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, "stored as BF16 in") }) {
					t.Errorf("notes %q: want one on BF16 storage exactly when stored as BF16", notes)
				}
				o2, err := LoadOptimizer(dir, q, DefaultOptim())
				if err != nil || o2.Step != 5 || !slices.Equal(o2.M, opt.M) || !slices.Equal(o2.V, opt.V) {
					t.Fatalf("optimizer state did not round-trip exactly: %v", err)
				}
				s2, err := LoadTrainerState(dir)
				if err != nil || len(s2.Files) != len(files)+2 {
					t.Fatalf("trainer state lists %v (%v), want config, optimizer and %v", s2.Files, err, files)
				}
				for _, f := range files {
					if s2.Files[f] == "" {
						t.Errorf("trainer.json does not list %s", f)
					}
				}
				// A damaged shard is refused by trainer.json's sha256.
				shard := filepath.Join(dir, files[2])
				b, _ := os.ReadFile(shard)
				b[len(b)-1] ^= 1
				os.WriteFile(shard, b, 0o644)
				if _, err := LoadTrainerState(dir); err == nil || !strings.Contains(err.Error(), "damaged") {
					t.Errorf("damaged shard: err = %v", err)
				}
			})
		}
	}
}

// TestLoadShardedRefusals: weights that are not one checkpoint are refused, naming the files.
func TestLoadShardedRefusals(t *testing.T) {
	c := tinyConfig(4, 2, false)
	p := NewParams[float32](c)
	p.Init(1, 0.02)
	save := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "ckpt")
		if err := SaveWith(dir, p, nil, nil, SaveOptions{ShardBytes: 1000}); err != nil {
			t.Fatal(err)
		}
		if files, _ := WeightFiles(dir); len(files) != 24 {
			t.Fatalf("%d shards, want 23", len(files)-1)
		}
		return dir
	}
	for _, tc := range []struct {
		name   string
		edit   func(t *testing.T, dir string)
		phrase string
	}{
		{"both layouts", func(t *testing.T, dir string) {
			if err := Save(filepath.Join(t.TempDir(), "one"), p, nil, nil, ""); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, WeightsFile), []byte("x"), 0o644)
		}, "holds both model.safetensors and model.safetensors.index.json"},
		{"missing shard", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model-00002-of-00023.safetensors"))
		}, "shard model-00002-of-00023.safetensors is missing"},
		{"stray shard", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "model-00002-of-00023.safetensors"))
			os.WriteFile(filepath.Join(dir, "model-00002-of-00003.safetensors"), b, 0o644)
		}, "model-00002-of-00003.safetensors is a shard the index does not name"},
		{"tensor missing", func(t *testing.T, dir string) {
			path := filepath.Join(dir, IndexFile)
			b, _ := os.ReadFile(path)
			ix, err := safetensors.ParseIndex(b)
			if err != nil {
				t.Fatal(err)
			}
			// Rewrite the shard holding a k_norm without it, and the index to match.
			const gone = "model.layers.1.self_attn.k_norm.weight"
			shard := ix.WeightMap[gone]
			f, err := safetensors.Read(filepath.Join(dir, shard))
			if err != nil {
				t.Fatal(err)
			}
			var keep []safetensors.Named
			for _, n := range f.Names() {
				if n != gone {
					st, _ := f.Tensor(n)
					v, _ := st.Float32()
					keep = append(keep, safetensors.Named{Name: n, Shape: st.Shape, Data: v})
				}
			}
			delete(ix.WeightMap, gone)
			if len(keep) == 0 {
				t.Fatalf("%s holds only %s", shard, gone)
			}
			if err := safetensors.Write(filepath.Join(dir, shard), keep, nil, "F32"); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(path, safetensors.EncodeIndex(ix.TotalSize, ix.WeightMap), 0o644)
		}, "model.safetensors.index.json: missing tensor model.layers.1.self_attn.k_norm.weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := save(t)
			tc.edit(t, dir)
			_, err := Load[float32](dir)
			if err == nil || !strings.Contains(err.Error(), tc.phrase) {
				t.Errorf("err = %v, want it to say %q", err, tc.phrase)
			}
		})
	}
	// A total_size that disagrees loads, with a note.
	dir := save(t)
	path := filepath.Join(dir, IndexFile)
	ix, _ := safetensors.ReadIndex(path)
	os.WriteFile(path, safetensors.EncodeIndex(ix.TotalSize+1, ix.WeightMap), 0o644)
	_, notes, err := LoadNotes[float32](dir)
	if err != nil || !slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, "metadata.total_size") }) {
		t.Errorf("total_size off by one: %v, notes %q", err, notes)
	}
	if err := SaveWith(filepath.Join(t.TempDir(), "neg"), p, nil, nil, SaveOptions{ShardBytes: -1}); err == nil {
		t.Error("negative shard size accepted")
	}
}

// publishedConfigs are config.json files with the key sets, types and values Qwen3-0.6B and
// Qwen3-30B-A3B publish, their sizes cut down.
var publishedConfigs = []string{"testdata/qwen3-0.6b-small.json", "testdata/qwen3-30b-a3b-small.json"}

// TestPublishedConfigKeys: the published key sets load without a note, special tokens are kept
// and written back, and the config round-trips.
func TestPublishedConfigKeys(t *testing.T) {
	for _, path := range publishedConfigs {
		c, notes, err := LoadConfigNotes(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(notes) > 0 {
			t.Errorf("%s: notes %q, want none for the published keys", path, notes)
		}
		if string(c.BOSTokenID) != "310" || string(c.EOSTokenID) != "312" || c.RopeTheta != 1e6 || c.MaskTokenID != -1 || c.Attention != Causal {
			t.Errorf("%s: %+v", path, c)
		}
		again, notes, err := ParseConfigNotes(c.JSON())
		if err != nil || len(notes) > 0 || fmt.Sprint(again) != fmt.Sprint(c) {
			t.Errorf("%s: round trip %+v, %v, %q; want %+v", path, again, err, notes, c)
		}
	}
	dense, _ := LoadConfig(publishedConfigs[0])
	if dense.ModelType != Qwen3 || dense.HeadDim != 32 || dense.NumHeads*dense.HeadDim == dense.HiddenSize || !dense.TieWordEmbeddings {
		t.Errorf("dense: %+v", dense)
	}
	moe, _ := LoadConfig(publishedConfigs[1])
	if !moe.MoE() || moe.SparseLayers() != 2 || moe.NumExperts != 8 || !moe.NormTopKProb || moe.AuxLossOn() || moe.TieWordEmbeddings {
		t.Errorf("moe: %+v", moe)
	}
	// Special tokens: null is none (not written back), a list is kept, ids past the vocabulary
	// are noted.
	const sizes = `"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 10`
	c, notes, err := ParseConfigNotes([]byte(`{` + sizes + `, "bos_token_id": null, "eos_token_id": [3, 151645]}`))
	if err != nil || c.BOSTokenID != nil || string(c.EOSTokenID) != "[3, 151645]" {
		t.Fatalf("special tokens: %+v, %v", c, err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "eos_token_id = [3,151645] lies beyond vocab_size = 10") {
		t.Errorf("notes %q", notes)
	}
	if js := string(c.JSON()); strings.Contains(js, "bos_token_id") || !strings.Contains(js, `"eos_token_id": [`) {
		t.Errorf("written back as\n%s", js)
	}
	// Nulls where Hugging Face writes them take the defaults.
	c, err = ParseConfig([]byte(`{` + sizes + `, "head_dim": null, "num_key_value_heads": null, "sliding_window": null, "max_window_layers": null, "torch_dtype": null}`))
	if err != nil || c.HeadDim != 8 || c.NumKVHeads != 2 {
		t.Errorf("nulls: %+v, %v", c, err)
	}
	// Later versions of Hugging Face's library: dtype, layer_types, rope_parameters.
	c, notes, err = ParseConfigNotes([]byte(`{` + sizes + `, "dtype": "bfloat16", "layer_types": ["full_attention", "full_attention"],
		"rope_parameters": {"rope_type": "default", "rope_theta": 5e5}}`))
	if err != nil || len(notes) > 0 || c.RopeTheta != 5e5 {
		t.Errorf("newer keys: %+v, %v, %q", c, err, notes)
	}
}

// TestConfigRefusesWhatCBSLacks: a config.json asking for what cbs does not implement is refused,
// naming the key and its value; unknown keys are ignored with one note listing them.
func TestConfigRefusesWhatCBSLacks(t *testing.T) {
	base, err := os.ReadFile(publishedConfigs[0])
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) []byte {
		if !bytes.Contains(base, []byte(old)) {
			t.Fatalf("config lacks %q", old)
		}
		return bytes.Replace(base, []byte(old), []byte(new), 1)
	}
	for _, tc := range []struct {
		old, new, phrase string
	}{
		{`"rope_scaling": null`, `"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}`,
			`config.json: rope_scaling = {"type":"yarn","factor":4.0,"original_max_position_embeddings":32768}: cbs implements plain RoPE with rope_theta only: want null`},
		{`"use_sliding_window": false`, `"use_sliding_window": true`, "use_sliding_window = true: cbs has full attention in every layer"},
		{`"attention_bias": false`, `"attention_bias": true`, "attention_bias = true: cbs's q, k, v and o projections have no bias: want false"},
		{`"hidden_act": "silu"`, `"hidden_act": "gelu"`, `hidden_act = "gelu": cbs's MLP is SwiGLU: want "silu"`},
		{`"attention_dropout": 0.0`, `"attention_dropout": 0.1`, "attention_dropout = 0.1: cbs trains without dropout"},
		{`"torch_dtype": "bfloat16"`, `"torch_dtype": "int8"`, `torch_dtype = "int8": want one of float32, bfloat16, float16, float64`},
		{`"torch_dtype": "bfloat16"`, `"torch_dtype": "bfloat16", "dtype": "float16"`, `torch_dtype = "bfloat16" and dtype = "float16" disagree`},
		{`"sliding_window": null`, `"sliding_window": "wide"`, `sliding_window = "wide": want a non-negative integer or null`},
		{`"use_cache": true`, `"use_cache": true, "layer_types": ["full_attention", "sliding_attention"]`, `layer_types = ["full_attention","sliding_attention"]: layer 1 is "sliding_attention"`},
		{`"use_cache": true`, `"use_cache": true, "layer_types": ["full_attention"]`, "layer_types = [\"full_attention\"]: 1 entries, want num_hidden_layers = 2"},
		{`"use_cache": true`, `"use_cache": true, "rope_parameters": {"rope_type": "yarn", "factor": 4}`, `rope_parameters = {"rope_type":"yarn","factor":4}: cbs implements plain RoPE only`},
		{`"rope_theta": 1000000`, `"rope_theta": 1000000, "rope_parameters": {"rope_type": "default", "rope_theta": 10000}`, "its rope_theta disagrees with rope_theta = 1000000"},
		{`"use_cache": true`, `"use_cache": true, "quantization_config": {"quant_method": "fp8"}`, "quantization_config = {\"quant_method\":\"fp8\"}: cbs trains unquantized weights"},
		{`"bos_token_id": 310`, `"bos_token_id": "<s>"`, `bos_token_id = "<s>": want a token id, a list of token ids, or null`},
		{`"eos_token_id": 312`, `"eos_token_id": [-1]`, `eos_token_id = [-1]: want a token id`},
	} {
		_, err := ParseConfig(edit(tc.old, tc.new))
		if err == nil || !strings.Contains(err.Error(), tc.phrase) {
			t.Errorf("%s: err = %v, want it to say %q", tc.new, err, tc.phrase)
		}
	}
	// Unknown keys: one note, sorted; the config loads.
	c, notes, err := ParseConfigNotes(edit(`"use_cache": true`, `"use_cache": true, "pad_token_id": 0, "_name_or_path": "x", "qkv_bias": false`))
	if err != nil || c.HiddenSize != 64 {
		t.Fatal(err)
	}
	if len(notes) != 1 || notes[0] != "config.json: ignored 3 key(s) cbs does not know: _name_or_path, pad_token_id, qkv_bias" {
		t.Errorf("notes %q", notes)
	}
	// A checkpoint's notes include the config's.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigFile), edit(`"use_cache": true`, `"use_cache": true, "pad_token_id": 0`), 0o644)
	p := NewParams[float32](c)
	if err := safetensors.Write(filepath.Join(dir, WeightsFile), named(p, p.Data, ""), nil, "F32"); err != nil {
		t.Fatal(err)
	}
	if _, notes, err := LoadNotes[float32](dir); err != nil || len(notes) != 1 || !strings.Contains(notes[0], "pad_token_id") {
		t.Errorf("LoadNotes: %q, %v", notes, err)
	}
}

// TestPublishedShardedCheckpointsPyTorch: checkpoints shaped as Qwen3-0.6B and Qwen3-30B-A3B
// publish them (their config.json key sets, BF16 shards with the index), written by the PyTorch
// reference, load in cbs; cbs writes the same weights back as the same bytes; after one AdamW
// step cbs's sharded BF16 checkpoint reloads bit for bit as saved, and the reference evaluates
// it to the loss cbs gives the reloaded model.
func TestPublishedShardedCheckpointsPyTorch(t *testing.T) {
	torchref.Script(t)
	const shardBytes = 50000
	for _, tc := range []struct {
		name, config string
		args         []string
	}{
		{"qwen3-0.6b", publishedConfigs[0], []string{"--heads", "4", "--kv-heads", "2", "--head-dim", "32", "--tie"}},
		{"qwen3-30b-a3b", publishedConfigs[1], []string{"--heads", "8", "--kv-heads", "2", "--head-dim", "16", "--no-tie",
			"--experts", "8", "--top-k", "2", "--moe-ff", "32", "--norm-topk"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "published")
			args := []string{"init", "--out", src, "--seed", "3", "--init-std", "0.1", "--hidden", "64", "--layers", "2",
				"--ff", "192", "--vocab", "320", "--save-dtype", "BF16", "--shard-bytes", fmt.Sprint(shardBytes)}
			torchref.Run(t, append(args, tc.args...)...)
			published, err := os.ReadFile(tc.config)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(src, ConfigFile), published, 0o644); err != nil {
				t.Fatal(err)
			}
			srcFiles, err := WeightFiles(src)
			if err != nil || len(srcFiles) < 4 {
				t.Fatalf("the reference wrote %v (%v), want the index and at least 3 shards", srcFiles, err)
			}

			p, notes, err := LoadNotes[float32](src)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("weights: stored as BF16 in %d shards, held as F32", len(srcFiles)-1); !slices.Equal(notes, []string{want}) {
				t.Errorf("notes %q, want only %q", notes, want)
			}
			// The fp32 master weights are the stored bfloat16 values, exactly.
			s, err := safetensors.OpenSharded(src, "model")
			if err != nil {
				t.Fatal(err)
			}
			for k := range s.Shards {
				f, err := s.ReadShard(k)
				if err != nil {
					t.Fatal(err)
				}
				for _, name := range f.Names() {
					st, _ := f.Tensor(name)
					v, _ := st.Float32()
					i := slices.IndexFunc(p.Tensors, func(tn Tensor) bool { return tn.Name == name })
					if i < 0 || !slices.Equal(p.View(i), v) {
						t.Fatalf("%s: loaded weights differ from the stored BF16 values", name)
					}
				}
			}
			// Written back untouched, in BF16 shards of the same limit, they are the reference's bytes.
			again := filepath.Join(dir, "again")
			if err := SaveWith(again, p, nil, nil, SaveOptions{DType: "BF16", ShardBytes: shardBytes}); err != nil {
				t.Fatal(err)
			}
			for _, f := range srcFiles {
				a, _ := os.ReadFile(filepath.Join(src, f))
				b, err := os.ReadFile(filepath.Join(again, f))
				if err != nil || !bytes.Equal(a, b) {
					t.Errorf("%s: cbs wrote other bytes than the reference (%v)", f, err)
				}
			}

			// One AdamW step on a batch of 2 x 16 tokens.
			B, L := 2, 16
			r := rng.New(11, "published-tokens", 0)
			tok := make([]int32, B*L)
			for i := range tok {
				tok[i] = int32(r.Intn(p.Config.VocabSize))
			}
			tokens := filepath.Join(dir, "tokens.npy")
			if err := data.WriteNPYFile(tokens, data.Int32Array(tok, B, L)); err != nil {
				t.Fatal(err)
			}
			batch := NewBatch(B, L)
			batch.SetAR(tok, B)
			m := New(p, cpu.New(2))
			opt := NewAdamW[float32](DefaultOptim(), len(p.Data))
			m.ZeroGrad()
			loss0 := m.LossAndGrad(batch, true)
			opt.Update(m, 1e-3)
			ref0 := torchref.Run(t, "eval", "--checkpoint", src, "--tokens", tokens, "--objective", AR)["loss"].(float64)
			if e := relErr(loss0, ref0); e > 1e-5 {
				t.Errorf("loss of the published checkpoint %.9g, PyTorch %.9g: relative error %.2g > 1e-5", loss0, ref0, e)
			}

			out := filepath.Join(dir, "trained")
			state := &TrainerState{Objective: AR, Step: 1, TokensSeen: int64(B * L), DataCursor: int64(B), Seed: 11}
			if err := SaveWith(out, p, opt, state, SaveOptions{DType: "BF16", ShardBytes: shardBytes}); err != nil {
				t.Fatal(err)
			}
			outFiles, err := WeightFiles(out)
			if err != nil || len(outFiles) < 4 {
				t.Fatalf("cbs wrote %v (%v), want the index and at least 3 shards", outFiles, err)
			}
			stored, err := ReadStoredWeights(out)
			if err != nil || stored.TotalSize != stored.DataBytes() {
				t.Fatalf("index total_size %d, shards hold %d (%v)", stored.TotalSize, stored.DataBytes(), err)
			}
			q, _, err := LoadNotes[float32](out)
			if err != nil {
				t.Fatal(err)
			}
			changed := 0
			for i, v := range p.Data {
				if math.Float32bits(q.Data[i]) != math.Float32bits(bf16Round(v)) {
					t.Fatalf("weight %d: reloaded %v, saved %v", i, q.Data[i], bf16Round(v))
				}
				if q.Data[i] != bf16Round(p.Data[i]) {
					changed++
				}
			}
			if fmt.Sprint(q.Config) != fmt.Sprint(p.Config) {
				t.Errorf("config reloaded as %+v, want %+v", q.Config, p.Config)
			}
			if st, err := LoadTrainerState(out); err != nil || st.Step != 1 {
				t.Errorf("trainer state %+v, %v", st, err)
			}
			if o2, err := LoadOptimizer(out, q, DefaultOptim()); err != nil || o2.Step != 1 || !slices.Equal(o2.M, opt.M) || !slices.Equal(o2.V, opt.V) {
				t.Errorf("optimizer state did not round-trip: %v", err)
			}

			got := New(q, cpu.New(2)).Loss(batch, true)
			want := torchref.Run(t, "eval", "--checkpoint", out, "--tokens", tokens, "--objective", AR)["loss"].(float64)
			if e := relErr(got, want); e > 1e-5 {
				t.Errorf("loss of the saved shards %.9g, PyTorch %.9g: relative error %.2g > 1e-5", got, want, e)
			}
			if got == loss0 {
				t.Errorf("the step changed nothing: loss %v before and after", got)
			}
			t.Logf("%d + %d shards; loss %.9g before the step (PyTorch %.9g), %.9g after (PyTorch %.9g)",
				len(srcFiles)-1, len(outFiles)-1, loss0, ref0, got, want)
		})
	}
}

// TestLoadShardsMixedDTypes: shards of F16 and F32 tensors load, F16 widened exactly; a tied
// model ignores a stored lm_head.weight; both are noted.
func TestLoadShardsMixedDTypes(t *testing.T) {
	c := tinyConfig(4, 2, true)
	p := NewParams[float32](c)
	p.Init(2, 0.1)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigFile), c.JSON(), 0o644)
	// Shard 1: the embedding as F16, written by hand (bit patterns of normal numbers).
	emb := p.Tensors[0]
	r := rng.New(4, "f16", 0)
	raw := make([]byte, 2*emb.Size)
	want := make([]float32, emb.Size)
	for i := range want {
		h := uint16(r.Intn(1<<15)&0x3bff | 0x0400) // exponent 1..14: normal, |x| < 1
		if r.Intn(2) == 1 {
			h |= 0x8000
		}
		raw[2*i], raw[2*i+1] = byte(h), byte(h>>8)
		want[i] = safetensors.F16ToFloat32(h)
	}
	hdr := fmt.Sprintf(`{"%s":{"dtype":"F16","shape":[%d,%d],"data_offsets":[0,%d]}}`, emb.Name, emb.Shape[0], emb.Shape[1], len(raw))
	for len(hdr)%8 != 0 {
		hdr += " "
	}
	var f16 bytes.Buffer
	n := uint64(len(hdr))
	for i := 0; i < 8; i++ {
		f16.WriteByte(byte(n >> (8 * i)))
	}
	f16.WriteString(hdr)
	f16.Write(raw)
	os.WriteFile(filepath.Join(dir, "model-00001-of-00002.safetensors"), f16.Bytes(), 0o644)
	// Shard 2: everything else as F32, and a head the tied model does not use.
	rest := named(p, p.Data, "")[1:]
	rest = append(rest, safetensors.Named{Name: "lm_head.weight", Shape: emb.Shape, Data: make([]float32, emb.Size)})
	if err := safetensors.Write(filepath.Join(dir, "model-00002-of-00002.safetensors"), rest, nil, "F32"); err != nil {
		t.Fatal(err)
	}
	weightMap := map[string]string{emb.Name: "model-00001-of-00002.safetensors"}
	total := int64(len(raw))
	for _, nt := range rest {
		weightMap[nt.Name] = "model-00002-of-00002.safetensors"
		total += int64(4 * len(nt.Data.([]float32)))
	}
	os.WriteFile(filepath.Join(dir, IndexFile), safetensors.EncodeIndex(total, weightMap), 0o644)

	q, notes, err := LoadNotes[float32](dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(q.View(0), want) || !slices.Equal(q.Data[emb.Size:], p.Data[emb.Size:]) {
		t.Error("weights differ from the stored values")
	}
	wantNotes := []string{
		"weights: ignored lm_head.weight, which the model does not use; the head is tied to the embedding",
		"weights: stored as F16 and F32 in 2 shards, held as F32",
	}
	if !slices.Equal(notes, wantNotes) {
		t.Errorf("notes %q, want %q", notes, wantNotes)
	}
}
