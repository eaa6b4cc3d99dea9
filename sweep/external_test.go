package sweep

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cbs/branch"
	"cbs/runfmt"
)

// extConfig is a sweep for an external trainer: no model, no parent, no data source.
const extConfig = `
[experiment]
name = "ext"
seed = 7
[data]
seq_len = 32
[optimizer]
lr = 0.01
[schedule]
warmup = "1Ki"
[branches]
budget = "8Ki"
batch_sizes = ["1Ki", "2Ki"]
[run]
executor = "external"
[external]
command = "train --out {out} --bt {batch_tokens} --bs {batch_seqs} --lr {lr} --seed {seed} --w {warmup_tokens} --budget {budget_tokens} --parent {parent} --x {{literal}}"
`

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExternalCommandRendering(t *testing.T) {
	dir := t.TempDir()
	p, err := Load(writeFile(t, dir, "ext.toml", extConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Branches) != 2 || p.Config.External.Via != ExecutorLocal || p.Config.External.Workdir != dir {
		t.Fatalf("plan: %d branches, via %q, workdir %q", len(p.Branches), p.Config.External.Via, p.Config.External.Workdir)
	}
	s := p.Branches[1] // 2Ki: 64 sequences, LR x sqrt(2)
	run, err := renderExternal(p.Config.External, s, "/runs/my dir/b2Ki-r0")
	if err != nil {
		t.Fatal(err)
	}
	want := "train --out '/runs/my dir/b2Ki-r0' --bt 2048 --bs 64 --lr 0.014142135623730952 --seed 7 --w 1024 --budget 8192 --parent '' --x {literal}"
	if len(run.Argv) != 3 || run.Argv[0] != "/bin/sh" || run.Argv[2] != want {
		t.Errorf("argv %q\nwant sh -c %q", run.Argv, want)
	}
	env := strings.Join(run.Env, "\n") + "\n"
	exe, _ := os.Executable()
	for _, kv := range []string{"CBS_BATCH_SEQS=64", "CBS_OUT=/runs/my dir/b2Ki-r0", "CBS_METRICS=/runs/my dir/b2Ki-r0/metrics.jsonl", "CBS_STEPS=4", "CBS_CBS=" + exe} {
		if !strings.Contains(env, kv+"\n") {
			t.Errorf("environment lacks %s", kv)
		}
	}

	// The list form substitutes inside each argument and quotes nothing.
	list := strings.Replace(extConfig, `command = "train`, `command = ["train", "--out={out}", "{id}"]
# command = "train`, 1)
	p, err = Load(writeFile(t, dir, "list.toml", list))
	if err != nil {
		t.Fatal(err)
	}
	run, err = renderExternal(p.Config.External, p.Branches[0], "/a b")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(run.Argv, "|") != "train|--out=/a b|b1Ki-r0" {
		t.Errorf("argv %q", run.Argv)
	}
}

// TestExecutorConfigErrors: every rejected [run], [slurm] and [external] value names its key.
func TestExecutorConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, from, to, want string }{
		{"executor", `executor = "external"`, `executor = "kubernetes"`, `run.executor = "kubernetes", want "local", "slurm" or "external"`},
		{"no command", `command = "train`, `# command = "train`, "needs [external] command"},
		{"placeholder", "{batch_seqs}", "{batch_sequences}", "unknown placeholder {batch_sequences}"},
		{"unclosed", "{seed}", "{seed", "unclosed {"},
		{"stray brace", "{seed}", "seed}", "unmatched }"},
		{"via", "[external]", "[external]\nvia = \"ssh\"", `external.via = "ssh"`},
		{"seq_len", "seq_len = 32", "seq_len = 0", "data.seq_len = 0"},
		{"slurm time", "[external]", "[slurm]\ntime = \"4h\"\n[external]", `slurm.time = "4h"`},
		{"slurm mem", "[external]", "[slurm]\nmem = \"lots\"\n[external]", `slurm.mem = "lots"`},
		{"slurm cpus", "[external]", "[slurm]\ncpus_per_task = -1\n[external]", "slurm.cpus_per_task = -1"},
		{"slurm extra", "[external]", "[slurm]\nextra = [\"qos=high\"]\n[external]", `slurm.extra[0] = "qos=high"`},
		{"slurm unknown", "[external]", "[slurm]\nnodes = 2\n[external]", "unknown key slurm.nodes"},
		{"missing parent", "[data]", "[parent]\ncheckpoint = \"nowhere\"\n[data]", `parent.checkpoint = "nowhere"`},
		{"command type", `command = "train`, "command = 3\n# ", "external.command = 3"},
	} {
		if !strings.Contains(extConfig, tc.from) {
			t.Fatalf("%s: config lacks %q", tc.name, tc.from)
		}
		_, err := Load(writeFile(t, dir, "bad.toml", strings.Replace(extConfig, tc.from, tc.to, 1)))
		var ce *branch.ConfigError
		if err == nil || !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want a config error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestValidateMetrics: what an external trainer writes is checked line by line.
func TestValidateMetrics(t *testing.T) {
	s := runfmt.Branch{BatchTokens: 1024, BudgetTokens: 3072, MicroBatch: 8, SeqLen: 32, Steps: 3}
	line := func(step int, rest string) string {
		return `{"tokens": ` + itoa(step*1024) + `, "step": ` + itoa(step) + rest + "}\n"
	}
	good := line(1, `, "train_loss": 5.5, "lr": 0.001`) + line(2, `, "train_loss": 5.1`) + line(3, `, "train_loss": 4.9, "eval_loss": 5, "extra": "ignored"`)
	for _, tc := range []struct {
		name, text, want string
		nonFinite        bool
	}{
		{name: "good", text: good},
		{name: "resumed", text: line(1, `, "train_loss": 5.5`) + line(2, `, "train_loss": 5.1`) + line(2, `, "train_loss": 5.1`) + line(3, `, "train_loss": 4.9`)},
		{name: "blank lines", text: line(1, `, "train_loss": 5.5`) + "\n" + line(2, `, "train_loss": 5.1`) + line(3, `, "train_loss": 4.9`)},
		{name: "non-numeric loss", text: line(1, `, "train_loss": 5.5`) + line(2, `, "train_loss": "low"`), want: `line 2: train_loss = "low", want a number`},
		{name: "null loss", text: line(1, `, "train_loss": null`), want: "line 1: train_loss = null, want a number"},
		{name: "missing train_loss", text: line(1, `, "lr": 0.1`), want: "line 1: missing key train_loss"},
		{name: "missing step", text: `{"tokens": 1024, "train_loss": 3}` + "\n", want: "line 1: missing key step"},
		{name: "fractional step", text: `{"tokens": 1024, "step": 1.5, "train_loss": 3}` + "\n", want: "line 1: step = 1.5, want an integer"},
		{name: "truncated last line", text: line(1, `, "train_loss": 5.5`) + line(2, `, "train_loss": 5.1`) + `{"tokens": 3072, "st`, want: "line 3: truncated last line"},
		{name: "no final newline", text: strings.TrimSuffix(good, "\n"), want: "line 3: truncated last line"},
		{name: "not json", text: "step 1 loss 5\n", want: "line 1: not a JSON object"},
		{name: "NaN", text: line(1, `, "train_loss": NaN`), want: "line 1: non-finite number NaN", nonFinite: true},
		{name: "wrong batch", text: `{"tokens": 2048, "step": 1, "train_loss": 3}` + "\n", want: "line 1: tokens = 2048 at step 1, want step x batch_tokens = 1 x 1024 = 1024"},
		{name: "short of budget", text: line(1, `, "train_loss": 5.5`) + line(2, `, "train_loss": 5.1`), want: "line 2: the metrics end at 2048 tokens (step 2), want the budget, 3072 tokens (3 steps)"},
		{name: "empty", text: "", want: "no metrics lines"},
		{name: "eval shards", text: line(1, `, "train_loss": 5.5, "eval_shards": [1, "x"]`), want: "line 1: eval_shards = [1, \"x\"], want a list of numbers"},
	} {
		path := writeFile(t, t.TempDir(), "metrics.jsonl", tc.text)
		last, err := ValidateMetrics(path, s)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && (last.Step != 3 || last.Tokens != 3072):
			t.Errorf("%s: last line step %d tokens %d, want 3, 3072", tc.name, last.Step, last.Tokens)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v; want an error containing %q", tc.name, err, tc.want)
		case tc.want != "" && !strings.Contains(err.Error(), path):
			t.Errorf("%s: %v does not name the file", tc.name, err)
		case errors.Is(err, runfmt.ErrNonFinite) != tc.nonFinite:
			t.Errorf("%s: %v: non-finite = %v, want %v", tc.name, err, !tc.nonFinite, tc.nonFinite)
		}
	}
	if _, err := ValidateMetrics(filepath.Join(t.TempDir(), "none.jsonl"), s); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}

// TestPlaceholdersDocumented: docs/executors.md lists every placeholder as the code has it.
func TestPlaceholdersDocumented(t *testing.T) {
	doc := readFile(t, "../docs/executors.md")
	for _, p := range Placeholders {
		row := "| `{" + p.Name + "}` | `CBS_" + strings.ToUpper(p.Name) + "` | " + p.Doc + " |"
		if !strings.Contains(doc, row) {
			t.Errorf("docs/executors.md lacks the row\n%s", row)
		}
	}
}

// TestExternalInterrupt: cancelling the context sends SIGTERM to the trainer's process group and
// leaves the branch pending, so the next cbs sweep runs it again.
func TestExternalInterrupt(t *testing.T) {
	dir := t.TempDir()
	// The trainer's child (sleep) must die too: the trap reports the signal it got.
	cfg := strings.Replace(extConfig, `command = "train`, `command = "trap 'echo got TERM >&2; exit 143' TERM; sleep 30 & wait"
# command = "train`, 1)
	cfg = strings.Replace(cfg, "seed = 7\n", "seed = 7\nout = \""+filepath.Join(dir, "run")+"\"\n", 1)
	p, err := Load(writeFile(t, dir, "ext.toml", cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	o, err := Execute(ctx, p, Options{})
	if !errors.Is(err, ErrInterrupted) || time.Since(start) > 10*time.Second {
		t.Fatalf("interrupted sweep: %v after %v", err, time.Since(start))
	}
	bdir := BranchDir(p.Out, "b1Ki-r0")
	if st := readState(bdir); st.State != runfmt.StatePending || o.States["b1Ki-r0"] != runfmt.StatePending {
		t.Errorf("state after an interrupt: %+v, outcome %v", st, o.States)
	}
	if log := readFile(t, filepath.Join(bdir, "log.txt")); !strings.Contains(log, "got TERM") {
		t.Errorf("the trainer did not get SIGTERM:\n%s", log)
	}
}

// TestExternalInterruptAfterFinish: a trainer that has written its whole budget when the
// interrupt comes, and exits 0 on SIGTERM, is done, not pending: resuming must not run it again.
func TestExternalInterruptAfterFinish(t *testing.T) {
	dir := t.TempDir()
	script := `s=1; while [ $((s*{batch_tokens})) -le {budget_tokens} ]; do printf '{{"step": %d, "tokens": %d, "train_loss": 1}}\n' $s $((s*{batch_tokens})) >> {out}/metrics.jsonl; s=$((s+1)); done; trap 'exit 0' TERM; sleep 30 & wait`
	cfg := strings.Replace(extConfig, `command = "train`, "command = '''"+script+"'''\n# command = \"train", 1)
	cfg = strings.Replace(cfg, "seed = 7\n", "seed = 7\nout = \""+filepath.Join(dir, "run")+"\"\n", 1)
	p, err := Load(writeFile(t, dir, "ext.toml", cfg))
	if err != nil {
		t.Fatal(err)
	}
	bdir := BranchDir(p.Out, "b1Ki-r0")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Interrupt once the first branch has written its 8 steps.
		for ctx.Err() == nil {
			if b, err := os.ReadFile(filepath.Join(bdir, runfmt.MetricsFile)); err == nil && strings.Count(string(b), "\n") == 8 {
				time.Sleep(100 * time.Millisecond)
				cancel()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	o, err := Execute(ctx, p, Options{})
	cancel()
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted sweep: %v", err)
	}
	if st := readState(bdir); st.State != runfmt.StateDone || o.States["b1Ki-r0"] != runfmt.StateDone {
		t.Errorf("finished branch after an interrupt: %+v, outcome %v", st, o.States)
	}
	if st := o.States["b2Ki-r0"]; st != runfmt.StatePending {
		t.Errorf("unstarted branch after an interrupt: %v", st)
	}
}
