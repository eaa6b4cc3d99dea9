package sweep

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"cbs/branch"
	"cbs/data"
	"cbs/model"
)

// Row is one branch of the plan as `cbs config plan` prints it.
type Row struct {
	ID          string             `json:"id"`
	BatchTokens int64              `json:"batch_tokens"`
	BatchSeqs   int                `json:"batch_seqs"`
	MicroBatch  int                `json:"micro_batch"`
	Accum       int                `json:"accum"`
	Steps       int                `json:"steps"`
	LRScale     float64            `json:"lr_scale"`
	PeakLR      map[string]float64 `json:"peak_lr"`
	WarmupSteps float64            `json:"warmup_steps"`
	EvalMarks   int                `json:"eval_marks"`
	EvalEvery   int64              `json:"eval_every_tokens"`
	// EvalTokens is what the branch's evals read in all (the marks and a final eval that falls
	// on no mark), and EvalFraction that as a fraction of its training tokens.
	EvalTokens   int64    `json:"eval_tokens"`
	EvalFraction float64  `json:"eval_fraction"`
	Seed         uint64   `json:"seed"`
	Notes        []string `json:"notes,omitempty"`
}

// Rows tabulates the plan.
func (p *Plan) Rows() []Row {
	var rows []Row
	for _, s := range p.Branches {
		r := Row{
			ID: s.ID, BatchTokens: int64(s.BatchTokens), BatchSeqs: s.BatchSeqs(), MicroBatch: s.MicroBatch,
			Accum: s.Accum(), Steps: s.Steps(), LRScale: s.LRScale, PeakLR: map[string]float64{},
			EvalEvery: int64(s.EvalEvery), Seed: s.Seed,
		}
		oc := s.Optim.ModelOptim()
		for _, g := range model.Groups {
			r.PeakLR[g] = s.Optim.LR * s.LRScale * oc.Mult(g)
		}
		r.WarmupSteps = float64(s.Schedule.Warmup) / float64(s.BatchTokens)
		if s.Schedule.Warmup%s.BatchTokens != 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("warmup %v is %.3g steps: the LR reaches its peak during step %d",
				s.Schedule.Warmup, r.WarmupSteps, int(s.Schedule.Warmup/s.BatchTokens)+1))
		}
		evals := 1
		if s.EvalEvery > 0 {
			r.EvalMarks = int(s.Budget / s.EvalEvery)
			evals = r.EvalMarks
			if s.Budget%s.EvalEvery != 0 {
				evals++
			}
		} else {
			r.Notes = append(r.Notes, "no eval marks: only the final eval")
		}
		L := int64(s.SeqLen())
		r.EvalTokens = int64(evals) * ((s.Data.EvalTokens + L - 1) / L * L)
		r.EvalFraction = float64(r.EvalTokens) / float64(s.Budget)
		if s.Schedule.Shape == branch.ShapeWSD && s.Schedule.Decay%s.BatchTokens != 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("decay %v starts inside a step", s.Schedule.Decay))
		}
		rows = append(rows, r)
	}
	return rows
}

// lrJumpFactor is how far above the parent's last LR a branch's peak LR may go before the plan
// warns: further than that, the first steps after the fork can undo what the parent learned.
const lrJumpFactor = 2

// Warnings are the plan's doubts about its branches, one line each.
func (p *Plan) Warnings() []string {
	var w []string
	if p.ParentLR > 0 {
		for _, s := range p.Branches {
			if peak := s.Optim.LR * s.LRScale; peak > lrJumpFactor*p.ParentLR {
				w = append(w, fmt.Sprintf("branch %s: peak lr %.4g is %.3gx the parent's last lr %.4g (more than %dx): the fork jumps the LR",
					s.ID, peak, peak/p.ParentLR, p.ParentLR, lrJumpFactor))
			}
		}
	}
	return w
}

// DataWarning is the plan's warning, without the "warning: " prefix, that its branches will
// read their training data more than once; empty when one epoch holds the budget, or when an
// external trainer reads data of its own. It weighs the budget alone against the split: the
// tokens a parent read before the fork are left out, so a branch forked late in an epoch can
// reach sequences its parent read before it has read a split's worth itself.
func (p *Plan) DataWarning() (string, error) {
	if p.Config.Run.Executor == ExecutorExternal {
		return "", nil
	}
	var budget int64
	for _, s := range p.Branches {
		budget = max(budget, int64(s.Budget))
	}
	train, err := data.TrainTokens(p.Branches[0].Data)
	if err != nil {
		return "", fmt.Errorf("data: cannot measure the training split: %w", err)
	}
	return data.RepeatWarning(train, budget), nil
}

// Print writes the plan as a table, with the arithmetic every branch shares above it.
func (p *Plan) Print(w io.Writer) {
	p.printShared(w)
	rows := p.Rows()
	marks, frac := evalCost(rows)
	fmt.Fprintf(w, "eval cost: %s marks per branch; eval tokens %s of the training tokens\n\n", marks, frac)
	printRows(w, rows)
	warn := p.Warnings()
	if d, err := p.DataWarning(); err != nil {
		warn = append(warn, err.Error())
	} else if d != "" {
		warn = append(warn, d)
	}
	if len(warn) > 0 {
		fmt.Fprintln(w)
		for _, s := range warn {
			fmt.Fprintln(w, "warning: "+s)
		}
	}
}

// printShared writes what every branch shares: where the sweep starts from, its data, budget,
// schedule, LR rule and eval.
func (p *Plan) printShared(w io.Writer) {
	c := p.Config
	b0 := p.Branches[0]
	fmt.Fprintf(w, "sweep %s -> %s\n", c.Experiment.Name, p.Out)
	from := "init (seed " + fmt.Sprint(b0.InitSeed) + ")"
	if b0.Parent != "" {
		from = fmt.Sprintf("%s (optimizer state: %s)", c.Parent.Checkpoint, b0.OptimizerState)
	}
	if e := c.External; c.Run.Executor == ExecutorExternal {
		fmt.Fprintf(w, "trained by the external command (model, data and checkpoints are its own): %s\n", e.Command)
		fmt.Fprintf(w, "seq_len %d", b0.SeqLen())
		if b0.Parent != "" {
			fmt.Fprintf(w, "; parent %s", b0.Parent)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "from %s; objective %s; data %s/%s, seq_len %d\n", from, b0.Objective, b0.Data.Source, b0.Data.Tokenizer, b0.SeqLen())
	}
	fmt.Fprintf(w, "budget %v tokens per branch; schedule %s, warmup %v, min_lr_ratio %g; lr %g scaled by %s from B_ref = %v\n",
		c.Branches.Budget, b0.Schedule.Shape, b0.Schedule.Warmup, b0.Schedule.MinLRRatio, b0.Optim.LR, c.Branches.LRScaling, p.Reference)
	var last []string
	if p.ParentBatch > 0 {
		last = append(last, fmt.Sprintf("batch %v", p.ParentBatch))
	}
	if p.ParentLR > 0 {
		last = append(last, fmt.Sprintf("lr %.4g", p.ParentLR))
	}
	if len(last) > 0 {
		fmt.Fprintf(w, "parent's last step: %s\n", strings.Join(last, ", "))
	}
	replicates := "replicates"
	if c.Branches.Replicates == 1 {
		replicates = "replicate"
	}
	fmt.Fprintf(w, "eval every %v tokens on %v held-out tokens; %d branches (%d batch sizes x %d %s)\n",
		b0.EvalEvery, c.Eval.Tokens, len(p.Branches), len(c.Branches.BatchSizes), c.Branches.Replicates, replicates)
	if b0.EvalEWA > 0 {
		fmt.Fprintf(w, "eval measures the weights averaged with a time constant of %v tokens (an EMA, the same for every batch)\n", b0.EvalEWA)
	}
}

// evalCost is the range over the rows of the eval marks per branch and of the eval tokens as a
// fraction of the training tokens, as text.
func evalCost(rows []Row) (marks, frac string) {
	minMarks, maxMarks, minFrac, maxFrac := rows[0].EvalMarks, rows[0].EvalMarks, rows[0].EvalFraction, rows[0].EvalFraction
	for _, r := range rows[1:] {
		minMarks, maxMarks = min(minMarks, r.EvalMarks), max(maxMarks, r.EvalMarks)
		minFrac, maxFrac = min(minFrac, r.EvalFraction), max(maxFrac, r.EvalFraction)
	}
	marks, frac = fmt.Sprint(minMarks), fmt.Sprintf("%.3g%%", 100*minFrac)
	if maxMarks != minMarks {
		marks = fmt.Sprintf("%d to %d", minMarks, maxMarks)
	}
	if maxFrac != minFrac {
		frac = fmt.Sprintf("%.3g%% to %.3g%%", 100*minFrac, 100*maxFrac)
	}
	return marks, frac
}

// printRows writes the table of branches, then the notes on what their arithmetic rounded.
func printRows(w io.Writer, rows []Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"branch", "batch", "seqs", "micro", "accum", "steps", "lr scale"}
	for _, g := range model.Groups {
		head = append(head, "lr "+g)
	}
	head = append(head, "warmup steps", "eval marks", "")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	var notes []string
	for _, r := range rows {
		cells := []string{r.ID, branch.Tokens(r.BatchTokens).String(), fmt.Sprint(r.BatchSeqs), fmt.Sprint(r.MicroBatch),
			fmt.Sprint(r.Accum), fmt.Sprint(r.Steps), fmt.Sprintf("%.4g", r.LRScale)}
		for _, g := range model.Groups {
			cells = append(cells, fmt.Sprintf("%.4g", r.PeakLR[g]))
		}
		cells = append(cells, fmt.Sprintf("%.4g", r.WarmupSteps), fmt.Sprint(r.EvalMarks), "")
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
		for _, n := range r.Notes {
			notes = append(notes, r.ID+": "+n)
		}
	}
	tw.Flush()
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nrounding:")
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
}
