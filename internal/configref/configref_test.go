package configref

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

type count int64

func (count) ConfigType() string { return "tokens" }

type sample struct {
	Inner struct {
		Budget  count    `toml:"budget" default:"required" doc:"Tokens."`
		Batches []count  `toml:"batch_sizes" doc:"Ladder."`
		Rate    float64  `toml:"rate" doc:"A rate."`
		Names   []string `toml:"names"`
	} `toml:"branches"`
	Run struct {
		Threads int `toml:"threads" default:"0 (all cores)"`
		Skip    int `toml:"-"`
	} `toml:"run"`
	Opt *struct {
		Flag *bool `toml:"flag"`
	} `toml:"opt"`
	Stage []struct {
		Name string `toml:"name"`
	} `toml:"stage"`
}

func TestKeys(t *testing.T) {
	var s sample
	s.Inner.Rate = 0.5
	s.Inner.Names = []string{"a"}
	got := Keys(&s)
	want := []Key{
		{Table: "branches", Name: "budget", Type: "tokens", Default: "required", Doc: "Tokens."},
		{Table: "branches", Name: "batch_sizes", Type: "list of tokens", Doc: "Ladder."},
		{Table: "branches", Name: "rate", Type: "number", Default: "0.5", Doc: "A rate."},
		{Table: "branches", Name: "names", Type: "list of strings", Default: `["a"]`},
		{Table: "run", Name: "threads", Type: "integer", Default: "0 (all cores)"},
		{Table: "opt", Name: "flag", Type: "boolean"},
		{Table: "stage", Name: "name", Type: "string"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d keys %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("key %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestClosest(t *testing.T) {
	cands := []string{"budget", "batch_sizes", "replicates", "micro_batch", "reference_batch"}
	for _, c := range []struct{ in, want string }{
		{"replicate", "replicates"},
		{"batch_size", "batch_sizes"},
		{"budgte", "budget"}, // a swap is one edit
		{"microbatch", "micro_batch"},
		{"Budget", "budget"},
		{"parallel", ""}, // nothing near: no guess
		{"x", ""},
	} {
		if got := Closest(c.in, cands); got != c.want {
			t.Errorf("Closest(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestUnknown(t *testing.T) {
	keys := Keys(&sample{})
	hint := func(table string) string {
		if table == "train" {
			return "[train] belongs elsewhere"
		}
		return ""
	}
	for _, c := range []struct {
		name, text string
		want       []string
	}{
		{"key typo", "[branches]\nbudgt = 1\n", []string{"unknown key branches.budgt: did you mean branches.budget?", "(keys of [branches]: budget, batch_sizes, rate, names)"}},
		{"key far", "[run]\nparallel = 2\n", []string{"unknown key run.parallel (keys of [run]: threads)"}},
		{"table typo", "[branch]\nbudget = 1\nrate = 2\n", []string{"unknown table [branch]: did you mean [branches]? (tables of a test config: branches, run, opt, stage)"}},
		{"table hint", "[train]\nbudget = 1\n", []string{"unknown table [train]: [train] belongs elsewhere"}},
		{"nested table", "[branches.extra]\nx = 1\n", []string{"unknown key branches.extra"}},
		{"top-level key", "budget = 1\n", []string{"unknown key budget at the top level: every key belongs to a table"}},
		{"array of tables", "[[stage]]\nnam = \"a\"\n", []string{"unknown key stage.nam: did you mean stage.name?"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var s sample
			md, err := toml.Decode(c.text, &s)
			if err != nil {
				t.Fatal(err)
			}
			got := Unknown(md, keys, "test config", hint)
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("message %q lacks %q", got, w)
				}
			}
			if strings.Count(got, "unknown") != 1 {
				t.Errorf("message %q reports %d mistakes, want one", got, strings.Count(got, "unknown"))
			}
		})
	}
}

func TestMarkdownTable(t *testing.T) {
	got := MarkdownTable(Keys(&sample{}), "run")
	want := "| key | type | default | meaning |\n| --- | --- | --- | --- |\n| `threads` | integer | 0 (all cores) |  |\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
