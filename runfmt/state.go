package runfmt

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// The states of state.json.
const (
	StatePending  = "pending"
	StateRunning  = "running"
	StateDone     = "done"
	StateFailed   = "failed"
	StateDiverged = "diverged"
)

// State is state.json: where a branch stands. The file belongs to whoever holds the branch
// directory's lock.
type State struct {
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	Step   int    `json:"step"`
	Tokens int64  `json:"tokens"`
	// StreamHash identifies the training tokens consumed so far (an FNV-1a hash of their ids).
	StreamHash string `json:"stream_hash,omitempty"`
}

// Marshal gives the bytes of state.json: indented JSON and a newline.
func (s State) Marshal() []byte {
	b, _ := json.MarshalIndent(s, "", "  ")
	return append(b, '\n')
}

// ReadState reads dir/state.json. A missing file gives an error that errors.Is(err,
// fs.ErrNotExist) recognises: the branch has not started. A file that does not parse, or whose
// state is none of the five, is an error naming it.
func ReadState(dir string) (State, error) {
	var st State
	path := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %v", path, err)
	}
	switch st.State {
	case StatePending, StateRunning, StateDone, StateFailed, StateDiverged:
		return st, nil
	}
	return st, fmt.Errorf("%s: state = %q: allowed %s, %s, %s, %s, %s", path, st.State,
		StatePending, StateRunning, StateDone, StateFailed, StateDiverged)
}
