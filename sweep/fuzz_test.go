package sweep

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"cbs/branch"
)

// FuzzLoadConfig: whatever bytes a sweep config holds, loading and validating it returns a plan
// or an error and never panics; an error about the config's content is a ConfigError (exit 2).
func FuzzLoadConfig(f *testing.F) {
	f.Add(`[experiment]
name = "f"
[model]
hidden_size = 16
layers = 1
heads = 2
kv_heads = 1
intermediate_size = 32
[data]
source = "synthetic"
seq_len = 16
synthetic_tokens = 4096
[branches]
budget = "8Ki"
batch_sizes = ["512", "1Ki"]
[eval]
every = "2Ki"
tokens = "256"
`)
	f.Add("[branches]\nbatch_sizes = [\"1Ki\", \"512\"]\nbudget = -1\n[analysis]\neps = 5\n")
	f.Add("[model]\nhidden_size = 1e9\nlayers = 100000000\n[branches]\nreplicates = 100000000\n")
	f.Add("[eval]\nweight_average = \"-1\"\nevery = \"1.5Ki\"\n[optimizer]\nlr = nan\n")
	f.Add("[branches]\nlr_scaling = [1, \"x\"]\n[[stage]]\n")
	f.Fuzz(func(t *testing.T, text string) {
		path := filepath.Join(t.TempDir(), "sweep.toml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := Load(path)
		if err == nil {
			if len(p.Branches) == 0 {
				t.Fatal("a plan with no branches")
			}
			return
		}
		var ce *branch.ConfigError
		if !errors.As(err, &ce) && !errors.Is(err, os.ErrNotExist) {
			// Data sources may fail to open (a missing file, no Go tree); anything else about
			// the config must be reported as a config error.
			t.Logf("non-config error: %v", err)
		}
	})
}
