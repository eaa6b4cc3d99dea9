// Package safetensors reads and writes the safetensors format used for cbs checkpoints.
//
// A file is a little-endian uint64 N, N bytes of JSON header
//
//	{"__metadata__": {str: str}, name: {"dtype": D, "shape": [...], "data_offsets": [b, e]}, ...}
//
// and then the tensors' raw little-endian bytes, offsets counting from the first byte after the
// header. Reading is strict, because a checkpoint that parses wrongly fails late and far from its
// cause: the header must be valid JSON without duplicate names, every tensor's byte range must
// match its shape and dtype, and the ranges must tile the data exactly.
//
// Writing produces the same bytes as the PyTorch reference (bench/torch_ref.py): metadata first,
// tensors sorted by name, compact JSON with non-ASCII characters escaped, the header padded with
// spaces to a multiple of 8 so the data is aligned. Files are written atomically.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strconv"
	"unicode/utf8"

	"cbs/internal/atomicio"
)

// maxHeader bounds the header length as the Hugging Face implementation does, so that a corrupt
// length fails at once instead of allocating.
const maxHeader = 100_000_000

const metadataKey = "__metadata__"

// dtypeSize is the element size in bytes of every dtype the format defines.
var dtypeSize = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// DTypeSize returns the size in bytes of one element of dtype, and false for an unknown dtype.
func DTypeSize(dtype string) (int, bool) {
	n, ok := dtypeSize[dtype]
	return n, ok
}

// Tensor is one tensor of a file. Data holds its raw little-endian bytes; for a parsed file it
// aliases the buffer the file was parsed from.
type Tensor struct {
	DType string
	Shape []int
	Data  []byte
}

// Len is the number of elements, the product of Shape (1 for a scalar).
func (t Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// NBytes is the size of the tensor's data in bytes, from its dtype and shape (0 for an unknown
// dtype or an impossible shape). It does not need Data, so it works on a header read alone.
func (t Tensor) NBytes() int64 {
	n, ok := byteCount(t.Shape, dtypeSize[t.DType])
	if !ok {
		return 0
	}
	return int64(n)
}

// File is a parsed safetensors file.
type File struct {
	Metadata map[string]string // never nil
	tensors  map[string]Tensor
	names    []string
}

// Names returns the tensor names in sorted order.
func (f *File) Names() []string {
	return append([]string(nil), f.names...)
}

// Tensor returns the tensor called name.
func (f *File) Tensor(name string) (Tensor, bool) {
	t, ok := f.tensors[name]
	return t, ok
}

// Read reads and parses the file at path.
func Read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// tensorInfo is a header entry; pointers tell a missing field from a zero one.
type tensorInfo struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int   `json:"shape"`
	DataOffsets []uint64 `json:"data_offsets"`
}

// Parse parses a whole safetensors file held in b. The tensors' Data alias b.
func Parse(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("safetensors: %d bytes, shorter than the 8-byte header length", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > maxHeader {
		return nil, fmt.Errorf("safetensors: header length %d, more than the allowed %d", n, maxHeader)
	}
	if n > uint64(len(b)-8) {
		return nil, fmt.Errorf("safetensors: header length %d, but only %d bytes follow", n, len(b)-8)
	}
	header, data := b[8:8+n], b[8+n:]
	f, offsets, err := parseHeader(header, uint64(len(data)))
	if err != nil {
		return nil, err
	}
	for name, off := range offsets {
		t := f.tensors[name]
		t.Data = data[off[0]:off[1]:off[1]]
		f.tensors[name] = t
	}
	return f, nil
}

// ReadHeader reads only the header of the file at path: the metadata and every tensor's dtype
// and shape, checked as Parse checks them against the size of the file. The tensors' Data are
// nil. It reads a large file's table of contents without reading the file.
func ReadHeader(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	fail := func(format string, args ...any) (*File, error) {
		return nil, fmt.Errorf("%s: "+format, append([]any{path}, args...)...)
	}
	if size < 8 {
		return fail("safetensors: %d bytes, shorter than the 8-byte header length", size)
	}
	var nb [8]byte
	if _, err := io.ReadFull(fh, nb[:]); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	n := binary.LittleEndian.Uint64(nb[:])
	if n > maxHeader {
		return fail("safetensors: header length %d, more than the allowed %d", n, maxHeader)
	}
	if n > uint64(size-8) {
		return fail("safetensors: header length %d, but only %d bytes follow", n, size-8)
	}
	header := make([]byte, n)
	if _, err := io.ReadFull(fh, header); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f, _, err := parseHeader(header, uint64(size-8)-n)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// parseHeader parses a header and checks the tensors' byte ranges against dataLen, the bytes
// that follow it. It returns the file without data and every tensor's range.
func parseHeader(header []byte, dataLen uint64) (*File, map[string][2]uint64, error) {
	if len(header) == 0 || header[0] != '{' {
		return nil, nil, errors.New("safetensors: header does not start with '{'")
	}

	f := &File{Metadata: map[string]string{}, tensors: map[string]Tensor{}}
	offsets := map[string][2]uint64{}
	dec := json.NewDecoder(bytes.NewReader(header))
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("safetensors: header: %w", err)
	}
	seenMeta := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("safetensors: header: %w", err)
		}
		name := tok.(string) // object keys are always strings
		if name == metadataKey {
			if seenMeta {
				return nil, nil, errors.New("safetensors: header: __metadata__ appears twice")
			}
			seenMeta = true
			var meta map[string]string
			if err := dec.Decode(&meta); err != nil {
				return nil, nil, fmt.Errorf("safetensors: __metadata__: want an object of strings: %w", err)
			}
			for k, v := range meta {
				f.Metadata[k] = v
			}
			continue
		}
		if _, dup := f.tensors[name]; dup {
			return nil, nil, fmt.Errorf("safetensors: tensor %q appears twice in the header", name)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		t, off, err := parseInfo(name, raw)
		if err != nil {
			return nil, nil, err
		}
		f.tensors[name] = t
		offsets[name] = off
		f.names = append(f.names, name)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("safetensors: header: %w", err)
	}
	rest := header[dec.InputOffset():]
	if len(bytes.Trim(rest, " \t\r\n")) != 0 {
		return nil, nil, fmt.Errorf("safetensors: header: %d bytes of trailing data after the JSON object", len(rest))
	}
	sort.Strings(f.names)
	if err := checkTiling(f.names, offsets, dataLen); err != nil {
		return nil, nil, err
	}
	return f, offsets, nil
}

// checkTiling checks that the byte ranges of the tensors names, in order, tile the dataLen
// bytes of data: no gaps, no overlaps, nothing left over.
func checkTiling(names []string, offsets map[string][2]uint64, dataLen uint64) error {
	order := append([]string(nil), names...)
	sort.SliceStable(order, func(i, j int) bool {
		a, b := offsets[order[i]], offsets[order[j]]
		return a[0] < b[0] || a[0] == b[0] && a[1] < b[1]
	})
	var pos uint64
	for _, name := range order {
		off := offsets[name]
		if off[0] != pos {
			if off[0] < pos {
				return fmt.Errorf("safetensors: tensor %q: data_offsets [%d, %d] overlap the previous tensor, which ends at %d", name, off[0], off[1], pos)
			}
			return fmt.Errorf("safetensors: tensor %q: data_offsets [%d, %d] leave a gap after byte %d", name, off[0], off[1], pos)
		}
		if off[1] > dataLen {
			return fmt.Errorf("safetensors: tensor %q: data_offsets [%d, %d] beyond the %d bytes of data", name, off[0], off[1], dataLen)
		}
		pos = off[1]
	}
	if pos != dataLen {
		return fmt.Errorf("safetensors: tensors cover %d bytes of data, the file holds %d", pos, dataLen)
	}
	return nil
}

func parseInfo(name string, raw []byte) (Tensor, [2]uint64, error) {
	var info tensorInfo
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&info); err != nil {
		return Tensor{}, [2]uint64{}, fmt.Errorf("safetensors: tensor %q: %w", name, err)
	}
	switch {
	case info.DType == nil:
		return Tensor{}, [2]uint64{}, fmt.Errorf("safetensors: tensor %q: no dtype", name)
	case info.Shape == nil:
		return Tensor{}, [2]uint64{}, fmt.Errorf("safetensors: tensor %q: no shape", name)
	case len(info.DataOffsets) != 2:
		return Tensor{}, [2]uint64{}, fmt.Errorf("safetensors: tensor %q: data_offsets has %d numbers, want 2", name, len(info.DataOffsets))
	}
	dtype, shape, off := *info.DType, *info.Shape, [2]uint64{info.DataOffsets[0], info.DataOffsets[1]}
	size, ok := dtypeSize[dtype]
	if !ok {
		return Tensor{}, off, fmt.Errorf("safetensors: tensor %q: unknown dtype %q (known: BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, I64, U64, F64)", name, dtype)
	}
	if off[1] < off[0] {
		return Tensor{}, off, fmt.Errorf("safetensors: tensor %q: data_offsets [%d, %d] end before they begin", name, off[0], off[1])
	}
	nbytes, ok := byteCount(shape, size)
	if !ok {
		return Tensor{}, off, fmt.Errorf("safetensors: tensor %q: shape %v is negative or too large", name, shape)
	}
	if off[1]-off[0] != nbytes {
		return Tensor{}, off, fmt.Errorf("safetensors: tensor %q: data_offsets [%d, %d] span %d bytes, shape %v of %s needs %d", name, off[0], off[1], off[1]-off[0], shape, dtype, nbytes)
	}
	return Tensor{DType: dtype, Shape: shape}, off, nil
}

// byteCount is the product of shape times size, and false if a dimension is negative or the
// product overflows.
func byteCount(shape []int, size int) (uint64, bool) {
	n := uint64(size)
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		n = lo
	}
	return n, true
}

// Float32 converts the tensor's data to float32. F64 is rounded to nearest; F16, BF16 and
// integer types are widened (exactly for F16, BF16 and integers of up to 24 bits).
func (t Tensor) Float32() ([]float32, error) {
	if t.DType == "F64" {
		v, err := t.Float64()
		if err != nil {
			return nil, err
		}
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = float32(x)
		}
		return out, nil
	}
	n, err := t.elements()
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	d := t.Data
	le := binary.LittleEndian
	switch t.DType {
	case "F32":
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(d[4*i:]))
		}
	case "BF16":
		for i := range out {
			out[i] = BF16ToFloat32(le.Uint16(d[2*i:]))
		}
	case "F16":
		for i := range out {
			out[i] = F16ToFloat32(le.Uint16(d[2*i:]))
		}
	default:
		v, err := t.Float64()
		if err != nil {
			return nil, err
		}
		for i, x := range v {
			out[i] = float32(x)
		}
	}
	return out, nil
}

// Float64 converts the tensor's data to float64: exactly for floating-point types and integers
// of up to 53 bits, BOOL as 0 or 1.
func (t Tensor) Float64() ([]float64, error) {
	n, err := t.elements()
	if err != nil {
		return nil, err
	}
	out := make([]float64, n)
	d := t.Data
	le := binary.LittleEndian
	switch t.DType {
	case "F64":
		for i := range out {
			out[i] = math.Float64frombits(le.Uint64(d[8*i:]))
		}
	case "F32", "BF16", "F16":
		v, err := t.Float32()
		if err != nil {
			return nil, err
		}
		for i, x := range v {
			out[i] = float64(x)
		}
	case "BOOL", "U8":
		for i := range out {
			out[i] = float64(d[i])
		}
	case "I8":
		for i := range out {
			out[i] = float64(int8(d[i]))
		}
	case "I16":
		for i := range out {
			out[i] = float64(int16(le.Uint16(d[2*i:])))
		}
	case "U16":
		for i := range out {
			out[i] = float64(le.Uint16(d[2*i:]))
		}
	case "I32":
		for i := range out {
			out[i] = float64(int32(le.Uint32(d[4*i:])))
		}
	case "U32":
		for i := range out {
			out[i] = float64(le.Uint32(d[4*i:]))
		}
	case "I64":
		for i := range out {
			out[i] = float64(int64(le.Uint64(d[8*i:])))
		}
	case "U64":
		for i := range out {
			out[i] = float64(le.Uint64(d[8*i:]))
		}
	default:
		return nil, fmt.Errorf("safetensors: cannot convert dtype %s to floating point (convertible: F64, F32, F16, BF16, integers, BOOL)", t.DType)
	}
	return out, nil
}

// elements checks that Data holds a whole number of elements matching Shape, which a Tensor
// built by hand may not.
func (t Tensor) elements() (int, error) {
	size, ok := dtypeSize[t.DType]
	if !ok {
		return 0, fmt.Errorf("safetensors: unknown dtype %q", t.DType)
	}
	want, ok := byteCount(t.Shape, size)
	if !ok || want != uint64(len(t.Data)) {
		return 0, fmt.Errorf("safetensors: %d bytes of data for shape %v of %s", len(t.Data), t.Shape, t.DType)
	}
	return len(t.Data) / size, nil
}

// BF16ToFloat32 widens a bfloat16, the upper half of a float32, exactly.
func BF16ToFloat32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// BF16FromFloat32 rounds f to the nearest bfloat16, ties to even, as PyTorch does. NaN stays NaN
// (quiet, sign kept); values beyond the largest bfloat16 become infinite.
func BF16FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x0040
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToFloat32 widens an IEEE 754 half-precision number exactly, subnormals, infinities and NaN
// payloads included.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0:
		// Subnormal (or zero): mant * 2^-24, exact in float32.
		v := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(math.Float32bits(v) | sign)
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	default:
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	}
}

// Named is a tensor to write. Data is a []float32 or a []float64 in row-major order, with as many
// elements as the product of Shape.
type Named struct {
	Name  string
	Shape []int
	Data  any
}

// Write writes tensors and metadata to path atomically, each tensor stored as dtype: "F32" (the
// default when dtype is ""), "F64" or "BF16" (rounded to nearest even; float64 data is rounded to
// float32 first, as PyTorch does).
func Write(path string, tensors []Named, metadata map[string]string, dtype string) error {
	// Check everything before the temporary file is created.
	if _, _, err := header(tensors, metadata, dtype); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	err := atomicio.WriteFileFunc(path, func(w io.Writer) error {
		return Encode(w, tensors, metadata, dtype)
	})
	return err
}

// Encode writes tensors and metadata in safetensors format to w; see Write.
func Encode(w io.Writer, tensors []Named, metadata map[string]string, dtype string) error {
	hdr, order, err := header(tensors, metadata, dtype)
	if err != nil {
		return err
	}
	if dtype == "" {
		dtype = "F32"
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	buf := make([]byte, 0, 1<<16)
	for _, i := range order {
		if err := encodeData(w, buf, tensors[i].Data, dtype); err != nil {
			return err
		}
	}
	return nil
}

// encodeData converts data to dtype in chunks of buf's capacity, so a large tensor is never
// copied whole.
func encodeData(w io.Writer, buf []byte, data any, dtype string) error {
	size := dtypeSize[dtype]
	chunk := cap(buf) / size
	var n int
	var at func(i int) float64
	var at32 func(i int) float32
	switch v := data.(type) {
	case []float32:
		n = len(v)
		at32 = func(i int) float32 { return v[i] }
		at = func(i int) float64 { return float64(v[i]) }
	case []float64:
		n = len(v)
		at32 = func(i int) float32 { return float32(v[i]) }
		at = func(i int) float64 { return v[i] }
	}
	le := binary.LittleEndian
	for start := 0; start < n; start += chunk {
		end := min(start+chunk, n)
		b := buf[:(end-start)*size]
		for i := start; i < end; i++ {
			o := (i - start) * size
			switch dtype {
			case "F32":
				le.PutUint32(b[o:], math.Float32bits(at32(i)))
			case "F64":
				le.PutUint64(b[o:], math.Float64bits(at(i)))
			case "BF16":
				le.PutUint16(b[o:], BF16FromFloat32(at32(i)))
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// header validates the tensors and builds the padded header, returning it with the order in
// which the tensors' data follow it.
func header(tensors []Named, metadata map[string]string, dtype string) ([]byte, []int, error) {
	if dtype == "" {
		dtype = "F32"
	}
	if dtype != "F32" && dtype != "F64" && dtype != "BF16" {
		return nil, nil, fmt.Errorf("safetensors: cannot write dtype %q (writable: F32, F64, BF16)", dtype)
	}
	size := uint64(dtypeSize[dtype])
	order := make([]int, len(tensors))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return tensors[order[a]].Name < tensors[order[b]].Name })

	h := []byte{'{'}
	if len(metadata) > 0 {
		var err error
		if h, err = appendMetadata(h, metadata); err != nil {
			return nil, nil, err
		}
	}
	var off uint64
	for j, i := range order {
		t := tensors[i]
		if t.Name == "" || t.Name == metadataKey {
			return nil, nil, fmt.Errorf("safetensors: tensor name %q is reserved", t.Name)
		}
		if j > 0 && tensors[order[j-1]].Name == t.Name {
			return nil, nil, fmt.Errorf("safetensors: tensor %q given twice", t.Name)
		}
		nbytes, err := tensorBytes(t, size)
		if err != nil {
			return nil, nil, err
		}
		if len(metadata) > 0 || j > 0 {
			h = append(h, ',')
		}
		if h, err = appendTensorInfo(h, t, dtype, off, off+nbytes); err != nil {
			return nil, nil, err
		}
		off += nbytes
	}
	h = append(h, '}')
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	return h, order, nil
}

// appendMetadata appends the __metadata__ entry, its keys sorted.
func appendMetadata(h []byte, metadata map[string]string) ([]byte, error) {
	keys := make([]string, 0, len(metadata))
	for k := range metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h = append(h, `"__metadata__":{`...)
	for i, k := range keys {
		if i > 0 {
			h = append(h, ',')
		}
		var err error
		if h, err = appendString(h, k); err != nil {
			return nil, fmt.Errorf("safetensors: metadata key %q: %w", k, err)
		}
		h = append(h, ':')
		if h, err = appendString(h, metadata[k]); err != nil {
			return nil, fmt.Errorf("safetensors: metadata %q: %w", k, err)
		}
	}
	return append(h, '}'), nil
}

// tensorBytes is the size of t's data written with size bytes per element, checked against
// its shape.
func tensorBytes(t Named, size uint64) (uint64, error) {
	var n int
	switch v := t.Data.(type) {
	case []float32:
		n = len(v)
	case []float64:
		n = len(v)
	default:
		return 0, fmt.Errorf("safetensors: tensor %q: data is %T, want []float32 or []float64", t.Name, t.Data)
	}
	nbytes, ok := byteCount(t.Shape, int(size))
	if !ok || nbytes != uint64(n)*size {
		return 0, fmt.Errorf("safetensors: tensor %q: %d elements for shape %v", t.Name, n, t.Shape)
	}
	return nbytes, nil
}

// appendTensorInfo appends t's header entry: its dtype, shape and data offsets [start, end).
func appendTensorInfo(h []byte, t Named, dtype string, start, end uint64) ([]byte, error) {
	var err error
	if h, err = appendString(h, t.Name); err != nil {
		return nil, fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
	}
	h = append(h, `:{"dtype":"`...)
	h = append(h, dtype...)
	h = append(h, `","shape":[`...)
	for k, d := range t.Shape {
		if k > 0 {
			h = append(h, ',')
		}
		h = strconv.AppendInt(h, int64(d), 10)
	}
	h = append(h, `],"data_offsets":[`...)
	h = strconv.AppendUint(h, start, 10)
	h = append(h, ',')
	h = strconv.AppendUint(h, end, 10)
	return append(h, "]}"...), nil
}

// appendString appends s as a JSON string the way Python's json.dumps does by default
// (ensure_ascii): everything outside printable ASCII is escaped, beyond the BMP as a surrogate
// pair. Matching it byte for byte keeps files identical to the reference's.
func appendString(b []byte, s string) ([]byte, error) {
	const hex = "0123456789abcdef"
	u4 := func(b []byte, r rune) []byte {
		return append(b, '\\', 'u', hex[r>>12&15], hex[r>>8&15], hex[r>>4&15], hex[r&15])
	}
	b = append(b, '"')
	for i, r := range s {
		switch {
		case r == utf8.RuneError && len(s[i:]) > 0 && !validRuneAt(s, i):
			return nil, errors.New("not valid UTF-8")
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r >= 0x20 && r < 0x7f:
			b = append(b, byte(r))
		case r < 0x10000:
			b = u4(b, r)
		default:
			r -= 0x10000
			b = u4(b, 0xd800+r>>10)
			b = u4(b, 0xdc00+r&0x3ff)
		}
	}
	return append(b, '"'), nil
}

// validRuneAt tells a genuine U+FFFD from the RuneError that ranging over invalid UTF-8 yields.
func validRuneAt(s string, i int) bool {
	r, n := utf8.DecodeRuneInString(s[i:])
	return !(r == utf8.RuneError && n == 1)
}
