package sweep

import (
	"bytes"
	"strings"
	"testing"
)

// TestPlanWarnsOnRepeatedData: a budget larger than the training split is named, with its epoch
// count, in the plan and by DataWarning; one that fits is not.
func TestPlanWarnsOnRepeatedData(t *testing.T) {
	const config = `
[experiment]
name = "small-corpus"
seed = 1
[model]
hidden_size = 16
layers = 1
heads = 2
intermediate_size = 32
[data]
source = "synthetic"
seq_len = 16
synthetic_tokens = 16384
[branches]
budget = "BUDGET"
batch_sizes = ["256", "512"]
micro_batch = 4
[eval]
every = "1Ki"
tokens = "512"
`
	// 16384 tokens less 512 held out: 15872 training tokens.
	const warn = "warning: data: the training split holds 15.9K tokens; a 64Ki budget reads it 4.1 times (epochs). Add documents or lower the budget."
	for budget, want := range map[string]bool{"64Ki": true, "15872": false, "4Ki": false} {
		p, err := loadText(t, strings.Replace(config, "BUDGET", budget, 1), "")
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		p.Print(&b)
		if got := strings.Contains(b.String(), "warning: data:"); got != want {
			t.Errorf("budget %s: warns %v, want %v:\n%s", budget, got, want, b.String())
		}
		if want && !strings.Contains(b.String(), warn) {
			t.Errorf("budget %s: plan lacks %q:\n%s", budget, warn, b.String())
		}
		if w, err := p.DataWarning(); err != nil || (w != "") != want {
			t.Errorf("budget %s: DataWarning() = %q, %v", budget, w, err)
		}
	}
}
