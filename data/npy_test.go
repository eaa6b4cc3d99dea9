package data

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sampleArrays covers every dtype, scalars, empty and multi-dimensional shapes, and the extreme
// values of each integer type.
func sampleArrays() []*Array {
	return []*Array{
		{Shape: []int{4}, DType: "int32", Ints: []int64{0, -1, math.MaxInt32, math.MinInt32}},
		{Shape: []int{2, 3}, DType: "int64", Ints: []int64{1, 2, 3, math.MaxInt64, math.MinInt64, -7}},
		{Shape: []int{3}, DType: "uint16", Ints: []int64{0, 50256, math.MaxUint16}},
		{Shape: []int{2, 2}, DType: "uint8", Ints: []int64{0, 1, 254, 255}},
		{Shape: []int{2}, DType: "int8", Ints: []int64{-128, 127}},
		{Shape: []int{2}, DType: "int16", Ints: []int64{-32768, 32767}},
		{Shape: []int{2}, DType: "uint32", Ints: []int64{0, math.MaxUint32}},
		{Shape: []int{2}, DType: "uint64", Ints: []int64{0, math.MaxInt64}},
		{Shape: []int{5}, DType: "bool", Bools: []bool{true, false, false, true, true}},
		{Shape: []int{3}, DType: "float32", Floats: []float64{0.5, -1.25, math.Inf(1)}},
		{Shape: []int{1, 3}, DType: "float64", Floats: []float64{math.Pi, math.Copysign(0, -1), 1e-300}},
		{Shape: []int{}, DType: "float64", Floats: []float64{2.5}},
		{Shape: []int{0}, DType: "int32", Ints: []int64{}},
		{Shape: []int{2, 0, 3}, DType: "bool", Bools: []bool{}},
	}
}

func TestNPYRoundTrip(t *testing.T) {
	for _, a := range sampleArrays() {
		t.Run(fmt.Sprintf("%s%v", a.DType, a.Shape), func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteNPY(&buf, a); err != nil {
				t.Fatal(err)
			}
			raw := buf.Bytes()
			hlen := int(binary.LittleEndian.Uint16(raw[8:10]))
			if (10+hlen)%64 != 0 || raw[10+hlen-1] != '\n' {
				t.Errorf("header of %d bytes is not padded to 64 or not newline-terminated: %q", hlen, raw[:10+hlen])
			}
			got, err := ReadNPY(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if !arraysEqual(got, a) {
				t.Errorf("round trip gave %+v, want %+v", got, a)
			}
		})
	}
}

func arraysEqual(a, b *Array) bool {
	if a.DType != b.DType || !reflect.DeepEqual(append([]int{}, a.Shape...), append([]int{}, b.Shape...)) {
		return false
	}
	if len(a.Ints) != len(b.Ints) || len(a.Bools) != len(b.Bools) || len(a.Floats) != len(b.Floats) {
		return false
	}
	for i := range a.Ints {
		if a.Ints[i] != b.Ints[i] {
			return false
		}
	}
	for i := range a.Bools {
		if a.Bools[i] != b.Bools[i] {
			return false
		}
	}
	for i := range a.Floats {
		x, y := a.Floats[i], b.Floats[i]
		if a.DType == "float32" {
			x, y = float64(float32(x)), float64(float32(y))
		}
		if math.Float64bits(x) != math.Float64bits(y) && !(math.IsNaN(x) && math.IsNaN(y)) {
			return false
		}
	}
	return true
}

// npyBytes builds a version-1 file around a literal header, for the error cases.
func npyBytes(major byte, header string, data []byte) []byte {
	out := []byte(npyMagic)
	out = append(out, major, 0)
	if major == 1 {
		out = binary.LittleEndian.AppendUint16(out, uint16(len(header)))
	} else {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(header)))
	}
	out = append(out, header...)
	return append(out, data...)
}

func TestReadNPYErrors(t *testing.T) {
	i4 := func(n int) []byte { return make([]byte, 4*n) }
	tests := []struct {
		name string
		in   []byte
		want string // substring of the error
	}{
		{"empty", nil, "reading magic"},
		{"bad magic", []byte("\x93NUMPX\x01\x00\x00\x00"), "bad magic"},
		{"version 4", npyBytes(1, "", nil)[:6:6], "reading magic"},
		{"unknown version", append([]byte(npyMagic), 4, 0, 0, 0), "version 4.0 not supported"},
		{"fortran", npyBytes(1, "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 2), }\n", i4(4)), "fortran_order True"},
		{"big endian", npyBytes(1, "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }\n", i4(2)), "big-endian"},
		{"complex", npyBytes(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }\n", i4(4)), `descr "<c8" not supported`},
		{"structured", npyBytes(1, "{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (2,), }\n", i4(2)), "unexpected"},
		{"missing shape", npyBytes(1, "{'descr': '<i4', 'fortran_order': False, }\n", nil), `missing key "shape"`},
		{"extra key", npyBytes(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), 'x': 1}\n", i4(2)), "exactly the keys"},
		{"truncated data", npyBytes(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }\n", i4(2)), "data ends after 8 of 12 bytes"},
		{"truncated header", npyBytes(1, "{'descr': '<i4'", nil)[:14], "reading 15-byte header"},
		{"huge shape", npyBytes(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (99999999999, 99999999999), }\n", nil), "more than"},
		{"negative dim", npyBytes(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (-1,), }\n", nil), "want a dimension"},
		{"uint64 overflow", npyBytes(1, "{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }\n", bytes.Repeat([]byte{0xff}, 8)), "does not fit in int64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadNPY(bytes.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadNPY error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestWriteNPYErrors(t *testing.T) {
	tests := []struct {
		name string
		a    *Array
		want string
	}{
		{"dtype", &Array{Shape: []int{1}, DType: "complex64"}, `dtype "complex64" not supported`},
		{"length", &Array{Shape: []int{2, 2}, DType: "int32", Ints: []int64{1, 2, 3}}, "needs 4 int32 values, have 3"},
		{"range", &Array{Shape: []int{1}, DType: "uint16", Ints: []int64{70000}}, "out of range for uint16"},
		{"negative dim", &Array{Shape: []int{-1}, DType: "int32"}, "negative dimension"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteNPY(&bytes.Buffer{}, tc.a)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WriteNPY error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestReadNPYHeaderVariants(t *testing.T) {
	data := make([]byte, 8)
	binary.LittleEndian.PutUint32(data, 7)
	binary.LittleEndian.PutUint32(data[4:], 9)
	for _, header := range []string{
		"{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }\n",
		"{\"descr\":\"<i4\",\"fortran_order\":False,\"shape\":(2,)}",
		"{'shape': (2L,), 'fortran_order': False, 'descr': '<i4'}    \n",
		"{ 'descr' : '<i4' , 'fortran_order' : False , 'shape' : ( 2 , ) , }",
	} {
		for _, major := range []byte{1, 2, 3} {
			a, err := ReadNPY(bytes.NewReader(npyBytes(major, header, data)))
			if err != nil {
				t.Errorf("v%d %q: %v", major, header, err)
				continue
			}
			if !reflect.DeepEqual(a.Ints, []int64{7, 9}) || !reflect.DeepEqual(a.Shape, []int{2}) {
				t.Errorf("v%d %q: got shape %v ints %v", major, header, a.Shape, a.Ints)
			}
		}
	}
}

func TestReadNPYTokens(t *testing.T) {
	for _, dtype := range []string{"uint8", "uint16", "int32", "int64", "uint32"} {
		a := &Array{Shape: []int{2, 3}, DType: dtype, Ints: []int64{0, 1, 2, 253, 254, 255}}
		var buf bytes.Buffer
		if err := WriteNPY(&buf, a); err != nil {
			t.Fatal(err)
		}
		tokens, shape, err := ReadNPYTokens(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("%s: %v", dtype, err)
		}
		if !reflect.DeepEqual(tokens, []int32{0, 1, 2, 253, 254, 255}) || !reflect.DeepEqual(shape, []int{2, 3}) {
			t.Errorf("%s: got %v %v", dtype, tokens, shape)
		}
	}
	var buf bytes.Buffer
	WriteNPY(&buf, Float64Array([]float64{1}))
	if _, _, err := ReadNPYTokens(&buf); err == nil || !strings.Contains(err.Error(), "cannot hold token ids") {
		t.Errorf("float tokens: err = %v", err)
	}
	buf.Reset()
	WriteNPY(&buf, &Array{Shape: []int{1}, DType: "int64", Ints: []int64{1 << 40}})
	if _, _, err := ReadNPYTokens(&buf); err == nil || !strings.Contains(err.Error(), "does not fit in int32") {
		t.Errorf("int64 overflow: err = %v", err)
	}
}

func TestWriteNPYFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.npy")
	if err := WriteNPYFile(path, Int32Array([]int32{1, 2, 3, 4}, 2, 2)); err != nil {
		t.Fatal(err)
	}
	bad := &Array{Shape: []int{3}, DType: "int32", Ints: []int64{1}}
	if err := WriteNPYFile(path, bad); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("writing a bad array: err = %v, want one naming %s", err, path)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after a failed write, want only x.npy", len(entries))
	}
	a, err := ReadNPYFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Int32s(); !reflect.DeepEqual(got, []int32{1, 2, 3, 4}) {
		t.Errorf("a failed write disturbed the file: %v", got)
	}
}

// numpyPython returns a Python interpreter that can import numpy, or skips the test.
func numpyPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(py)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import numpy").Run() == nil {
			return path
		}
	}
	t.Skip("no python3 with numpy")
	return ""
}

// TestNPYNumpyInterop writes every sample with Go and checks numpy reads the same values; then
// numpy writes versions 1.0, 2.0 and 3.0 files, including a non-contiguous slice it must save
// in C order, and Go reads them.
func TestNPYNumpyInterop(t *testing.T) {
	py := numpyPython(t)
	dir := t.TempDir()
	var checks strings.Builder
	checks.WriteString("import numpy as np, sys\nd = sys.argv[1]\n")
	for i, a := range sampleArrays() {
		if err := WriteNPYFile(filepath.Join(dir, fmt.Sprintf("go%d.npy", i)), a); err != nil {
			t.Fatal(err)
		}
		var vals []string
		for _, v := range a.Ints {
			vals = append(vals, fmt.Sprint(v))
		}
		for _, v := range a.Bools {
			vals = append(vals, map[bool]string{true: "True", false: "False"}[v])
		}
		for _, v := range a.Floats {
			vals = append(vals, fmt.Sprintf("float.fromhex('%x')", v))
		}
		shape := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(a.Shape)), ","), "[]")
		fmt.Fprintf(&checks, "a = np.load(d + '/go%d.npy')\n", i)
		fmt.Fprintf(&checks, "assert a.dtype == np.dtype('%s'), (%d, a.dtype)\n", a.DType, i)
		fmt.Fprintf(&checks, "assert a.shape == (%s%s), (%d, a.shape)\n", shape, map[bool]string{true: ",", false: ""}[len(a.Shape) == 1], i)
		fmt.Fprintf(&checks, "want = np.array([%s], dtype='%s').reshape(a.shape)\n", strings.Join(vals, ", "), a.DType)
		fmt.Fprintf(&checks, "assert np.array_equal(a, want), (%d, a, want)\n", i)
	}
	checks.WriteString(`
x = np.arange(24, dtype='<i4').reshape(4, 6)[:, ::2]
for v in [(1, 0), (2, 0), (3, 0)]:
    with open(d + '/py%d.npy' % v[0], 'wb') as f:
        np.lib.format.write_array(f, x, version=v)
np.save(d + '/pyf.npy', np.linspace(0, 1, 5, dtype='<f4'))
np.save(d + '/pyb.npy', np.array([[True, False], [False, True]]))
np.save(d + '/pyfortran.npy', np.asfortranarray(np.ones((2, 3), dtype='<i8')))
np.save(d + '/pybig.npy', np.ones(3, dtype='>i4'))
`)
	out, err := exec.Command(py, "-c", checks.String(), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy rejected a file Go wrote: %v\n%s", err, out)
	}
	want := []int64{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22}
	for _, v := range []int{1, 2, 3} {
		a, err := ReadNPYFile(filepath.Join(dir, fmt.Sprintf("py%d.npy", v)))
		if err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		if !reflect.DeepEqual(a.Shape, []int{4, 3}) || !reflect.DeepEqual(a.Ints, want) {
			t.Errorf("version %d: shape %v values %v, want [4 3] %v", v, a.Shape, a.Ints, want)
		}
	}
	a, err := ReadNPYFile(filepath.Join(dir, "pyf.npy"))
	if err != nil || !reflect.DeepEqual(a.Floats, []float64{0, 0.25, 0.5, 0.75, 1}) {
		t.Errorf("float32 from numpy: %v %v", a, err)
	}
	a, err = ReadNPYFile(filepath.Join(dir, "pyb.npy"))
	if err != nil || !reflect.DeepEqual(a.Bools, []bool{true, false, false, true}) {
		t.Errorf("bool from numpy: %v %v", a, err)
	}
	if _, err := ReadNPYFile(filepath.Join(dir, "pyfortran.npy")); err == nil || !strings.Contains(err.Error(), "fortran_order") {
		t.Errorf("Fortran-order file from numpy: err = %v", err)
	}
	if _, err := ReadNPYFile(filepath.Join(dir, "pybig.npy")); err == nil || !strings.Contains(err.Error(), "big-endian") {
		t.Errorf("big-endian file from numpy: err = %v", err)
	}
}

func FuzzReadNPY(f *testing.F) {
	for _, a := range sampleArrays() {
		var buf bytes.Buffer
		if err := WriteNPY(&buf, a); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add(npyBytes(2, "{'descr': '<u2', 'fortran_order': False, 'shape': (1, 2), }", []byte{1, 0, 2, 0}))
	f.Add(npyBytes(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (99999999999,), }", nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := ReadNPY(bytes.NewReader(in))
		tokens, shape, terr := ReadNPYTokens(bytes.NewReader(in))
		if err != nil {
			return
		}
		if terr == nil && (len(tokens) != a.Len() || !reflect.DeepEqual(shape, a.Shape)) {
			t.Fatalf("ReadNPYTokens gave %d tokens of shape %v, ReadNPY %d of %v", len(tokens), shape, a.Len(), a.Shape)
		}
		var buf bytes.Buffer
		if err := WriteNPY(&buf, a); err != nil {
			t.Fatalf("an array ReadNPY accepted does not write: %v", err)
		}
		b, err := ReadNPY(&buf)
		if err != nil {
			t.Fatalf("re-reading a written array: %v", err)
		}
		if !arraysEqual(a, b) {
			t.Fatalf("round trip changed the array: %+v vs %+v", a, b)
		}
	})
}
