package study

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoad: a missing study names the studies beside it, and a study file that cannot be run is
// an ErrUsage error whose message names the stage and the key.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "experiment.toml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(dir, name)
	}
	good := write("good", "name = \"good\"\n[[stage]]\nname = \"base\"\nkind = \"train\"\nconfig = \"base.toml\"\n")
	s, err := Load(good)
	if err != nil || s.Dir != good || len(s.Stages) != 1 || s.Stages[0].Kind != KindTrain {
		t.Fatalf("Load(good) = %+v, %v", s, err)
	}
	for _, c := range []struct{ name, body, want string }{
		{"nonesuch", "", `no study "nonesuch"`},
		{"nostages", "name = \"x\"\n", "no [[stage]] tables"},
		{"badkind", "[[stage]]\nname = \"a\"\nkind = \"fit\"\nconfig = \"a.toml\"\n", `stage[0].kind = "fit"`},
		{"noparent", "[[stage]]\nname = \"s\"\nkind = \"sweep\"\nconfig = \"s.toml\"\nparent = \"base\"\n", `stage[0].parent = "base"`},
		{"compare", "[[stage]]\nname = \"c\"\nkind = \"compare\"\nsweeps = [\"a\", \"b\"]\nlabels = [\"a\", \"b\"]\n", `"a" is not an earlier sweep stage`},
		{"unknown", "[[stage]]\nname = \"a\"\nkind = \"train\"\nconfig = \"a.toml\"\nparnet = \"b\"\n", "parnet"},
		{"spreadnotrain", "[[stage]]\nname = \"s\"\nkind = \"spread\"\nruns = [\"a\", \"b\", \"c\"]\nlabels = [\"x\", \"x\", \"y\"]\n", `"a" is not an earlier train stage`},
		{"spreadlabels", "[[stage]]\nname = \"a\"\nkind = \"train\"\nconfig = \"a.toml\"\n[[stage]]\nname = \"b\"\nkind = \"train\"\nconfig = \"b.toml\"\n[[stage]]\nname = \"s\"\nkind = \"spread\"\nruns = [\"a\", \"b\"]\nlabels = [\"x\"]\n", "one label per run"},
		{"spreadoneref", "[[stage]]\nname = \"a\"\nkind = \"train\"\nconfig = \"a.toml\"\n[[stage]]\nname = \"b\"\nkind = \"train\"\nconfig = \"b.toml\"\n[[stage]]\nname = \"s\"\nkind = \"spread\"\nruns = [\"a\", \"b\"]\nlabels = [\"x\", \"y\"]\n", `two or more runs labelled "x"`},
		{"spreadnoother", "[[stage]]\nname = \"a\"\nkind = \"train\"\nconfig = \"a.toml\"\n[[stage]]\nname = \"b\"\nkind = \"train\"\nconfig = \"b.toml\"\n[[stage]]\nname = \"s\"\nkind = \"spread\"\nruns = [\"a\", \"b\"]\nlabels = [\"x\", \"x\"]\n", "one or more labelled otherwise"},
	} {
		path := filepath.Join(dir, c.name)
		if c.body != "" {
			path = write(c.name, c.body)
		}
		_, err := Load(path)
		if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrUsage saying %q", c.name, err, c.want)
		}
		if c.name == "nonesuch" && (err == nil || !strings.Contains(err.Error(), "studies: ") || !strings.Contains(err.Error(), "good")) {
			t.Errorf("%s: %v, want the studies listed", c.name, err)
		}
	}
}

// TestCheckScale: only powers of two scale a study.
func TestCheckScale(t *testing.T) {
	for _, s := range []float64{0.25, 0.5, 1, 2, 16} {
		if err := CheckScale(s); err != nil {
			t.Errorf("CheckScale(%g) = %v", s, err)
		}
	}
	for _, s := range []float64{0, -1, 0.3, 3, math.NaN()} {
		if err := CheckScale(s); !errors.Is(err, ErrUsage) {
			t.Errorf("CheckScale(%g) = %v, want ErrUsage", s, err)
		}
	}
}

// TestFromWorkingDir: a run directory below the working directory is named from it in the
// records a study keeps, anything else by its absolute path.
func TestFromWorkingDir(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, want string }{
		{filepath.Join(wd, "runs", "q"), filepath.Join("runs", "q")},
		{filepath.Join(wd, "..x", "q"), filepath.Join("..x", "q")},
		{filepath.Dir(wd), filepath.Dir(wd)},
		{"/elsewhere/runs", "/elsewhere/runs"},
	} {
		if got := fromWorkingDir(c.in); got != c.want {
			t.Errorf("fromWorkingDir(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}
