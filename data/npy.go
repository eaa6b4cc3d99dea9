package data

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"cbs/internal/atomicio"
)

// npyMagic starts every .npy file, whatever its version.
const npyMagic = "\x93NUMPY"

// maxNPYHeader bounds the header we are willing to parse. numpy itself refuses headers over
// 10000 bytes unless asked; a generous bound keeps a corrupt length from allocating gigabytes.
const maxNPYHeader = 1 << 20

// npyType describes one supported element type.
type npyType struct {
	name  string // the DType of an Array
	descr string // numpy's little-endian descr
	size  int
	kind  byte // 'i' signed, 'u' unsigned, 'b' bool, 'f' float
}

var npyTypes = []npyType{
	{"bool", "|b1", 1, 'b'},
	{"int8", "|i1", 1, 'i'},
	{"uint8", "|u1", 1, 'u'},
	{"int16", "<i2", 2, 'i'},
	{"uint16", "<u2", 2, 'u'},
	{"int32", "<i4", 4, 'i'},
	{"uint32", "<u4", 4, 'u'},
	{"int64", "<i8", 8, 'i'},
	{"uint64", "<u8", 8, 'u'},
	{"float32", "<f4", 4, 'f'},
	{"float64", "<f8", 8, 'f'},
}

func npyTypeByName(name string) (npyType, bool) {
	for _, t := range npyTypes {
		if t.name == name {
			return t, true
		}
	}
	return npyType{}, false
}

func npyTypeNames() string {
	names := make([]string, len(npyTypes))
	for i, t := range npyTypes {
		names[i] = t.name
	}
	return strings.Join(names, ", ")
}

// Array is an n-dimensional array as stored in a .npy file, in C (row-major) order.
// Exactly one of Ints, Floats and Bools holds the values, chosen by DType: Ints for the integer
// types, Floats for float32 and float64, Bools for bool. A single value type per family keeps
// callers free of a type switch over eleven element types; the cost is memory for large
// arrays, which is why token files have their own reader (ReadNPYTokens).
type Array struct {
	Shape  []int
	DType  string // bool, int8, uint8, int16, uint16, int32, uint32, int64, uint64, float32, float64
	Ints   []int64
	Floats []float64
	Bools  []bool
}

// Len is the number of elements the shape calls for (1 for a scalar).
func (a *Array) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// Int32Array wraps v, with the given shape (default: 1-D), as an int32 array.
func Int32Array(v []int32, shape ...int) *Array {
	ints := make([]int64, len(v))
	for i, x := range v {
		ints[i] = int64(x)
	}
	return &Array{Shape: defaultShape(shape, len(v)), DType: "int32", Ints: ints}
}

// BoolArray wraps v, with the given shape (default: 1-D), as a bool array.
func BoolArray(v []bool, shape ...int) *Array {
	return &Array{Shape: defaultShape(shape, len(v)), DType: "bool", Bools: v}
}

// Float64Array wraps v, with the given shape (default: 1-D), as a float64 array.
func Float64Array(v []float64, shape ...int) *Array {
	return &Array{Shape: defaultShape(shape, len(v)), DType: "float64", Floats: v}
}

func defaultShape(shape []int, n int) []int {
	if len(shape) == 0 {
		return []int{n}
	}
	return append([]int(nil), shape...)
}

// Int32s returns the values of an integer array as int32, failing if one does not fit.
func (a *Array) Int32s() ([]int32, error) {
	if a.Ints == nil && a.Len() != 0 {
		return nil, fmt.Errorf("npy: dtype %s is not an integer type", a.DType)
	}
	out := make([]int32, len(a.Ints))
	for i, x := range a.Ints {
		if x < math.MinInt32 || x > math.MaxInt32 {
			return nil, fmt.Errorf("npy: element %d = %d does not fit in int32", i, x)
		}
		out[i] = int32(x)
	}
	return out, nil
}

// npyHeader is the parsed header dictionary.
type npyHeader struct {
	typ   npyType
	shape []int
	n     int // number of elements
}

// ReadNPYFile reads a .npy file; errors name the file.
func ReadNPYFile(path string) (*Array, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	a, err := ReadNPY(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// ReadNPY reads a little-endian, C-order .npy stream of versions 1.0, 2.0 or 3.0.
func ReadNPY(r io.Reader) (*Array, error) {
	h, err := readNPYHeader(r)
	if err != nil {
		return nil, err
	}
	a := &Array{Shape: h.shape, DType: h.typ.name}
	raw, err := readNPYData(r, h)
	if err != nil {
		return nil, err
	}
	switch h.typ.kind {
	case 'b':
		a.Bools = make([]bool, h.n)
		for i, b := range raw {
			a.Bools[i] = b != 0
		}
	case 'f':
		a.Floats = make([]float64, h.n)
		for i := range a.Floats {
			if h.typ.size == 4 {
				a.Floats[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
			} else {
				a.Floats[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
			}
		}
	default:
		a.Ints = make([]int64, h.n)
		for i := range a.Ints {
			v, err := decodeInt(raw[i*h.typ.size:], h.typ)
			if err != nil {
				return nil, fmt.Errorf("npy: element %d: %w", i, err)
			}
			a.Ints[i] = v
		}
	}
	return a, nil
}

// ReadNPYTokens reads an integer .npy array straight into int32 token ids, without the int64
// copy that ReadNPY makes, so a token file of a few hundred million entries fits in memory.
func ReadNPYTokens(r io.Reader) (tokens []int32, shape []int, err error) {
	h, err := readNPYHeader(r)
	if err != nil {
		return nil, nil, err
	}
	if h.typ.kind != 'i' && h.typ.kind != 'u' {
		return nil, nil, fmt.Errorf("npy: dtype %s cannot hold token ids (want an integer type)", h.typ.name)
	}
	tokens = make([]int32, 0, min(h.n, 1<<20))
	buf := make([]byte, 1<<16) // a multiple of every element size
	for left := h.n * h.typ.size; left > 0; {
		chunk := buf[:min(len(buf), left)]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, nil, fmt.Errorf("npy: data ends after %d of %d elements: %w", len(tokens), h.n, noEOF(err))
		}
		left -= len(chunk)
		for off := 0; off < len(chunk); off += h.typ.size {
			v, err := decodeInt(chunk[off:], h.typ)
			if err != nil {
				return nil, nil, fmt.Errorf("npy: element %d: %w", len(tokens), err)
			}
			if v < math.MinInt32 || v > math.MaxInt32 {
				return nil, nil, fmt.Errorf("npy: element %d = %d does not fit in int32", len(tokens), v)
			}
			tokens = append(tokens, int32(v))
		}
	}
	return tokens, h.shape, nil
}

// ReadNPYTokensFile is ReadNPYTokens on a file; errors name the file.
func ReadNPYTokensFile(path string) ([]int32, []int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	tokens, shape, err := ReadNPYTokens(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return tokens, shape, nil
}

func decodeInt(b []byte, t npyType) (int64, error) {
	switch t.size {
	case 1:
		if t.kind == 'i' {
			return int64(int8(b[0])), nil
		}
		return int64(b[0]), nil
	case 2:
		u := binary.LittleEndian.Uint16(b)
		if t.kind == 'i' {
			return int64(int16(u)), nil
		}
		return int64(u), nil
	case 4:
		u := binary.LittleEndian.Uint32(b)
		if t.kind == 'i' {
			return int64(int32(u)), nil
		}
		return int64(u), nil
	default:
		u := binary.LittleEndian.Uint64(b)
		if t.kind == 'u' && u > math.MaxInt64 {
			return 0, fmt.Errorf("uint64 value %d does not fit in int64", u)
		}
		return int64(u), nil
	}
}

// noEOF turns a bare EOF into ErrUnexpectedEOF: inside a file whose header promised more data,
// running out is never a clean end.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readNPYData reads the element bytes, growing the buffer as data arrives rather than trusting
// the header's shape, so a corrupt shape cannot allocate more than the input holds.
func readNPYData(r io.Reader, h *npyHeader) ([]byte, error) {
	want := h.n * h.typ.size
	var buf bytes.Buffer
	buf.Grow(min(want, 1<<20))
	got, err := io.CopyN(&buf, r, int64(want))
	if err != nil {
		return nil, fmt.Errorf("npy: data ends after %d of %d bytes: %w", got, want, noEOF(err))
	}
	return buf.Bytes(), nil
}

func readNPYHeader(r io.Reader) (*npyHeader, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, fmt.Errorf("npy: reading magic: %w", noEOF(err))
	}
	if string(pre[:6]) != npyMagic {
		return nil, fmt.Errorf("npy: bad magic %q (want %q)", pre[:6], npyMagic)
	}
	major, minor := pre[6], pre[7]
	var hlen int
	switch major {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("npy: reading header length: %w", noEOF(err))
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("npy: reading header length: %w", noEOF(err))
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
	default:
		return nil, fmt.Errorf("npy: format version %d.%d not supported (want 1.0, 2.0 or 3.0)", major, minor)
	}
	if minor != 0 {
		return nil, fmt.Errorf("npy: format version %d.%d not supported (want 1.0, 2.0 or 3.0)", major, minor)
	}
	if hlen > maxNPYHeader {
		return nil, fmt.Errorf("npy: header length %d exceeds %d bytes", hlen, maxNPYHeader)
	}
	text := make([]byte, hlen)
	if _, err := io.ReadFull(r, text); err != nil {
		return nil, fmt.Errorf("npy: reading %d-byte header: %w", hlen, noEOF(err))
	}
	return parseNPYHeader(string(text))
}

// parseNPYHeader parses the Python dict literal numpy writes, e.g.
// {'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }
func parseNPYHeader(text string) (*npyHeader, error) {
	p := &pyParser{s: text}
	dict, err := p.dict()
	if err != nil {
		return nil, fmt.Errorf("npy: header %q: %w", text, err)
	}
	p.skipSpace()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("npy: header %q: trailing text after the dictionary", text)
	}
	for _, key := range []string{"descr", "fortran_order", "shape"} {
		if _, ok := dict[key]; !ok {
			return nil, fmt.Errorf("npy: header %q: missing key %q", text, key)
		}
	}
	if len(dict) != 3 {
		return nil, fmt.Errorf("npy: header %q: want exactly the keys descr, fortran_order and shape", text)
	}
	descr, ok := dict["descr"].(string)
	if !ok {
		return nil, fmt.Errorf("npy: header key 'descr' = %v is not a string (structured dtypes are not supported)", dict["descr"])
	}
	h := &npyHeader{}
	if h.typ, err = parseDescr(descr); err != nil {
		return nil, err
	}
	fortran, ok := dict["fortran_order"].(bool)
	if !ok {
		return nil, fmt.Errorf("npy: header key 'fortran_order' = %v is not a bool", dict["fortran_order"])
	}
	if fortran {
		return nil, errors.New("npy: fortran_order True is not supported (write the array in C order, e.g. np.ascontiguousarray)")
	}
	shape, ok := dict["shape"].([]int)
	if !ok {
		return nil, fmt.Errorf("npy: header key 'shape' = %v is not a tuple of integers", dict["shape"])
	}
	h.shape = shape
	h.n = 1
	for _, d := range shape {
		// Bound the element count so n * size cannot overflow an int.
		if d != 0 && h.n > (math.MaxInt/8)/d {
			return nil, fmt.Errorf("npy: shape %v has more than %d elements", shape, math.MaxInt/8)
		}
		h.n *= d
	}
	return h, nil
}

func parseDescr(descr string) (npyType, error) {
	if len(descr) == 3 {
		order, code := descr[0], descr[1:]
		for _, t := range npyTypes {
			if t.descr[1:] != code {
				continue
			}
			switch {
			case order == '<' || order == '|':
				return t, nil
			case order == '=' && t.size == 1:
				return t, nil
			case order == '>' && t.size == 1:
				return t, nil
			case order == '>':
				return npyType{}, fmt.Errorf("npy: descr %q is big-endian; only little-endian is supported (convert with arr.astype('<%s'))", descr, code)
			}
		}
	}
	descrs := make([]string, len(npyTypes))
	for i, t := range npyTypes {
		descrs[i] = t.descr
	}
	return npyType{}, fmt.Errorf("npy: descr %q not supported (allowed: %s)", descr, strings.Join(descrs, ", "))
}

// pyParser reads the small subset of Python literals that .npy headers use: a dict with string
// keys whose values are strings, booleans, integers or tuples of integers.
type pyParser struct {
	s string
	i int
}

func (p *pyParser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\n' || p.s[p.i] == '\t' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *pyParser) expect(c byte) error {
	p.skipSpace()
	if p.i >= len(p.s) || p.s[p.i] != c {
		return fmt.Errorf("want %q at offset %d", c, p.i)
	}
	p.i++
	return nil
}

// peek reports the next non-space byte, or 0 at the end.
func (p *pyParser) peek() byte {
	p.skipSpace()
	if p.i >= len(p.s) {
		return 0
	}
	return p.s[p.i]
}

func (p *pyParser) dict() (map[string]any, error) {
	if err := p.expect('{'); err != nil {
		return nil, err
	}
	d := map[string]any{}
	for p.peek() != '}' {
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		if _, dup := d[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		if err := p.expect(':'); err != nil {
			return nil, err
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		d[key] = v
		if p.peek() == ',' {
			p.i++
		} else if p.peek() != '}' {
			return nil, fmt.Errorf("want ',' or '}' at offset %d", p.i)
		}
	}
	p.i++
	return d, nil
}

func (p *pyParser) str() (string, error) {
	q := p.peek()
	if q != '\'' && q != '"' {
		return "", fmt.Errorf("want a string at offset %d", p.i)
	}
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", fmt.Errorf("unterminated string at offset %d", p.i)
	}
	s := p.s[p.i+1 : p.i+1+end]
	if strings.ContainsRune(s, '\\') {
		return "", fmt.Errorf("escapes in strings are not supported (offset %d)", p.i)
	}
	p.i += end + 2
	return s, nil
}

func (p *pyParser) value() (any, error) {
	switch c := p.peek(); {
	case c == '\'' || c == '"':
		return p.str()
	case c == '(':
		return p.tuple()
	case strings.HasPrefix(p.s[p.i:], "True"):
		p.i += 4
		return true, nil
	case strings.HasPrefix(p.s[p.i:], "False"):
		p.i += 5
		return false, nil
	case c >= '0' && c <= '9':
		return p.integer()
	default:
		return nil, fmt.Errorf("unexpected %q at offset %d", c, p.i)
	}
}

func (p *pyParser) integer() (int, error) {
	p.skipSpace()
	start := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	// numpy on some platforms wrote dimensions with a trailing L (Python 2 longs).
	digits := p.s[start:p.i]
	if p.i < len(p.s) && p.s[p.i] == 'L' {
		p.i++
	}
	n, err := strconv.Atoi(digits)
	if err != nil {
		return 0, fmt.Errorf("dimension %q at offset %d: %w", digits, start, err)
	}
	return n, nil
}

func (p *pyParser) tuple() ([]int, error) {
	if err := p.expect('('); err != nil {
		return nil, err
	}
	dims := []int{}
	for p.peek() != ')' {
		if c := p.peek(); c < '0' || c > '9' {
			return nil, fmt.Errorf("want a dimension at offset %d", p.i)
		}
		n, err := p.integer()
		if err != nil {
			return nil, err
		}
		dims = append(dims, n)
		if p.peek() == ',' {
			p.i++
		} else if p.peek() != ')' {
			return nil, fmt.Errorf("want ',' or ')' at offset %d", p.i)
		}
	}
	p.i++
	return dims, nil
}

// WriteNPY writes a in .npy format version 1.0 (2.0 if the header would not fit), which
// numpy.load reads. The header is padded with spaces so the data starts on a 64-byte boundary.
func WriteNPY(w io.Writer, a *Array) error {
	t, ok := npyTypeByName(a.DType)
	if !ok {
		return fmt.Errorf("npy: dtype %q not supported (allowed: %s)", a.DType, npyTypeNames())
	}
	for _, d := range a.Shape {
		if d < 0 {
			return fmt.Errorf("npy: shape %v has a negative dimension", a.Shape)
		}
	}
	n := a.Len()
	var have int
	switch t.kind {
	case 'b':
		have = len(a.Bools)
	case 'f':
		have = len(a.Floats)
	default:
		have = len(a.Ints)
	}
	if have != n {
		return fmt.Errorf("npy: shape %v needs %d %s values, have %d", a.Shape, n, a.DType, have)
	}
	if _, err := w.Write(npyHeaderBytes(t, a.Shape)); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var b [8]byte
	for i := 0; i < n; i++ {
		switch t.kind {
		case 'b':
			b[0] = 0
			if a.Bools[i] {
				b[0] = 1
			}
		case 'f':
			if t.size == 4 {
				binary.LittleEndian.PutUint32(b[:], math.Float32bits(float32(a.Floats[i])))
			} else {
				binary.LittleEndian.PutUint64(b[:], math.Float64bits(a.Floats[i]))
			}
		default:
			if err := encodeInt(b[:], a.Ints[i], t); err != nil {
				return fmt.Errorf("npy: element %d: %w", i, err)
			}
		}
		bw.Write(b[:t.size])
	}
	return bw.Flush()
}

func encodeInt(b []byte, v int64, t npyType) error {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	bits := 8 * t.size
	if t.kind == 'u' {
		lo = 0
		if bits < 64 {
			hi = 1<<bits - 1
		}
	} else if bits < 64 {
		lo, hi = -(1 << (bits - 1)), 1<<(bits-1)-1
	}
	if v < lo || v > hi {
		return fmt.Errorf("value %d out of range for %s [%d, %d]", v, t.name, lo, hi)
	}
	switch t.size {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(b, uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b, uint32(v))
	default:
		binary.LittleEndian.PutUint64(b, uint64(v))
	}
	return nil
}

func npyHeaderBytes(t npyType, shape []int) []byte {
	var sh strings.Builder
	sh.WriteByte('(')
	for i, d := range shape {
		if i > 0 {
			sh.WriteString(", ")
		}
		sh.WriteString(strconv.Itoa(d))
	}
	if len(shape) == 1 {
		sh.WriteByte(',')
	}
	sh.WriteByte(')')
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", t.descr, sh.String())
	// Version 1.0 has a 2-byte length field; fall back to 2.0 only when the header needs more.
	major, lenField := byte(1), 2
	if len(dict)+1+10 > math.MaxUint16 {
		major, lenField = 2, 4
	}
	pre := len(npyMagic) + 2 + lenField
	total := (pre + len(dict) + 1 + 63) / 64 * 64
	hlen := total - pre
	out := make([]byte, 0, total)
	out = append(out, npyMagic...)
	out = append(out, major, 0)
	if lenField == 2 {
		out = binary.LittleEndian.AppendUint16(out, uint16(hlen))
	} else {
		out = binary.LittleEndian.AppendUint32(out, uint32(hlen))
	}
	out = append(out, dict...)
	for len(out) < total-1 {
		out = append(out, ' ')
	}
	return append(out, '\n')
}

// WriteNPYFile writes a to path atomically (a temporary file renamed into place), so a reader
// never sees a partial array.
func WriteNPYFile(path string, a *Array) error {
	return atomicio.WriteFileFunc(path, func(w io.Writer) error { return WriteNPY(w, a) })
}
