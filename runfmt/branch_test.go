package runfmt

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestEncodeBranch: the record's keys are merged into the spec's object, in place where the spec
// has them and after its own keys where it does not; a disagreement is an error; what is written
// reads back as the record.
func TestEncodeBranch(t *testing.T) {
	type spec struct {
		ID          string  `json:"id"`
		Seed        uint64  `json:"seed"`
		Data        any     `json:"data"`
		BatchTokens Tokens  `json:"batch_tokens"`
		LRScale     float64 `json:"lr_scale"`
	}
	s := spec{ID: "b1Ki-r0", Seed: 3, Data: map[string]int{"seq_len": 64}, BatchTokens: 1024, LRScale: 1}
	rec := Branch{ID: "b1Ki-r0", Seed: 3, BatchTokens: 1024, LRScale: 1, SeqLen: 64, BatchSeqs: 16, Steps: 4, LRPeak: map[string]float64{"attention": 0.001}}
	b, err := EncodeBranch(rec, s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "id": "b1Ki-r0",
  "seed": 3,
  "data": {
    "seq_len": 64
  },
  "batch_tokens": 1024,
  "lr_scale": 1,
  "objective": "",
  "budget_tokens": 0,
  "micro_batch": 0,
  "eval_every_tokens": 0,
  "replicate": 0,
  "seq_len": 64,
  "batch_seqs": 16,
  "accum": 0,
  "steps": 4,
  "lr_peak": {
    "attention": 0.001
  }
}
`
	if string(b) != want {
		t.Errorf("branch.json:\n%s\nwant:\n%s", b, want)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SpecFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadBranch(dir); err != nil || !reflect.DeepEqual(got, rec) {
		t.Errorf("ReadBranch = %+v, %v; want %+v", got, err, rec)
	}
	rec.BatchTokens = 2048
	if _, err := EncodeBranch(rec, s); err == nil || !strings.Contains(err.Error(), "batch_tokens is 1024 in the spec but 2048") {
		t.Errorf("a disagreeing record: %v", err)
	}
	if _, err := EncodeBranch(rec, []int{1}); err == nil {
		t.Error("a spec that is not an object was accepted")
	}
}

func TestReadBranchAndState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b2Ki-r1")
	if _, err := ReadBranch(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no branch.json: %v", err)
	}
	if _, err := ReadState(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no state.json: %v", err)
	}
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, SpecFile), []byte(`{"batch_tokens": 2048}`), 0o644)
	if b, err := ReadBranch(dir); err != nil || b.ID != "b2Ki-r1" || b.BatchTokens != 2048 {
		t.Errorf("ReadBranch = %+v, %v; want the directory's name as id", b, err)
	}
	for _, tc := range []struct{ text, want string }{
		{`{"state": "finished"}`, `state = "finished": allowed pending, running, done, failed, diverged`},
		{`{"state": `, "state.json: unexpected end of JSON input"},
	} {
		os.WriteFile(filepath.Join(dir, StateFile), []byte(tc.text), 0o644)
		if _, err := ReadState(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("state.json %s: %v, want %q", tc.text, err, tc.want)
		}
	}
	st := State{State: StateFailed, Reason: "boom", Step: 3, Tokens: 3072}
	os.WriteFile(filepath.Join(dir, StateFile), st.Marshal(), 0o644)
	if got, err := ReadState(dir); err != nil || got != st {
		t.Errorf("ReadState = %+v, %v; want %+v", got, err, st)
	}
}
