package data

import (
	"archive/zip"
	"bytes"
	"io"
	"slices"
	"testing"
)

// TestExportBranch: the export holds the sequences a cursor at the fork reads in the replica's
// order, the masks keyed by each sequence's position, the eval set with its frozen masks, and
// the stream hash of its tokens; a second export is identical.
func TestExportBranch(t *testing.T) {
	cfg := SourceConfig{Source: SourceSynthetic, SeqLen: 16, EvalTokens: 512, Seed: 3, SyntheticTokens: 20000, SyntheticSeed: 2}
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const L, first, n = 16, 1200, 40 // the export crosses the end of the first epoch (1218 sequences)
	for _, rep := range []Replica{{}, {Index: 2, From: first}} {
		e := BranchExport{First: first, Replica: rep, Seqs: n, MDM: true, Seed: 9, EvalSeed: 4, MaskEps: DefaultMaskEps}
		d, err := c.ExportBranch(e)
		if err != nil {
			t.Fatal(err)
		}
		cur := c.Cursor(first)
		cur.Replica = rep
		want := make([]int32, n*L)
		cur.Read(want)
		if !slices.Equal(d.TrainTokens, want) {
			t.Errorf("replica %d: the training tokens are not what the cursor reads", rep.Index)
		}
		if d.StreamHash != streamHash(want) || d.StreamHash == streamHash(want[L:]) {
			t.Errorf("replica %d: stream hash %s", rep.Index, d.StreamHash)
		}
		m := make([]bool, L)
		for r := int64(0); r < n; r++ {
			if p := TrainMask(9, first+r, DefaultMaskEps, m); p != d.TrainP[r] || !slices.Equal(m, d.TrainMask[r*L:(r+1)*L]) {
				t.Fatalf("replica %d row %d: mask or p is not TrainMask at position %d", rep.Index, r, first+r)
			}
		}
		if len(d.EvalP) != c.NumEvalSeqs() || len(d.EvalTokens) != c.NumEvalSeqs()*L {
			t.Fatalf("%d eval p, %d eval tokens for %d sequences", len(d.EvalP), len(d.EvalTokens), c.NumEvalSeqs())
		}
		seq := make([]int32, L)
		for k := range d.EvalP {
			c.EvalSeq(k, seq)
			if p := EvalMask(4, k, DefaultMaskEps, m); p != d.EvalP[k] || !slices.Equal(m, d.EvalMask[k*L:(k+1)*L]) || !slices.Equal(seq, d.EvalTokens[k*L:(k+1)*L]) {
				t.Fatalf("eval sequence %d differs from the corpus's", k)
			}
		}
		again, _ := c.ExportBranch(e)
		if !slices.Equal(again.TrainTokens, d.TrainTokens) || !slices.Equal(again.TrainMask, d.TrainMask) {
			t.Error("a second export differs")
		}
	}
	ar, err := c.ExportBranch(BranchExport{First: 5, Seqs: 3})
	if err != nil || ar.TrainMask != nil || ar.EvalP != nil || len(ar.Arrays()) != 2 {
		t.Errorf("an AR export: %v, masks %v, %d arrays", err, ar.TrainMask != nil, len(ar.Arrays()))
	}
	if _, err := c.ExportBranch(BranchExport{First: -1, Seqs: 3}); err == nil {
		t.Error("a negative cursor was accepted")
	}
}

// TestWriteNPZ: an .npz holds NAME.npy members that read back as the arrays, uncompressed, and
// the extra files.
func TestWriteNPZ(t *testing.T) {
	arrays := []NamedArray{
		{"tokens", Int32Array([]int32{1, 2, 3, 4, 5, 6}, 2, 3)},
		{"mask", BoolArray([]bool{true, false, true, true, false, false}, 2, 3)},
		{"p", Float64Array([]float64{0.25, 0.5})},
	}
	var buf bytes.Buffer
	if err := WriteNPZ(&buf, arrays, NPZFile{"meta.json", []byte(`{"a": 1}`)}); err != nil {
		t.Fatal(err)
	}
	z, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if len(z.File) != 4 {
		t.Fatalf("%d members, want 4", len(z.File))
	}
	for i, f := range z.File[:3] {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		a, err := ReadNPY(r)
		r.Close()
		if f.Name != arrays[i].Name+".npy" || f.Method != zip.Store || err != nil || !slices.Equal(a.Shape, arrays[i].Array.Shape) || a.DType != arrays[i].Array.DType {
			t.Errorf("member %s (method %d): %v %+v", f.Name, f.Method, err, a)
		}
	}
	r, _ := z.File[3].Open()
	meta, _ := io.ReadAll(r)
	if z.File[3].Name != "meta.json" || string(meta) != `{"a": 1}` {
		t.Errorf("member %s = %q", z.File[3].Name, meta)
	}
}
