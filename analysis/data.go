package analysis

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"cbs/runfmt"
)

// Metric names for the loss the estimators compare.
const (
	MetricAuto     = "auto"           // eval_loss when every branch has it at a common mark, else train_loss_ema
	MetricEval     = "eval_loss"      // the frozen-mask eval loss, logged at eval marks
	MetricTrainEMA = "train_loss_ema" // training loss smoothed by an EMA with a time constant in tokens
)

// Replicate is one branch's loss curve.
type Replicate struct {
	ID string
	// Key names the seed replicate: branches of different batch sizes with the same key read the
	// same tokens in the same order with the same masks, so their noise is shared and the
	// bootstrap resamples them together.
	Key    string
	Tokens []float64   // marks, strictly increasing
	Loss   []float64   // loss at each mark, > 0
	Shards [][]float64 // per mark, the eval loss of each shard; nil when none were logged
}

// Group holds the replicates that share one batch size.
type Group struct {
	Batch      float64 // global batch in tokens
	Replicates []Replicate
}

// StepsPoint is one measured steps-to-target value from a batch_size,steps table.
type StepsPoint struct {
	Batch float64
	Steps float64
}

// Data is what the estimators read: loss curves grouped by batch size, or steps-to-target points.
type Data struct {
	Source string  // the run directory or table file
	Metric string  // MetricEval or MetricTrainEMA; "" for a steps table
	Groups []Group // ascending batch; empty for a steps table
	Steps  []StepsPoint
	Notes  []string
}

// FromRun turns a loaded run into loss curves for the chosen metric (MetricAuto, MetricEval or
// MetricTrainEMA). emaTokens is the EMA time constant for the training loss; 0 picks 1/20 of the
// shortest branch.
func FromRun(run *Run, metric string, emaTokens float64) (*Data, error) {
	d := &Data{Source: run.Dir}
	if len(run.Branches) == 0 {
		return nil, fmt.Errorf("%s: no branch has metrics yet; unfinished: %s", run.Dir, strings.Join(UnfinishedLines(run.Unfinished), "; "))
	}
	for _, e := range run.Excluded {
		d.Notes = append(d.Notes, "excluded "+e)
	}
	for _, u := range run.Unfinished {
		if u.Analysed {
			d.Notes = append(d.Notes, "unfinished "+u.Line()+": analysed as far as it got")
		} else {
			d.Notes = append(d.Notes, "unfinished "+u.Line()+": left out, no metrics yet")
		}
	}
	d.Notes = append(d.Notes, run.Rewinds...)
	switch metric {
	case MetricAuto, MetricEval, MetricTrainEMA:
	default:
		return nil, fmt.Errorf("metric = %q: allowed %s, %s, %s", metric, MetricAuto, MetricEval, MetricTrainEMA)
	}
	if metric == MetricAuto || metric == MetricEval {
		groups, err := curves(run, evalCurve)
		if err == nil {
			if _, err = commonMark(groups); err == nil {
				d.Metric, d.Groups = MetricEval, groups
				return d, d.check()
			}
		}
		if metric == MetricEval {
			return nil, fmt.Errorf("eval_loss: %w", err)
		}
		d.Notes = append(d.Notes, fmt.Sprintf("eval_loss unusable (%v); using the EMA-smoothed training loss", err))
	}
	if emaTokens <= 0 {
		emaTokens = run.shortestBranch() / 20
	}
	groups, err := curves(run, func(b *Branch) (Replicate, error) { return trainEMACurve(b, emaTokens) })
	if err != nil {
		return nil, fmt.Errorf("train_loss: %w", err)
	}
	d.Metric, d.Groups = MetricTrainEMA, groups
	d.Notes = append(d.Notes, fmt.Sprintf("train_loss smoothed by an EMA with a time constant of %.4g tokens", emaTokens))
	return d, d.check()
}

func curves(run *Run, curve func(*Branch) (Replicate, error)) ([]Group, error) {
	var groups []Group
	for _, b := range run.Branches {
		rep, err := curve(b)
		if err != nil {
			return nil, fmt.Errorf("branch %s: %w", b.Spec.ID, err)
		}
		batch := float64(b.Spec.BatchTokens)
		if n := len(groups); n > 0 && groups[n-1].Batch == batch {
			groups[n-1].Replicates = append(groups[n-1].Replicates, rep)
		} else {
			groups = append(groups, Group{Batch: batch, Replicates: []Replicate{rep}})
		}
	}
	return groups, nil
}

func evalCurve(b *Branch) (Replicate, error) {
	rep := Replicate{ID: b.Spec.ID, Key: strconv.Itoa(b.Spec.Replicate)}
	shards := true
	for _, r := range b.Records {
		if r.EvalLoss == nil {
			continue
		}
		t := float64(r.Tokens)
		if n := len(rep.Tokens); n > 0 && rep.Tokens[n-1] == t {
			// A repeated mark (an eval re-run after a resume): the later line wins.
			rep.Loss[n-1], rep.Shards[n-1] = *r.EvalLoss, r.EvalShards
			continue
		}
		rep.Tokens = append(rep.Tokens, t)
		rep.Loss = append(rep.Loss, *r.EvalLoss)
		rep.Shards = append(rep.Shards, r.EvalShards)
		shards = shards && len(r.EvalShards) > 0
	}
	if len(rep.Tokens) == 0 {
		return rep, fmt.Errorf("no eval_loss in metrics.jsonl")
	}
	if !shards {
		rep.Shards = nil
	}
	return rep, nil
}

// trainEMACurve smooths train_loss with an EMA whose decay per step is exp(-batch/tau): the same
// time constant in tokens for every branch, so the smoothing lag does not depend on batch size.
// The bias of the zero start is divided out.
func trainEMACurve(b *Branch, tau float64) (Replicate, error) {
	rep := Replicate{ID: b.Spec.ID, Key: strconv.Itoa(b.Spec.Replicate)}
	decay := math.Exp(-float64(b.Spec.BatchTokens) / tau)
	var m, norm float64
	for _, r := range b.Records {
		if r.TrainLoss == nil {
			continue
		}
		m = decay*m + (1-decay)*(*r.TrainLoss)
		norm = decay*norm + (1 - decay)
		t := float64(r.Tokens)
		if n := len(rep.Tokens); n > 0 && rep.Tokens[n-1] == t {
			rep.Loss[n-1] = m / norm
			continue
		}
		rep.Tokens = append(rep.Tokens, t)
		rep.Loss = append(rep.Loss, m/norm)
	}
	if len(rep.Tokens) == 0 {
		return rep, fmt.Errorf("no train_loss in metrics.jsonl")
	}
	return rep, nil
}

// check rejects data the estimators cannot use, naming where the bad value is.
func (d *Data) check() error {
	if len(d.Groups) == 0 && len(d.Steps) == 0 {
		return fmt.Errorf("%s: no data", d.Source)
	}
	nshards := -1
	for _, g := range d.Groups {
		for _, r := range g.Replicates {
			for i, l := range r.Loss {
				if !(l > 0) || math.IsInf(l, 0) {
					return fmt.Errorf("branch %s: %s = %v at tokens %.0f: losses must be finite and > 0", r.ID, d.Metric, l, r.Tokens[i])
				}
			}
			for _, s := range r.Shards {
				if nshards < 0 {
					nshards = len(s)
				}
				if len(s) != nshards {
					nshards = 0
				}
			}
			if r.Shards == nil {
				nshards = 0
			}
		}
	}
	if nshards == 0 {
		for gi := range d.Groups {
			for ri := range d.Groups[gi].Replicates {
				d.Groups[gi].Replicates[ri].Shards = nil
			}
		}
	}
	return nil
}

// NumShards is the number of eval shards every mark of every branch carries, or 0.
func (d *Data) NumShards() int {
	// Every branch evaluates the same shards, so the first replicate speaks for all.
	for _, g := range d.Groups {
		if len(g.Replicates) == 0 {
			continue
		}
		if r := g.Replicates[0]; r.Shards != nil {
			return len(r.Shards[0])
		}
		return 0
	}
	return 0
}

// Batches lists the batch sizes in ascending order.
func (d *Data) Batches() []float64 {
	var out []float64
	for _, g := range d.Groups {
		out = append(out, g.Batch)
	}
	if len(d.Groups) == 0 {
		seen := map[float64]bool{}
		for _, p := range d.Steps {
			if !seen[p.Batch] {
				seen[p.Batch] = true
				out = append(out, p.Batch)
			}
		}
		sort.Float64s(out)
	}
	return out
}

// Mean is the group's loss curve averaged over the chosen replicates (indices, repeats allowed)
// and, when shards is non-nil and the run logged shards, over the chosen eval shards. Only marks
// every chosen replicate has are kept.
func (g *Group) Mean(reps, shards []int) (tokens, loss []float64) {
	if reps == nil {
		reps = make([]int, len(g.Replicates))
		for i := range reps {
			reps[i] = i
		}
	}
	count := map[float64]int{}
	for _, ri := range reps {
		for _, t := range g.Replicates[ri].Tokens {
			count[t]++
		}
	}
	for t, c := range count {
		if c == len(reps) {
			tokens = append(tokens, t)
		}
	}
	sort.Float64s(tokens)
	loss = make([]float64, len(tokens))
	for _, ri := range reps {
		r := &g.Replicates[ri]
		j := 0
		for i, t := range r.Tokens {
			for j < len(tokens) && tokens[j] < t {
				j++
			}
			if j == len(tokens) {
				break
			}
			if tokens[j] != t {
				continue
			}
			l := r.Loss[i]
			if shards != nil && r.Shards != nil {
				l = 0
				for _, s := range shards {
					l += r.Shards[i][s]
				}
				l /= float64(len(shards))
			}
			loss[j] += l / float64(len(reps))
		}
	}
	return tokens, loss
}

// commonMark is the largest token mark at which every group's mean curve has a value: the point
// of equal tokens where final losses are compared.
func commonMark(groups []Group) (float64, error) {
	if len(groups) == 0 {
		return 0, fmt.Errorf("no branches")
	}
	count := map[float64]int{}
	for i := range groups {
		t, _ := groups[i].Mean(nil, nil)
		if len(t) == 0 {
			return 0, fmt.Errorf("replicates of batch %s share no token mark", runfmt.FormatTokens(groups[i].Batch))
		}
		for _, x := range t {
			count[x]++
		}
	}
	best := -1.0
	for t, c := range count {
		if c == len(groups) && t > best {
			best = t
		}
	}
	if best <= 0 {
		return 0, fmt.Errorf("the branches share no token mark > 0 (eval marks must be multiples of every batch size)")
	}
	return best, nil
}

// lossAt returns the loss at an exact mark.
func lossAt(tokens, loss []float64, mark float64) (float64, bool) {
	i := sort.SearchFloat64s(tokens, mark)
	if i < len(tokens) && tokens[i] == mark {
		return loss[i], true
	}
	return 0, false
}

// pairedReplicates reports whether every batch size has the same seed replicates, in the same
// order: then replicate r of one batch and replicate r of another share their data and masks,
// and a resample draws one set of replicate indices for the whole ladder, as it draws one set of
// eval shards, so noise that every batch size shares cancels in their comparison.
func (d *Data) pairedReplicates() bool {
	if len(d.Groups) == 0 {
		return false
	}
	keys := func(g Group) []string {
		var k []string
		for _, r := range g.Replicates {
			if r.Key == "" {
				return nil
			}
			k = append(k, r.Key)
		}
		return k
	}
	first := keys(d.Groups[0])
	if first == nil {
		return false
	}
	for _, g := range d.Groups[1:] {
		if !slices.Equal(keys(g), first) {
			return false
		}
	}
	return true
}
