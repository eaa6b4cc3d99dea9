package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cbs/compute/blas"
)

// TestSlowPathWarning: the warning names the install command and the slowdown, and is given only
// when OpenBLAS failed to load, not when the pure-Go BLAS was chosen with CBS_BLAS=gonum.
func TestSlowPathWarning(t *testing.T) {
	for _, tc := range []struct {
		name string
		info blas.Info
		warn bool
	}{
		{"openblas", blas.Info{Library: "openblas", Path: "libopenblas.so.0"}, false},
		{"not found", blas.Info{Library: "gonum", FallbackReason: "openblas not found in 14 usual locations"}, true},
		{"CBS_OPENBLAS does not load", blas.Info{Library: "gonum", FallbackReason: "dlopen /nowhere/libopenblas.so.0: no such file"}, true},
		{"chosen", blas.Info{Library: "gonum", FallbackReason: "CBS_BLAS=gonum"}, false},
	} {
		msg := slowPathWarning(tc.info)
		if (msg != "") != tc.warn {
			t.Errorf("%s: warning %q, want one: %v", tc.name, msg, tc.warn)
			continue
		}
		if !tc.warn {
			continue
		}
		for _, want := range []string{"warning: OpenBLAS was not found", "apt-get install libopenblas0", "3 to 7 times", "cbs doctor"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: warning without %q:\n%s", tc.name, want, msg)
			}
		}
	}
}

// TestSlowPathUpFront: train (with its progress lines), sweep and reproduce warn exactly once,
// before anything else they print.
func TestSlowPathUpFront(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := cbsBinary(t)
	dir, sweepCfg := sweepFixture(t, "16Ki")
	sweepCfg = writeConfig(t, dir, "sweep.toml", strings.Replace(mustRead(t, sweepCfg), "seed = 1\n[parent]", fmt.Sprintf("seed = 1\nout = %q\n[parent]", filepath.Join(dir, "sweep-out")), 1))
	parent := filepath.Join(dir, "parent.toml")
	study := filepath.Join(dir, "experiments", "tiny")
	if err := os.MkdirAll(study, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, study, "parent.toml", mustRead(t, parent))
	writeConfig(t, study, "experiment.toml", "name = \"tiny\"\n[[stage]]\nname = \"base\"\nkind = \"train\"\nconfig = \"parent.toml\"\n")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CBS_BLAS=") && !strings.HasPrefix(kv, "CBS_OPENBLAS=") {
			env = append(env, kv)
		}
	}
	env = append(env, "CBS_OPENBLAS="+filepath.Join(dir, "missing", "libopenblas.so.0"))
	for _, tc := range []struct {
		args []string
		// start is the first line that training has begun, which the warning must precede.
		start string
	}{
		{[]string{"train", parent, "--out", filepath.Join(dir, "train-out")}, "parent: "},
		{[]string{"sweep", sweepCfg}, "3 branches: "},
		{[]string{"reproduce", "tiny", "--experiments", filepath.Join(dir, "experiments"), "--runs", filepath.Join(dir, "runs"), "--results", filepath.Join(dir, "results")}, "== tiny: stage"},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", tc.args[0], err, stderr.String())
		}
		got := stderr.String()
		warning, start := strings.Index(got, "warning: OpenBLAS was not found"), strings.Index(got, tc.start)
		if n := strings.Count(got, "apt-get install libopenblas0"); n != 1 || warning < 0 || start < 0 || warning > start {
			t.Errorf("%s: want the warning once, before %q; got it %d times:\n%s", tc.args[0], tc.start, n, got)
		}
	}
}

// TestQuickstartScript checks scripts/quickstart.sh with a stub go that records its arguments
// and working directory and answers `go run ./cmd/cbs doctor` with a chosen BLAS line, and stubs
// of id and apt-get: it passes its arguments to reproduce quickstart from the repository root,
// installs libopenblas0 as root when OpenBLAS is missing, and otherwise prints the command and
// carries on.
func TestQuickstartScript(t *testing.T) {
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "quickstart.sh"))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(script))
	if fi, err := os.Stat(script); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s: %v; want an executable file", script, err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	if bash, err := exec.LookPath("bash"); err == nil {
		if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
			t.Fatalf("bash -n: %v\n%s", err, out)
		}
	}
	if out, err := exec.Command(sh, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s", err, out)
	}

	// bin holds the tools the script needs besides the stubs, so PATH can leave out the real go.
	bin := t.TempDir()
	for _, tool := range []string{"dirname", "sed"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s", tool)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	stub := func(dir, name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!"+sh+"\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stubs := t.TempDir()
	stub(stubs, "go", `echo "go $* (in $(pwd))" >>"$STUB_LOG"
[ "$3" = doctor ] && echo "blas:    $STUB_BLAS"
exit 0
`)
	stub(stubs, "id", `echo "$STUB_UID"`+"\n")
	stub(stubs, "apt-get", `echo "apt-get $*" >>"$STUB_LOG"`+"\n")

	for _, tc := range []struct {
		name     string
		path     string
		env      []string
		code     int
		calls    []string // the stubs' calls, in order
		messages []string // in the script's stderr
	}{
		{name: "openblas found", env: []string{"STUB_BLAS=openblas libopenblas.so.0, core Haswell", "STUB_UID=1000"},
			calls: []string{"go run ./cmd/cbs doctor", "go run ./cmd/cbs reproduce quickstart --scale 0.25 --threads 2"}},
		{name: "missing, root", env: []string{"STUB_BLAS=gonum (pure Go): openblas not found", "STUB_UID=0"},
			calls:    []string{"go run ./cmd/cbs doctor", "apt-get install -y -qq libopenblas0", "go run ./cmd/cbs reproduce quickstart --scale 0.25 --threads 2"},
			messages: []string{"installing libopenblas0", "libopenblas0 installed"}},
		{name: "missing, not root", env: []string{"STUB_BLAS=gonum (pure Go): openblas not found", "STUB_UID=1000"},
			calls:    []string{"go run ./cmd/cbs doctor", "go run ./cmd/cbs reproduce quickstart --scale 0.25 --threads 2"},
			messages: []string{"apt-get install -y libopenblas0", "3 to 7 times slower", "Continuing"}},
		{name: "CBS_BLAS=gonum", env: []string{"STUB_BLAS=gonum (pure Go): CBS_BLAS=gonum", "STUB_UID=0", "CBS_BLAS=gonum"},
			calls: []string{"go run ./cmd/cbs reproduce quickstart --scale 0.25 --threads 2"}},
		{name: "no go", path: bin, env: []string{"STUB_UID=0"}, code: 127, messages: []string{"go was not found on PATH"}},
	} {
		log := filepath.Join(t.TempDir(), "calls")
		path := tc.path
		if path == "" {
			path = stubs + string(os.PathListSeparator) + bin
		}
		cmd := exec.Command(sh, script, "--scale", "0.25", "--threads", "2")
		cmd.Dir = t.TempDir() // the script finds the repository from its own path
		cmd.Env = append([]string{"PATH=" + path, "STUB_LOG=" + log}, tc.env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d\n%s", tc.name, code, tc.code, stderr.String())
		}
		b, _ := os.ReadFile(log)
		var want []string
		for _, c := range tc.calls {
			if strings.HasPrefix(c, "go ") {
				c += " (in " + root + ")"
			}
			want = append(want, c)
		}
		if got := strings.Split(strings.TrimSpace(string(b)), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: calls\n%s\nwant\n%s", tc.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, m := range tc.messages {
			if !strings.Contains(stderr.String(), m) {
				t.Errorf("%s: stderr without %q:\n%s", tc.name, m, stderr.String())
			}
		}
	}
}
