package sweep

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"cbs/branch"
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
	Seed        uint64             `json:"seed"`
	Notes       []string           `json:"notes,omitempty"`
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
		if s.EvalEvery > 0 {
			r.EvalMarks = int(s.Budget / s.EvalEvery)
		} else {
			r.Notes = append(r.Notes, "no eval marks: only the final eval")
		}
		if s.Schedule.Shape == branch.ShapeWSD && s.Schedule.Decay%s.BatchTokens != 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("decay %v starts inside a step", s.Schedule.Decay))
		}
		rows = append(rows, r)
	}
	return rows
}

// Print writes the plan as a table, with the arithmetic every branch shares above it.
func (p *Plan) Print(w io.Writer) {
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
	fmt.Fprintf(w, "eval every %v tokens on %v held-out tokens; %d branches (%d batch sizes x %d replicates)\n\n",
		b0.EvalEvery, c.Eval.Tokens, len(p.Branches), len(c.Branches.BatchSizes), c.Branches.Replicates)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"branch", "batch", "seqs", "micro", "accum", "steps", "lr scale"}
	for _, g := range model.Groups {
		head = append(head, "lr "+g)
	}
	head = append(head, "warmup steps", "eval marks", "")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	var notes []string
	for _, r := range p.Rows() {
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
