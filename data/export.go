package data

import (
	"archive/zip"
	"fmt"
	"io"
	"strconv"
)

// BranchExport asks for what one branch of a sweep trains and evaluates on, so that a trainer
// other than cbs can be fed exactly that (cbs data export).
type BranchExport struct {
	// First is the data cursor the branch starts at: its parent's, 0 for a fresh model.
	First int64
	// Replica is the branch's order of the stream: its replicate index and the fork cursor.
	Replica Replica
	// Seqs is the number of training sequences: the budget over SeqLen.
	Seqs int64
	// MDM asks for the masks and masking probabilities of the masked-diffusion objective:
	// training ones keyed by Seed and each sequence's position, eval ones by EvalSeed.
	MDM            bool
	Seed, EvalSeed uint64
	MaskEps        float64
}

// BranchData holds the arrays of a BranchExport, in the order a cbs trainer consumes them:
// training row r is the sequence at cursor position First + r, read through the branch's
// replica, so step s (1-based) of a branch of B sequences a step reads rows (s-1)B to sB-1, and
// its micro-batches split them in order. Eval row k is eval sequence k. The mask slices are
// rows of SeqLen; they and the P slices are nil for the AR objective.
type BranchData struct {
	SeqLen      int
	TrainTokens []int32
	TrainMask   []bool
	TrainP      []float64
	EvalTokens  []int32
	EvalMask    []bool
	EvalP       []float64
	// StreamHash is the hash of the training tokens in order that a cbs branch records as
	// stream_hash in state.json and trainer.json once it has read them all (FNV-1a over the
	// token ids): equal hashes mean the same tokens in the same order.
	StreamHash string
}

// ExportBranch reads the training sequences and the eval set of a branch, with their masks for
// the masked-diffusion objective. Everything is a pure function of the corpus and e, as it is
// for the branch itself.
func (c *Corpus) ExportBranch(e BranchExport) (*BranchData, error) {
	if e.First < 0 || e.Seqs < 0 || e.Replica.Index < 0 || e.Replica.From < 0 {
		return nil, fmt.Errorf("data export: negative cursor, count or replica in %+v", e)
	}
	if e.MDM && !(e.MaskEps >= 0 && e.MaskEps <= 1) {
		return nil, fmt.Errorf("data export: mask eps %v outside [0, 1]", e.MaskEps)
	}
	L := c.seqLen
	d := &BranchData{SeqLen: L, TrainTokens: make([]int32, e.Seqs*int64(L))}
	cur := c.Cursor(e.First)
	cur.Replica = e.Replica
	first := cur.Read(d.TrainTokens)
	d.StreamHash = streamHash(d.TrainTokens)
	n := c.NumEvalSeqs()
	d.EvalTokens = make([]int32, n*L)
	for k := 0; k < n; k++ {
		c.EvalSeq(k, d.EvalTokens[k*L:(k+1)*L])
	}
	if !e.MDM {
		return d, nil
	}
	d.TrainMask, d.TrainP = make([]bool, len(d.TrainTokens)), make([]float64, e.Seqs)
	MDMBatchMasks(e.Seed, PurposeTrainMask, first, e.MaskEps, L, d.TrainMask, d.TrainP)
	d.EvalMask, d.EvalP = make([]bool, len(d.EvalTokens)), make([]float64, n)
	for k := 0; k < n; k++ {
		d.EvalP[k] = EvalMask(e.EvalSeed, k, e.MaskEps, d.EvalMask[k*L:(k+1)*L])
	}
	return d, nil
}

// streamHash is FNV-1a over the token ids, each taken as a uint32, written in hex without
// leading zeros: the stream_hash of a cbs branch that read tokens from its start.
func streamHash(tokens []int32) string {
	h := uint64(14695981039346656037)
	for _, t := range tokens {
		h ^= uint64(uint32(t))
		h *= 1099511628211
	}
	return strconv.FormatUint(h, 16)
}

// NamedArray is one array of an export, under the name of its .npy file (without the suffix).
type NamedArray struct {
	Name  string
	Array *Array
}

// Arrays lists the arrays of d by the names cbs data export writes: train_tokens and
// eval_tokens (int32, [sequences, SeqLen]), and for the masked-diffusion objective train_mask and
// eval_mask (bool, same shape) and train_p and eval_p (float64, one per sequence).
func (d *BranchData) Arrays() []NamedArray {
	L := d.SeqLen
	out := []NamedArray{
		{"train_tokens", Int32Array(d.TrainTokens, len(d.TrainTokens)/L, L)},
		{"eval_tokens", Int32Array(d.EvalTokens, len(d.EvalTokens)/L, L)},
	}
	if d.TrainMask != nil {
		out = append(out,
			NamedArray{"train_mask", BoolArray(d.TrainMask, len(d.TrainP), L)},
			NamedArray{"train_p", Float64Array(d.TrainP)},
			NamedArray{"eval_mask", BoolArray(d.EvalMask, len(d.EvalP), L)},
			NamedArray{"eval_p", Float64Array(d.EvalP)})
	}
	return out
}

// NPZFile is a member of an .npz archive that is not an array (a meta.json, say).
type NPZFile struct {
	Name string
	Data []byte
}

// WriteNPZ writes arrays as numpy's .npz: a zip archive of one NAME.npy per array, stored
// uncompressed, which numpy.load reads, followed by files.
func WriteNPZ(w io.Writer, arrays []NamedArray, files ...NPZFile) error {
	z := zip.NewWriter(w)
	for _, a := range arrays {
		f, err := z.CreateHeader(&zip.FileHeader{Name: a.Name + ".npy", Method: zip.Store})
		if err != nil {
			return err
		}
		if err := WriteNPY(f, a.Array); err != nil {
			return fmt.Errorf("%s: %w", a.Name, err)
		}
	}
	for _, file := range files {
		f, err := z.CreateHeader(&zip.FileHeader{Name: file.Name, Method: zip.Store})
		if err != nil {
			return err
		}
		if _, err := f.Write(file.Data); err != nil {
			return err
		}
	}
	return z.Close()
}
