// Package torchref runs the PyTorch reference implementation, torch_ref.py, for parity tests:
// the file CBS_TORCH_REF names, else the one the development setup keeps beside the repository.
// Tests skip when python3 with torch, or the script, is not present.
package torchref

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once   sync.Once
	script string
	reason string
)

// Python is the interpreter the reference runs with (Debian's, where python3-torch installs).
const Python = "/usr/bin/python3"

func find() {
	if p := os.Getenv("CBS_TORCH_REF"); p != "" {
		if _, err := os.Stat(p); err != nil {
			reason = fmt.Sprintf("CBS_TORCH_REF: %v", err)
			return
		}
		script = p
		checkPython()
		return
	}
	// Beside the checkout, as the development setup keeps it; walk up from the working
	// directory of the test, which is inside the repository.
	dir, _ := os.Getwd()
	for {
		cand := filepath.Join(dir, "..", "shared", "bench", "torch_ref.py")
		if _, err := os.Stat(cand); err == nil {
			script = cand
			break
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			reason = "torch_ref.py not found (set CBS_TORCH_REF to its path)"
			return
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			reason = "torch_ref.py not found"
			return
		}
		dir = parent
	}
	checkPython()
}

func checkPython() {
	if out, err := exec.Command(Python, "-c", "import torch, numpy").CombinedOutput(); err != nil {
		reason = fmt.Sprintf("%s cannot import torch and numpy: %v %s", Python, err, bytes.TrimSpace(out))
		script = ""
	}
}

// Script returns the path of torch_ref.py, or skips t with the reason it is unusable.
func Script(t testing.TB) string {
	t.Helper()
	once.Do(find)
	if script == "" {
		t.Skip("PyTorch reference unavailable: " + reason)
	}
	return script
}

// Run runs torch_ref.py with args and decodes the JSON object it prints.
func Run(t testing.TB, args ...string) map[string]any {
	t.Helper()
	s := Script(t)
	cmd := exec.Command(Python, append([]string{s}, args...)...)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=2")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("torch_ref.py %v: %v\n%s", args, err, stderr.String())
	}
	var out map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("torch_ref.py %v: output is not JSON: %v\n%s", args, err, stdout.String())
	}
	return out
}
