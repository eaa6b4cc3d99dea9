package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cbs/internal/safetensors"
	"cbs/model"
)

// smallCheckpoint writes a tiny dense checkpoint with optimizer and trainer state, as training
// leaves one, whose config.json also carries a key cbs does not know.
func smallCheckpoint(t *testing.T) (string, *model.Params[float32]) {
	t.Helper()
	c := model.Config{
		ModelType: model.Qwen3, HiddenSize: 16, IntermediateSize: 32, NumLayers: 2, NumHeads: 2, NumKVHeads: 1,
		HeadDim: 8, RMSNormEps: 1e-6, RopeTheta: 1e6, VocabSize: 40, MaxPositionEmbeddings: 64, MaskTokenID: -1,
		Attention: model.Causal, EOSTokenID: json.RawMessage("39"),
	}
	p := model.NewParams[float32](c)
	p.Init(5, 0.3)
	opt := model.NewAdamW[float32](model.DefaultOptim(), len(p.Data))
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := model.Save(dir, p, opt, &model.TrainerState{Objective: model.AR, Step: 3}, ""); err != nil {
		t.Fatal(err)
	}
	return dir, p
}

// TestCkptConvertAndInspectShards: convert writes BF16 shards with the index, inspect lists them
// and verifies the index, and the shards load back as the weights rounded to bfloat16.
func TestCkptConvertAndInspectShards(t *testing.T) {
	src, p := smallCheckpoint(t)
	code, stdout, stderr := cbs(t, "ckpt", "inspect", src)
	if code != exitOK || !strings.Contains(stdout, "weights: model.safetensors, 25 tensors, F32, 24000 bytes of tensor data") ||
		!strings.Contains(stdout, "bos_token_id none, eos_token_id 39") || strings.Contains(stdout, "note:") {
		t.Fatalf("inspect of a cbs checkpoint: exit %d, %s\n%s", code, stderr, stdout)
	}

	dst := filepath.Join(t.TempDir(), "hf")
	code, stdout, stderr = cbs(t, "ckpt", "convert", src, dst, "--dtype", "bf16", "--shard-size", "1KB")
	if code != exitOK || !strings.Contains(stdout, "with model.safetensors.index.json, BF16, 12000 bytes of tensor data") {
		t.Fatalf("convert: exit %d, %s\n%s", code, stderr, stdout)
	}
	files, err := model.WeightFiles(dst)
	if err != nil || len(files) < 4 {
		t.Fatalf("weight files %v, %v", files, err)
	}
	for _, f := range []string{model.OptimizerFile, model.TrainerFile, model.WeightsFile} {
		if _, err := os.Stat(filepath.Join(dst, f)); err == nil {
			t.Errorf("convert wrote %s", f)
		}
	}
	q, err := model.Load[float32](dst)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range p.Data {
		if want := safetensors.BF16ToFloat32(safetensors.BF16FromFloat32(v)); q.Data[i] != want {
			t.Fatalf("weight %d: %v, want %v", i, q.Data[i], want)
		}
	}
	if string(q.Config.EOSTokenID) != "39" {
		t.Errorf("eos_token_id not carried: %+v", q.Config)
	}

	code, stdout, stderr = cbs(t, "ckpt", "inspect", dst)
	shards := len(files) - 1
	for _, want := range []string{
		fmt.Sprintf("weights: %d shards listed by model.safetensors.index.json, 12000 bytes of tensor data", shards),
		fmt.Sprintf("model-00001-of-%05d.safetensors  1 tensor ", shards),
		"index verified: each of its 25 tensors is in the shard it names and in no other",
		"metadata.total_size 12000 = the shards' tensor data",
		"dtype  shard", "trainer: none",
	} {
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("inspect of the shards: exit %d, %s; want %q in\n%s", code, stderr, want, stdout)
		}
	}
	code, stdout, _ = cbs(t, "ckpt", "inspect", "--json", dst)
	var rep ckptReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != exitOK {
		t.Fatalf("inspect --json: exit %d, %v", code, err)
	}
	if len(rep.Weights.Files) != shards || rep.Weights.TotalSizeOK == nil || !*rep.Weights.TotalSizeOK || rep.Tensors[0].File == "" ||
		rep.Weights.Files[0].DTypes["BF16"] != 1 {
		t.Errorf("inspect --json weights %+v, first tensor %+v", rep.Weights, rep.Tensors[0])
	}

	// Back to one float32 file: the same (bfloat16) values.
	back := filepath.Join(t.TempDir(), "back")
	if code, stdout, stderr = cbs(t, "ckpt", "convert", dst, back); code != exitOK || !strings.Contains(stdout, "model.safetensors, F32") {
		t.Fatalf("convert back: exit %d, %s\n%s", code, stderr, stdout)
	}
	if r, err := model.Load[float32](back); err != nil || fmt.Sprint(r.Data) != fmt.Sprint(q.Data) {
		t.Errorf("converted back: %v", err)
	}

	// Bad usage.
	for _, args := range [][]string{
		{"ckpt", "convert", src, dst},
		{"ckpt", "convert", src, dst + "2", "--dtype", "F16"},
		{"ckpt", "convert", src, dst + "2", "--shard-size", "-5GB"},
		{"ckpt", "convert", src, dst + "2", "--shard-size", "big"},
	} {
		if code, _, stderr := cbs(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, stderr, exitUsage)
		}
	}
}

// TestCkptInspectShardProblems: an index that disagrees with its shards is an error; a
// total_size that does not add up is a warning; unknown config keys are noted.
func TestCkptInspectShardProblems(t *testing.T) {
	src, _ := smallCheckpoint(t)
	convert := func(t *testing.T) string {
		dst := filepath.Join(t.TempDir(), "hf")
		if code, _, stderr := cbs(t, "ckpt", "convert", src, dst, "--shard-size", "2KiB"); code != exitOK {
			t.Fatalf("convert: %s", stderr)
		}
		return dst
	}
	dir := convert(t)
	os.Remove(filepath.Join(dir, "model-00002-of-00013.safetensors"))
	if code, _, stderr := cbs(t, "ckpt", "inspect", dir); code != exitError || !strings.Contains(stderr, "shard model-00002-of-00013.safetensors is missing") {
		t.Errorf("missing shard: exit %d, %s", code, stderr)
	}

	dir = convert(t)
	path := filepath.Join(dir, model.IndexFile)
	ix, err := safetensors.ReadIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, safetensors.EncodeIndex(ix.TotalSize+8, ix.WeightMap), 0o644)
	cfg := filepath.Join(dir, model.ConfigFile)
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "{", `{"pad_token_id": 0, `, 1)), 0o644)
	code, stdout, stderr := cbs(t, "ckpt", "inspect", dir)
	if code != exitOK || !strings.Contains(stdout, "warning: metadata.total_size 24008, but the shards hold 24000 bytes of tensor data") ||
		!strings.Contains(stdout, "note: config.json: ignored 1 key(s) cbs does not know: pad_token_id") {
		t.Errorf("total_size off, unknown key: exit %d, %s\n%s", code, stderr, stdout)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"5GB": 5e9, "2GiB": 2 << 30, "1000000": 1e6, "1.5MB": 1.5e6, "512 KiB": 512 << 10, "64B": 64} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GB", "1.5B", "five", "-1", "1e30"} {
		if got, err := parseByteSize(in); err == nil {
			t.Errorf("%q: %d accepted", in, got)
		}
	}
}
