package atomicio

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLock: a second lock of one directory is refused with the holder named; closing the first
// frees it.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	first, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Lock(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir+" is in use by another cbs process") {
		t.Fatalf("second lock: %v", err)
	}
	first.Close()
	second, err := Lock(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	second.Close()
}

// TestLockCleansStaleTemp: taking the lock removes writeFile's temp files older than the
// process, and nothing else.
func TestLockCleansStaleTemp(t *testing.T) {
	old := processStart.Add(-time.Hour)
	tests := []struct {
		name  string
		dir   bool
		mtime time.Time
		kept  bool
	}{
		{".metrics.jsonl.tmp-123456", false, old, false},
		{".state.json.tmp-9", false, old, false},
		{".state.json.tmp-42", false, time.Now().Add(time.Hour), true}, // written since the process began
		{"metrics.jsonl.tmp-1", false, old, true},                      // not writeFile's pattern
		{".state.json.tmp-abc", false, old, true},
		{".ckpt.tmp-77", true, old, true}, // directories are CleanStale's
		{"state.json", false, old, true},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		p := filepath.Join(dir, tc.name)
		var err error
		if tc.dir {
			err = os.Mkdir(p, 0o755)
		} else {
			err = os.WriteFile(p, []byte("x"), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, tc.mtime, tc.mtime); err != nil {
			t.Fatal(err)
		}
	}
	lk, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	for _, tc := range tests {
		_, err := os.Lstat(filepath.Join(dir, tc.name))
		if kept := err == nil; kept != tc.kept {
			t.Errorf("%s: kept %v, want %v", tc.name, kept, tc.kept)
		}
	}
}

// TestTempDirMode: the directory that becomes a checkpoint gets 0755 less the umask, as
// os.Mkdir gives any other directory, not MkdirTemp's 0700.
func TestTempDirMode(t *testing.T) {
	parent := t.TempDir()
	ref := filepath.Join(parent, "ref")
	if err := os.Mkdir(ref, 0o755); err != nil {
		t.Fatal(err)
	}
	want, _ := os.Stat(ref)
	tmp, err := TempDir(filepath.Join(parent, "ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(tmp), "ckpt"+tmpSuffix) {
		t.Errorf("TempDir %s: want the prefix ckpt%s", tmp, tmpSuffix)
	}
	got, _ := os.Stat(tmp)
	if got.Mode().Perm() != want.Mode().Perm() {
		t.Errorf("TempDir mode %v, want %v", got.Mode().Perm(), want.Mode().Perm())
	}
}
