package atomicio

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.txt")
	if err := WriteFile(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "two" {
		t.Fatalf("read %q, %v; want \"two\"", got, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	assertEntries(t, dir, "a.txt")
}

func TestWriteFileFuncError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.txt")
	if err := WriteFile(path, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteFileFunc(path, func(w io.Writer) error {
		io.WriteString(w, "partial")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != "keep" {
		t.Errorf("content %q after a failed write, want \"keep\"", got)
	}
	assertEntries(t, dir, "a.txt")

	if err := WriteFileFunc(path, func(w io.Writer) error {
		_, err := io.WriteString(w, "new")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(path)
	if string(got) != "new" {
		t.Errorf("content %q, want \"new\"", got)
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	if err := WriteFile(filepath.Join(t.TempDir(), "no", "a"), nil, 0o644); err == nil {
		t.Fatal("no error writing into a missing directory")
	}
}

// writeCkpt fills a fresh temporary directory for final with one file holding content.
func writeCkpt(t *testing.T, final, content string) string {
	t.Helper()
	tmp, err := TempDir(final)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(tmp, "model"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return tmp
}

func readCkpt(t *testing.T, final string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(final, "model"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func assertEntries(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(want)
	if len(got) != len(want) {
		t.Fatalf("%s holds %q, want %q", dir, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s holds %q, want %q", dir, got, want)
		}
	}
}

func TestCommitDir(t *testing.T) {
	root := t.TempDir()
	final := filepath.Join(root, "sub", "ckpt")
	for _, content := range []string{"v1", "v2", "v3"} {
		if err := CommitDir(writeCkpt(t, final, content), final); err != nil {
			t.Fatal(err)
		}
		if got := readCkpt(t, final); got != content {
			t.Fatalf("checkpoint holds %q, want %q", got, content)
		}
		assertEntries(t, filepath.Dir(final), "ckpt")
	}
}

// TestCommitDirCrash stops CommitDir after each step, as a crash would, and checks that
// CleanStale then leaves exactly one complete checkpoint: the previous one before the commit
// point, the new one after it.
func TestCommitDirCrash(t *testing.T) {
	crash := errors.New("crash")
	for _, tc := range []struct {
		step string
		want string
	}{
		{"synced", "old"},
		{"moved-aside", "old"},
		{"renamed", "new"},
	} {
		t.Run(tc.step, func(t *testing.T) {
			root := t.TempDir()
			final := filepath.Join(root, "ckpt")
			if err := CommitDir(writeCkpt(t, final, "old"), final); err != nil {
				t.Fatal(err)
			}
			crashPoint = func(step string) error {
				if step == tc.step {
					return crash
				}
				return nil
			}
			defer func() { crashPoint = func(string) error { return nil } }()
			if err := CommitDir(writeCkpt(t, final, "new"), final); !errors.Is(err, crash) {
				t.Fatalf("err = %v, want the simulated crash", err)
			}
			crashPoint = func(string) error { return nil }

			if err := CleanStale(final); err != nil {
				t.Fatal(err)
			}
			assertEntries(t, root, "ckpt")
			if got := readCkpt(t, final); got != tc.want {
				t.Errorf("after recovery the checkpoint holds %q, want %q", got, tc.want)
			}

			// The next commit after recovery works as usual.
			if err := CommitDir(writeCkpt(t, final, "next"), final); err != nil {
				t.Fatal(err)
			}
			assertEntries(t, root, "ckpt")
			if got := readCkpt(t, final); got != "next" {
				t.Errorf("checkpoint holds %q, want \"next\"", got)
			}
		})
	}
}

// A crash after moving the previous checkpoint aside, followed by a commit without CleanStale,
// must not lose the .old directory before the new one is in place.
func TestCommitDirAfterCrashWithoutClean(t *testing.T) {
	root := t.TempDir()
	final := filepath.Join(root, "ckpt")
	if err := CommitDir(writeCkpt(t, final, "old"), final); err != nil {
		t.Fatal(err)
	}
	crashPoint = func(step string) error {
		if step == "moved-aside" {
			return errors.New("crash")
		}
		return nil
	}
	CommitDir(writeCkpt(t, final, "lost"), final)
	crashPoint = func(string) error { return nil }
	if err := CommitDir(writeCkpt(t, final, "new"), final); err != nil {
		t.Fatal(err)
	}
	if got := readCkpt(t, final); got != "new" {
		t.Errorf("checkpoint holds %q, want \"new\"", got)
	}
	if err := CleanStale(final); err != nil {
		t.Fatal(err)
	}
	assertEntries(t, root, "ckpt")
}

func TestCleanStaleNothing(t *testing.T) {
	if err := CleanStale(filepath.Join(t.TempDir(), "missing", "ckpt")); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	final := filepath.Join(root, "ckpt")
	if err := CleanStale(final); err != nil {
		t.Fatal(err)
	}
	assertEntries(t, root)
	// Siblings whose names merely start like the checkpoint's are not touched.
	os.Mkdir(filepath.Join(root, "ckpt2"), 0o755)
	os.Mkdir(filepath.Join(root, "ckpt.tmp"), 0o755)
	if err := CleanStale(final); err != nil {
		t.Fatal(err)
	}
	assertEntries(t, root, "ckpt2", "ckpt.tmp")
}

func TestCommitDirMissingTmp(t *testing.T) {
	root := t.TempDir()
	final := filepath.Join(root, "ckpt")
	if err := CommitDir(writeCkpt(t, final, "v1"), final); err != nil {
		t.Fatal(err)
	}
	if err := CommitDir(filepath.Join(root, "ckpt.tmp-gone"), final); err == nil {
		t.Fatal("no error committing a missing directory")
	}
	if got := readCkpt(t, final); got != "v1" {
		t.Errorf("checkpoint holds %q after a failed commit, want \"v1\"", got)
	}
}

func TestWriteFileOverDirectory(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "d")
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(target, []byte("x"), 0o644); err == nil {
		t.Fatal("no error replacing a non-empty directory with a file")
	}
	assertEntries(t, dir, "d")
}
