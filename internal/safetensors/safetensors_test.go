package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// build assembles a file from a header and data, the header unpadded so tests control it.
func build(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func TestRoundTrip(t *testing.T) {
	f32 := []float32{1, -2.5, 3.25, float32(math.Inf(1)), 1e-40, 0.1, -0, 65504}
	f64 := []float64{math.Pi, -1e300, 5e-324, 0.1, 2, 3, 4, 5, 6, 7, 8, 9}
	in := []Named{
		{Name: "b.weight", Shape: []int{2, 4}, Data: f32},
		{Name: "a.weight", Shape: []int{3, 2, 2}, Data: f64},
		{Name: "scalar", Shape: []int{}, Data: []float32{7}},
		{Name: "empty", Shape: []int{0, 5}, Data: []float64{}},
	}
	meta := map[string]string{"format": "pt", "step": "12", "ünï": "\"quoted\"\n\x01 \U0001F600"}
	for _, dtype := range []string{"", "F32", "F64", "BF16"} {
		t.Run(dtype, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.safetensors")
			if err := Write(path, in, meta, dtype); err != nil {
				t.Fatal(err)
			}
			f, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"a.weight", "b.weight", "empty", "scalar"}; !reflect.DeepEqual(f.Names(), want) {
				t.Errorf("names %q, want %q", f.Names(), want)
			}
			if !reflect.DeepEqual(f.Metadata, meta) {
				t.Errorf("metadata %q, want %q", f.Metadata, meta)
			}
			want := dtype
			if want == "" {
				want = "F32"
			}
			for _, nt := range in {
				tt, ok := f.Tensor(nt.Name)
				if !ok {
					t.Fatalf("tensor %q missing", nt.Name)
				}
				if tt.DType != want || !reflect.DeepEqual(tt.Shape, nt.Shape) {
					t.Errorf("%s: %s %v, want %s %v", nt.Name, tt.DType, tt.Shape, want, nt.Shape)
				}
				got, err := tt.Float64()
				if err != nil {
					t.Fatal(err)
				}
				for i := range got {
					var x float64
					switch v := nt.Data.(type) {
					case []float32:
						x = float64(v[i])
					case []float64:
						x = v[i]
					}
					switch want {
					case "F32":
						x = float64(float32(x))
					case "BF16":
						x = float64(BF16ToFloat32(BF16FromFloat32(float32(x))))
					}
					if math.Float64bits(got[i]) != math.Float64bits(x) {
						t.Errorf("%s[%d] = %v, want %v", nt.Name, i, got[i], x)
					}
				}
			}
		})
	}
}

func TestHeaderBytes(t *testing.T) {
	var buf bytes.Buffer
	err := Encode(&buf, []Named{
		{Name: "w", Shape: []int{1, 2}, Data: []float32{1, 2}},
		{Name: "a", Shape: []int{1}, Data: []float32{3}},
	}, map[string]string{"z": "1", "format": "pt"}, "F32")
	if err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	n := binary.LittleEndian.Uint64(b)
	want := `{"__metadata__":{"format":"pt","z":"1"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1,2],"data_offsets":[4,12]}}`
	want += strings.Repeat(" ", (8-len(want)%8)%8)
	if got := string(b[8 : 8+n]); got != want {
		t.Errorf("header\n%q\nwant\n%q", got, want)
	}
	if len(b) != 8+int(n)+12 {
		t.Errorf("file is %d bytes, want %d", len(b), 8+int(n)+12)
	}
}

func TestAppendString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":          `"plain"`,
		"q\"b\\":         `"q\"b\\"`,
		"\n\r\t\b\f":     `"\n\r\t\b\f"`,
		"\x00\x1f\x7f":   `"\u0000\u001f\u007f"`,
		"é中":             `"\u00e9\u4e2d"`,
		"\U0001F600":     `"\ud83d\ude00"`,
		"<&>\u2028":      `"<&>\u2028"`,
		"\uFFFD genuine": `"\ufffd genuine"`,
	} {
		got, err := appendString(nil, in)
		if err != nil || string(got) != want {
			t.Errorf("appendString(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := appendString(nil, "bad\xff"); err == nil {
		t.Error("no error for invalid UTF-8")
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		tensors []Named
		dtype   string
		want    string
	}{
		{"dtype", []Named{{"a", []int{1}, []float32{1}}}, "F16", `cannot write dtype "F16"`},
		{"shape", []Named{{"a", []int{2, 2}, []float32{1}}}, "", `tensor "a": 1 elements for shape [2 2]`},
		{"negative", []Named{{"a", []int{-1}, []float32{}}}, "", `tensor "a"`},
		{"type", []Named{{"a", []int{1}, []int{1}}}, "", `data is []int`},
		{"dup", []Named{{"a", []int{1}, []float32{1}}, {"a", []int{1}, []float32{1}}}, "", `tensor "a" given twice`},
		{"reserved", []Named{{"__metadata__", []int{1}, []float32{1}}}, "", `reserved`},
		{"utf8", []Named{{"a\xff", []int{1}, []float32{1}}}, "", `not valid UTF-8`},
	} {
		path := filepath.Join(dir, tc.name)
		err := Write(path, tc.tensors, nil, tc.dtype)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Errorf("failed writes left %q", m)
	}
}

func TestParseErrors(t *testing.T) {
	f32 := `{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`
	data8 := make([]byte, 8)
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"short", []byte{1, 2}, "shorter than the 8-byte"},
		{"huge header", binary.LittleEndian.AppendUint64(nil, 1<<40), "more than the allowed"},
		{"header past end", append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...), "only 2 bytes follow"},
		{"not object", build(`[1]`, nil), "does not start with '{'"},
		{"bad json", build(`{"a":`, nil), `tensor "a"`},
		{"trailing", build(`{} {}`, nil), "trailing data"},
		{"dup tensor", build(`{"a":`+f32+`,"a":`+f32+`}`, data8), `tensor "a" appears twice`},
		{"dup meta", build(`{"__metadata__":{},"__metadata__":{}}`, nil), "__metadata__ appears twice"},
		{"meta not strings", build(`{"__metadata__":{"a":1}}`, nil), "__metadata__: want an object of strings"},
		{"unknown dtype", build(`{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}`, data8), `tensor "w": unknown dtype "Q4"`},
		{"no dtype", build(`{"w":{"shape":[2],"data_offsets":[0,8]}}`, data8), `tensor "w": no dtype`},
		{"no shape", build(`{"w":{"dtype":"F32","data_offsets":[0,8]}}`, data8), `tensor "w": no shape`},
		{"offsets count", build(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}`, data8), "has 3 numbers, want 2"},
		{"unknown field", build(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, data8), `unknown field "x"`},
		{"negative dim", build(`{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, data8), "negative or too large"},
		{"overflow", build(`{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, data8), "negative or too large"},
		{"float dim", build(`{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}`, data8), `tensor "w"`},
		{"reversed", build(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, data8), "end before they begin"},
		{"size mismatch", build(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, data8), "span 8 bytes, shape [3] of F32 needs 12"},
		{"beyond data", build(`{"w":`+f32+`}`, data8[:4]), "beyond the 4 bytes"},
		{"gap", build(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data8), "leave a gap"},
		{"overlap", build(`{"v":`+f32+`,"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data8), "overlap"},
		{"leftover", build(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, data8), "cover 4 bytes of data, the file holds 8"},
	} {
		_, err := Parse(tc.file)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestParseAccepts(t *testing.T) {
	// Padding with any JSON whitespace, metadata null, zero-size tensors anywhere, unsorted
	// names and offsets out of name order are all valid.
	hdr := `{"__metadata__":null,"z":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"e":{"dtype":"BF16","shape":[0,3],"data_offsets":[4,4]},"a":{"dtype":"I16","shape":[2],"data_offsets":[4,8]}}` + " \n\t "
	data := []byte{0, 0, 0x80, 0x3f, 0xff, 0xff, 0x02, 0x00}
	f, err := Parse(build(hdr, data))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "e", "z"}; !reflect.DeepEqual(f.Names(), want) {
		t.Errorf("names %q, want %q", f.Names(), want)
	}
	if len(f.Metadata) != 0 || f.Metadata == nil {
		t.Errorf("metadata %v, want empty and non-nil", f.Metadata)
	}
	a, _ := f.Tensor("a")
	if v, err := a.Float64(); err != nil || !reflect.DeepEqual(v, []float64{-1, 2}) {
		t.Errorf("I16 = %v, %v; want [-1 2]", v, err)
	}
	z, _ := f.Tensor("z")
	if v, err := z.Float32(); err != nil || !reflect.DeepEqual(v, []float32{1}) {
		t.Errorf("F32 = %v, %v; want [1]", v, err)
	}
	e, _ := f.Tensor("e")
	if v, err := e.Float32(); err != nil || len(v) != 0 {
		t.Errorf("empty = %v, %v", v, err)
	}
	if _, ok := f.Tensor("missing"); ok {
		t.Error("Tensor reports a missing tensor as present")
	}
}

func TestConvertInts(t *testing.T) {
	le := binary.LittleEndian
	for _, tc := range []struct {
		dtype string
		data  []byte
		want  []float64
	}{
		{"BOOL", []byte{0, 1}, []float64{0, 1}},
		{"U8", []byte{0, 255}, []float64{0, 255}},
		{"I8", []byte{0x80, 0x7f}, []float64{-128, 127}},
		{"U16", le.AppendUint16(nil, 65535), []float64{65535}},
		{"I32", le.AppendUint32(nil, math.MaxUint32), []float64{-1}},
		{"U32", le.AppendUint32(nil, math.MaxUint32), []float64{math.MaxUint32}},
		{"I64", le.AppendUint64(nil, 1<<63), []float64{-(1 << 63)}},
		{"U64", le.AppendUint64(nil, 1<<63), []float64{1 << 63}},
		{"F64", le.AppendUint64(nil, math.Float64bits(0.1)), []float64{0.1}},
	} {
		tt := Tensor{DType: tc.dtype, Shape: []int{len(tc.want)}, Data: tc.data}
		got, err := tt.Float64()
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Float64 = %v, %v; want %v", tc.dtype, got, err, tc.want)
		}
		got32, err := tt.Float32()
		if err != nil || len(got32) != len(tc.want) || float64(got32[0]) != float64(float32(tc.want[0])) {
			t.Errorf("%s: Float32 = %v, %v; want %v", tc.dtype, got32, err, tc.want)
		}
	}
	bad := []Tensor{
		{DType: "F8_E4M3", Shape: []int{1}, Data: []byte{0}},
		{DType: "F32", Shape: []int{2}, Data: []byte{0, 0, 0, 0}},
		{DType: "X", Shape: []int{1}, Data: []byte{0}},
	}
	for _, tt := range bad {
		if _, err := tt.Float32(); err == nil {
			t.Errorf("Float32 of %+v: no error", tt)
		}
		if _, err := tt.Float64(); err == nil {
			t.Errorf("Float64 of %+v: no error", tt)
		}
	}
}

func TestF16ToFloat32(t *testing.T) {
	for _, tc := range []struct {
		bits uint16
		want float32
	}{
		{0x0000, 0},
		{0x3c00, 1},
		{0xc000, -2},
		{0x3555, 0.333251953125},
		{0x3bff, 0.99951171875},
		{0x7bff, 65504},
		{0xfbff, -65504},
		{0x0400, 6.103515625e-05},        // smallest normal, 2^-14
		{0x03ff, 6.097555160522461e-05},  // largest subnormal, 1023 * 2^-24
		{0x0001, 5.960464477539063e-08},  // smallest subnormal, 2^-24
		{0x8001, -5.960464477539063e-08}, // negative subnormal
		{0x0200, 3.0517578125e-05},       // 2^-15
		{0x7c00, float32(math.Inf(1))},   // +inf
		{0xfc00, float32(math.Inf(-1))},  // -inf
		{0x4248, 3.140625},               // pi in half precision
		{0x5640, 100},
	} {
		got := F16ToFloat32(tc.bits)
		if math.Float32bits(got) != math.Float32bits(tc.want) {
			t.Errorf("F16ToFloat32(%#04x) = %v, want %v", tc.bits, got, tc.want)
		}
	}
	if got := math.Float32bits(F16ToFloat32(0x8000)); got != 0x80000000 {
		t.Errorf("F16ToFloat32(-0) bits %#08x, want 0x80000000", got)
	}
	// NaN keeps its sign and payload.
	for bits, want := range map[uint16]uint32{0x7e00: 0x7fc00000, 0x7c01: 0x7f802000, 0xfe00: 0xffc00000} {
		if got := math.Float32bits(F16ToFloat32(bits)); got != want {
			t.Errorf("F16ToFloat32(%#04x) bits %#08x, want %#08x", bits, got, want)
		}
	}
}

func TestBF16(t *testing.T) {
	for _, tc := range []struct {
		bits uint16
		want float32
	}{
		{0x3f80, 1},
		{0xc000, -2},
		{0x3eab, 0.333984375},
		{0x7f7f, 3.3895313892515355e+38},
		{0x0001, 9.183549615799121e-41},
		{0x0080, 1.1754943508222875e-38},
		{0x7f80, float32(math.Inf(1))},
		{0xff80, float32(math.Inf(-1))},
	} {
		if got := BF16ToFloat32(tc.bits); math.Float32bits(got) != math.Float32bits(tc.want) {
			t.Errorf("BF16ToFloat32(%#04x) = %v, want %v", tc.bits, got, tc.want)
		}
		if got := BF16FromFloat32(tc.want); got != tc.bits {
			t.Errorf("BF16FromFloat32(%v) = %#04x, want %#04x", tc.want, got, tc.bits)
		}
	}
	for _, tc := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f808000, 0x3f80}, // tie, even below
		{0x3f818000, 0x3f82}, // tie, odd below: up
		{0x3f808001, 0x3f81}, // above the tie
		{0x3f807fff, 0x3f80}, // below the tie
		{0xbf818000, 0xbf82}, // negative tie rounds away from zero to even
		{0x7f7fffff, 0x7f80}, // largest float32 overflows to +inf
		{0x7f7f7fff, 0x7f7f}, // stays finite
		{0x80000000, 0x8000}, // -0
		{0x00008000, 0x0000}, // tiny tie to even zero
		{0x7f800001, 0x7fc0}, // signalling NaN becomes quiet, never inf
		{0xffc00000, 0xffc0}, // negative NaN
		{0x7fffffff, 0x7fff}, // NaN with full payload does not wrap
	} {
		if got := BF16FromFloat32(math.Float32frombits(tc.in)); got != tc.want {
			t.Errorf("BF16FromFloat32(bits %#08x) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	var buf bytes.Buffer
	Encode(&buf, []Named{
		{Name: "a", Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}},
		{Name: "b", Shape: []int{}, Data: []float64{1}},
	}, map[string]string{"k": "v"}, "BF16")
	f.Add(buf.Bytes())
	f.Add(build(`{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"x":{"dtype":"I8","shape":[0],"data_offsets":[4,4]}}`, []byte{1, 2, 3, 4}))
	f.Add(build(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		for _, name := range file.Names() {
			tt, ok := file.Tensor(name)
			if !ok {
				t.Fatalf("name %q listed but missing", name)
			}
			size, _ := DTypeSize(tt.DType)
			if uint64(len(tt.Data)) != uint64(tt.Len())*uint64(size) {
				t.Fatalf("tensor %q: %d bytes for shape %v of %s", name, len(tt.Data), tt.Shape, tt.DType)
			}
			if _, err := tt.Float64(); err != nil && tt.DType != "F8_E4M3" && tt.DType != "F8_E5M2" {
				t.Fatalf("tensor %q: %v", name, err)
			}
		}
	})
}
