package runfmt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Branch is branch.json as its readers take it: the shape of one branch, the keys of
// docs/results-format.md. cbs writes the branch's whole resolved spec besides (EncodeBranch);
// another trainer may write just these. Readers ignore the keys Branch does not declare.
type Branch struct {
	ID              string  `json:"id"`
	Seed            int64   `json:"seed"`
	Objective       string  `json:"objective"`
	BudgetTokens    int64   `json:"budget_tokens"`
	BatchTokens     int64   `json:"batch_tokens"`
	MicroBatch      int64   `json:"micro_batch"`
	LRScale         float64 `json:"lr_scale"`
	EvalEveryTokens int64   `json:"eval_every_tokens"`
	Replicate       int     `json:"replicate"`
	// The arithmetic derived from the above, so that a reader needs no copy of the trainer to
	// know a branch's shape.
	SeqLen    int64              `json:"seq_len"`
	BatchSeqs int64              `json:"batch_seqs"`
	Accum     int64              `json:"accum"`
	Steps     int64              `json:"steps"`
	LRPeak    map[string]float64 `json:"lr_peak"`
}

// ReadBranch reads dir/branch.json. An ID the file does not give is the directory's name. A
// missing file gives an error that errors.Is(err, fs.ErrNotExist) recognises.
func ReadBranch(dir string) (Branch, error) {
	var b Branch
	path := filepath.Join(dir, SpecFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return b, err
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return b, fmt.Errorf("%s: %v", path, err)
	}
	if b.ID == "" {
		b.ID = filepath.Base(dir)
	}
	return b, nil
}

// EncodeBranch gives the bytes of branch.json: the JSON object spec marshals to, with the keys of
// rec merged in. A key both have must have the same value in both; rec's other keys follow
// spec's, in the order Branch declares them. The object is indented by two spaces and ends in a
// newline.
func EncodeBranch(rec Branch, spec any) ([]byte, error) {
	keys, vals, err := objectFields(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: the spec: %w", SpecFile, err)
	}
	recKeys, recVals, err := objectFields(rec)
	if err != nil {
		return nil, err
	}
	at := map[string]int{}
	for i, k := range keys {
		at[k] = i
	}
	for i, k := range recKeys {
		j, ok := at[k]
		switch {
		case !ok:
			keys, vals = append(keys, k), append(vals, recVals[i])
		case !bytes.Equal(vals[j], recVals[i]):
			return nil, fmt.Errorf("%s: %s is %s in the spec but %s in the branch record", SpecFile, k, vals[j], recVals[i])
		}
	}
	var compact bytes.Buffer
	compact.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			compact.WriteByte(',')
		}
		name, _ := json.Marshal(k)
		compact.Write(name)
		compact.WriteByte(':')
		compact.Write(vals[i])
	}
	compact.WriteByte('}')
	var out bytes.Buffer
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// objectFields marshals v, which must give a JSON object, and returns its keys and their values
// in order.
func objectFields(v any) (keys []string, vals []json.RawMessage, err error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, nil, errors.New("not a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, nil, err
		}
		keys, vals = append(keys, t.(string)), append(vals, val)
	}
	return keys, vals, nil
}
