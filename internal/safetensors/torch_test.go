package safetensors

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"cbs/internal/torchref"
)

const python = torchref.Python

// needTorch skips the test unless torch_ref.py and a Python with torch are available.
func needTorch(t *testing.T) string {
	t.Helper()
	t.Parallel()
	if testing.Short() {
		t.Skip("runs PyTorch; skipped with -short")
	}
	return torchref.Script(t)
}

// py runs a Python snippet with the reference loaded as module ref and args in sys.argv[1:].
func py(t *testing.T, script, code string, args ...string) []byte {
	t.Helper()
	prelude := "import importlib.util, json, sys, torch\n" +
		"spec = importlib.util.spec_from_file_location('torch_ref', " + quote(script) + ")\n" +
		"ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)\n"
	cmd := exec.Command(python, append([]string{"-c", prelude + code}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.Bytes())
	}
	return out
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestReadTorchCheckpoint reads checkpoints written by torch_ref.py init and checks every tensor
// against what the reference's own reader sees.
func TestReadTorchCheckpoint(t *testing.T) {
	script := needTorch(t)
	for _, args := range [][]string{
		{},
		{"--tie", "--save-dtype", "F64", "--layers", "1", "--vocab", "100"},
	} {
		out := filepath.Join(t.TempDir(), "ckpt")
		cmd := exec.Command(python, append([]string{script, "init", "--out", out}, args...)...)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.Output()
		if err != nil {
			t.Fatalf("torch_ref.py init %v: %v", args, err)
		}
		var report struct {
			Tensors int
			Params  int
			Config  struct {
				HiddenSize        int `json:"hidden_size"`
				VocabSize         int `json:"vocab_size"`
				NumHiddenLayers   int `json:"num_hidden_layers"`
				TieWordEmbeddings bool
			}
		}
		if err := json.Unmarshal(stdout, &report); err != nil {
			t.Fatalf("init output %s: %v", stdout, err)
		}
		path := filepath.Join(out, "model.safetensors")
		f, err := Read(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Names()) != report.Tensors {
			t.Errorf("%v: %d tensors, the reference reports %d", args, len(f.Names()), report.Tensors)
		}
		params := 0
		for _, name := range f.Names() {
			tt, _ := f.Tensor(name)
			params += tt.Len()
		}
		if params != report.Params {
			t.Errorf("%v: %d parameters, the reference reports %d", args, params, report.Params)
		}
		if f.Metadata["format"] != "pt" {
			t.Errorf("metadata %v, want format=pt", f.Metadata)
		}
		emb, ok := f.Tensor("model.embed_tokens.weight")
		if want := []int{report.Config.VocabSize, report.Config.HiddenSize}; !ok || !reflect.DeepEqual(emb.Shape, want) {
			t.Errorf("embedding shape %v, want %v", emb.Shape, want)
		}

		// Shapes and values as the reference's reader sees them.
		var theirs map[string]struct {
			Shape  []int
			Values []float64
		}
		js := py(t, script, `
tensors, _ = ref.read_safetensors(sys.argv[1])
print(json.dumps({n: {"shape": list(v.shape), "values": v.double().flatten().tolist()} for n, v in tensors.items()}))
`, path)
		if err := json.Unmarshal(js, &theirs); err != nil {
			t.Fatal(err)
		}
		if len(theirs) != len(f.Names()) {
			t.Errorf("the reference reads %d tensors, we read %d", len(theirs), len(f.Names()))
		}
		for name, want := range theirs {
			tt, ok := f.Tensor(name)
			if !ok {
				t.Errorf("tensor %q missing", name)
				continue
			}
			if !reflect.DeepEqual(tt.Shape, want.Shape) {
				t.Errorf("%s: shape %v, the reference reads %v", name, tt.Shape, want.Shape)
			}
			got, err := tt.Float64()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want.Values) {
				t.Errorf("%s: values differ from the reference's", name)
			}
		}
	}
}

// TestTorchReadsOurs writes files here, has the reference read them and write them back with its
// own writer: F32 and F64 files must come back byte for byte, BF16 ones with the same values.
func TestTorchReadsOurs(t *testing.T) {
	script := needTorch(t)
	dir := t.TempDir()
	var vals []float32
	for i := range 1000 {
		vals = append(vals, float32(math.Sin(float64(i)))*float32(math.Pow(10, float64(i%13-6))))
	}
	tensors := []Named{
		{Name: "model.layers.0.mlp.up_proj.weight", Shape: []int{10, 100}, Data: vals},
		{Name: "model.norm.weight", Shape: []int{3}, Data: []float64{1, 0.5, math.Pi}},
		{Name: "model.embed_tokens.weight", Shape: []int{2, 2, 2}, Data: []float32{1, 2, 3, 4, 5, 6, 7, 8}},
		{Name: "scalar", Shape: []int{}, Data: []float32{42}},
		{Name: "empty", Shape: []int{0}, Data: []float32{}},
		{Name: "ünïcode\tname", Shape: []int{1}, Data: []float32{-1}},
	}
	meta := map[string]string{"format": "pt", "step": "7", "note": "é \"x\" \U0001F600"}
	dtypes := []string{"F32", "F64", "BF16"}
	var args []string
	for _, dtype := range dtypes {
		write := tensors
		if dtype == "BF16" {
			// The reference's reader cannot widen a 0-d BF16 tensor (numpy refuses the view).
			write = append([]Named(nil), tensors[:3]...)
			write = append(write, tensors[4:]...)
		}
		ours := filepath.Join(dir, dtype+".safetensors")
		if err := Write(ours, write, meta, dtype); err != nil {
			t.Fatal(err)
		}
		backDType := dtype
		if dtype == "BF16" {
			backDType = "F32" // the reference widens BF16 on reading and cannot write it
		}
		args = append(args, ours, filepath.Join(dir, dtype+".back.safetensors"), backDType)
	}
	py(t, script, `
for i in range(1, len(sys.argv), 3):
    tensors, meta = ref.read_safetensors(sys.argv[i])
    ref.write_safetensors(sys.argv[i + 1], tensors, meta, sys.argv[i + 2])
`, args...)
	for _, dtype := range dtypes {
		a, _ := os.ReadFile(filepath.Join(dir, dtype+".safetensors"))
		b, _ := os.ReadFile(filepath.Join(dir, dtype+".back.safetensors"))
		if dtype != "BF16" {
			if !bytes.Equal(a, b) {
				t.Errorf("%s: the reference rewrites our file differently:\nours   %.200q\ntheirs %.200q", dtype, a, b)
			}
			continue
		}
		fa, err := Parse(a)
		if err != nil {
			t.Fatal(err)
		}
		fb, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fa.Names(), fb.Names()) || !reflect.DeepEqual(fa.Metadata, fb.Metadata) {
			t.Errorf("BF16: names or metadata differ: %q %v vs %q %v", fa.Names(), fa.Metadata, fb.Names(), fb.Metadata)
		}
		for _, name := range fa.Names() {
			ta, _ := fa.Tensor(name)
			tb, _ := fb.Tensor(name)
			va, _ := ta.Float32()
			vb, _ := tb.Float32()
			if !reflect.DeepEqual(va, vb) || !reflect.DeepEqual(ta.Shape, tb.Shape) {
				t.Errorf("BF16: tensor %q differs as read by the reference", name)
			}
		}
	}
}

// TestTorchConversions compares the half-precision conversions with PyTorch's: every F16 and
// BF16 bit pattern widened, and float32 values (ties, subnormals, overflow, NaN) rounded to BF16.
func TestTorchConversions(t *testing.T) {
	script := needTorch(t)
	dir := t.TempDir()
	var in []float32
	for _, b := range []uint32{0x3f808000, 0x3f818000, 0x3f808001, 0x3f807fff, 0xbf818000, 0x7f7fffff,
		0x7f7f7fff, 0x80000000, 0x00008000, 0x00018000, 0x007fffff, 0x7f800000, 0xff800000} {
		in = append(in, math.Float32frombits(b))
	}
	for i := range 20000 {
		x := uint32(i) * 2654435761
		in = append(in, math.Float32frombits(x))
	}
	for i := range in { // keep NaNs out: their payload handling is not specified by PyTorch
		if in[i] != in[i] {
			in[i] = float32(i)
		}
	}
	src := filepath.Join(dir, "in.safetensors")
	if err := Write(src, []Named{{Name: "x", Shape: []int{len(in)}, Data: in}}, nil, "F32"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.safetensors")
	py(t, script, `
x = ref.read_safetensors(sys.argv[1])[0]["x"]
bits = torch.arange(65536, dtype=torch.int32).to(torch.int16)
ref.write_safetensors(sys.argv[2], {
    "bf16": x.to(torch.bfloat16).float(),
    "f16_all": bits.view(torch.float16).float(),
    "bf16_all": bits.view(torch.bfloat16).float(),
}, None, "F32")
`, src, out)
	f, err := Read(out)
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) []float32 {
		tt, _ := f.Tensor(name)
		v, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	same := func(a, b float32) bool {
		return math.Float32bits(a) == math.Float32bits(b) || a != a && b != b
	}
	for i, want := range get("bf16") {
		if got := BF16ToFloat32(BF16FromFloat32(in[i])); !same(got, want) {
			t.Errorf("bf16(%#08x) = %#08x, PyTorch %#08x", math.Float32bits(in[i]), math.Float32bits(got), math.Float32bits(want))
		}
	}
	for i, want := range get("f16_all") {
		if got := F16ToFloat32(uint16(i)); !same(got, want) {
			t.Errorf("f16 %#04x = %v, PyTorch %v", i, got, want)
		}
	}
	for i, want := range get("bf16_all") {
		if got := BF16ToFloat32(uint16(i)); !same(got, want) {
			t.Errorf("bf16 %#04x = %v, PyTorch %v", i, got, want)
		}
	}
}
