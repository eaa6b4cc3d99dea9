package model

import (
	"math"

	"cbs/compute"
)

// Qwen3-MoE's sparse block, as Hugging Face's Qwen3MoeSparseMoeBlock computes it. For each token
// x (a row of the post-attention norm's output):
//
//	p = softmax(x Wr^T)                        Wr = mlp.gate.weight [E, d]
//	w_s, e_s = the k largest p and their experts, s = 0..k-1 (ties: the lower expert first)
//	w_s /= sum_s w_s                           when norm_topk_prob
//	out = sum_s w_s expert_{e_s}(x)            expert_j(x) = down_j(silu(gate_j x) * up_j x)
//
// The experts are run one matrix product per expert on the tokens routed to it: the (token,
// slot) assignments are sorted by expert (tokens ascending within an expert), the inputs gathered
// into contiguous rows, and the outputs added back expert by expert, so the result does not
// depend on the number of threads. The softmax and the renormalisation are computed in float64
// and rounded to the working type.
//
// Router load-balancing loss (Hugging Face's load_balancing_loss_func without padding), over the
// T = tokens x sparse layers rows of router probabilities of one forward pass:
//
//	aux = E sum_j f_j P_j,  f_j = (assignments to expert j) / T,  P_j = (sum of p_j) / T
//
// f has no gradient (top-k selection has none), so d aux / d p_j = E f_j / T at every row. The
// training loss adds router_aux_loss_coef x aux when output_router_logits is set. The loss is not
// a sum over tokens, so a step made of several micro-batches cannot have the whole batch's aux
// without a second pass; each micro-batch contributes its own aux weighted by its share of the
// step's sequences (Batch.Seqs), which equals the whole batch's aux for a single micro-batch.
//
// The backward pass differentiates through the mixing weights and the softmax; an expert no
// token reached gets a zero gradient (AdamW still decays it and its moments).

// moeActs is one sparse layer's routing and expert activations, kept for the backward pass.
type moeActs[T compute.Float] struct {
	probs []T     // [N, E] router softmax
	sel   []int32 // [N, k] chosen experts, largest probability first
	wts   []T     // [N, k] their mixing weights
	// order lists the assignments (token*k + slot) grouped by expert, tokens ascending; expert
	// j's are order[offs[j]:offs[j+1]], and row i of gate, up and act belongs to order[i].
	order          []int32
	offs           []int
	gate, up, act  []T // [N*k, moe_intermediate_size]
	count          []int
	routedSumProbs []float64 // [E] sum over tokens of p (for the aux loss)
}

// moeScratch is the workspace the sparse layers share.
type moeScratch[T compute.Float] struct {
	xg, yg           []T // [N*k, d] gathered rows: inputs, then outputs or gradients
	out              []T // [N, d] the block's output
	dz               []T // [N, E] gradient of the router logits
	dgate, dup, dact []T // [N*k, moe_intermediate_size]
	dw               []float64
	dp               []float64 // [E] one token's gradient of p
	next             []int     // [E] counting-sort cursors
}

// auxState is the router load-balancing loss of the last forward pass.
type auxState struct {
	loss float64
	// on: the training loss includes weight x loss; grad[j] is d(weight x loss)/d p_j, the same
	// at every row of every sparse layer.
	on     bool
	weight float64
	grad   []float64
	sums   []float64 // [E] scratch: the sum of p over every row
}

func newMoEActs[T compute.Float](c *Config, N int, mk func(int) []T) *moeActs[T] {
	E, k, mff := c.NumExperts, c.NumExpertsPerTok, c.MoEIntermediateSize
	return &moeActs[T]{
		probs: mk(N * E), sel: make([]int32, N*k), wts: mk(N * k),
		order: make([]int32, N*k), offs: make([]int, E+1),
		gate: mk(N * k * mff), up: mk(N * k * mff), act: mk(N * k * mff),
		count: make([]int, E), routedSumProbs: make([]float64, E),
	}
}

func newMoEScratch[T compute.Float](c *Config, N int, mk func(int) []T) moeScratch[T] {
	E, k, d, mff := c.NumExperts, c.NumExpertsPerTok, c.HiddenSize, c.MoEIntermediateSize
	return moeScratch[T]{
		xg: mk(N * k * d), yg: mk(N * k * d), out: mk(N * d), dz: mk(N * E),
		dgate: mk(N * k * mff), dup: mk(N * k * mff), dact: mk(N * k * mff),
		dw: make([]float64, N*k), dp: make([]float64, E), next: make([]int, E),
	}
}

// expert returns views of expert j's gate, up and down projections of a sparse layer.
func (m *Model[T]) expert(flat []T, w layerWeights[T], j int) (gate, up, down []T) {
	i := w.experts + 3*j
	return m.view(flat, i), m.view(flat, i+1), m.view(flat, i+2)
}

// route fills mo.probs, sel, wts, order and offs from the router logits in mo.probs.
func (m *Model[T]) route(mo *moeActs[T], N int) {
	c := &m.Cfg
	E, k := c.NumExperts, c.NumExpertsPerTok
	clear(mo.count)
	clear(mo.routedSumProbs)
	for t := 0; t < N; t++ {
		row := mo.probs[t*E : (t+1)*E]
		mx := math.Inf(-1)
		for _, z := range row {
			mx = math.Max(mx, float64(z))
		}
		var sum float64
		for _, z := range row {
			sum += math.Exp(float64(z) - mx)
		}
		for j, z := range row {
			row[j] = T(math.Exp(float64(z)-mx) / sum)
			mo.routedSumProbs[j] += float64(row[j])
		}
		sel, wts := mo.sel[t*k:(t+1)*k], mo.wts[t*k:(t+1)*k]
		var total float64
		for s := range sel {
			best := -1
			for j, p := range row {
				if (best < 0 || p > row[best]) && !chosen(sel[:s], j) {
					best = j
				}
			}
			sel[s], wts[s] = int32(best), row[best]
			total += float64(row[best])
			mo.count[best]++
		}
		if c.NormTopKProb {
			for s := range wts {
				wts[s] = T(float64(wts[s]) / total)
			}
		}
	}
	mo.offs[0] = 0
	for j := 0; j < E; j++ {
		mo.offs[j+1] = mo.offs[j] + mo.count[j]
	}
	next := m.ws.moe.next
	copy(next, mo.offs[:E])
	for a, e := range mo.sel {
		mo.order[next[e]] = int32(a)
		next[e]++
	}
}

func chosen(sel []int32, j int) bool {
	for _, e := range sel {
		if int(e) == j {
			return true
		}
	}
	return false
}

// moeForward runs layer l's sparse block on a.xn2 and sets next = a.h + its output.
func (m *Model[T]) moeForward(w layerWeights[T], a *layerActs[T], next []T, N int) {
	c, be, mo, s := &m.Cfg, m.be, a.moe, &m.ws.moe
	d, E, k, mff := c.HiddenSize, c.NumExperts, c.NumExpertsPerTok, c.MoEIntermediateSize
	P := m.Params.Data
	be.Gemm(false, true, N, E, d, 1, a.xn2, d, w.router, d, 0, mo.probs, E)
	m.route(mo, N)
	for i, as := range mo.order {
		t := int(as) / k
		copy(s.xg[i*d:(i+1)*d], a.xn2[t*d:(t+1)*d])
	}
	for j := 0; j < E; j++ {
		lo, hi := mo.offs[j], mo.offs[j+1]
		n := hi - lo
		if n == 0 {
			continue
		}
		wg, wu, wd := m.expert(P, w, j)
		xg, yg := s.xg[lo*d:hi*d], s.yg[lo*d:hi*d]
		gate, up, act := mo.gate[lo*mff:hi*mff], mo.up[lo*mff:hi*mff], mo.act[lo*mff:hi*mff]
		be.Gemm(false, true, n, mff, d, 1, xg, d, wg, d, 0, gate, mff)
		be.Gemm(false, true, n, mff, d, 1, xg, d, wu, d, 0, up, mff)
		be.SwiGLU(act, gate, up)
		be.Gemm(false, true, n, d, mff, 1, act, mff, wd, mff, 0, yg, d)
	}
	// Expert by expert, each token's output gains w times the expert's output.
	clear(s.out)
	for i, as := range mo.order {
		t, wt := int(as)/k, mo.wts[as]
		out, y := s.out[t*d:(t+1)*d], s.yg[i*d:(i+1)*d]
		for x := range out {
			out[x] += T(wt * y[x]) // the conversion keeps the product rounded (no fused multiply-add)
		}
	}
	be.Add(next, a.h, s.out)
}

// routerAux computes the load-balancing loss of the forward pass just run on b, and its
// gradient when the training loss includes it.
func (m *Model[T]) routerAux(b *Batch) {
	c := &m.Cfg
	E := c.NumExperts
	st := &m.aux
	if len(st.grad) != E {
		st.grad, st.sums = make([]float64, E), make([]float64, E)
	}
	// grad holds the assignment counts until it is scaled into the gradient.
	counts := st.grad
	clear(counts)
	clear(st.sums)
	rows := 0
	for l := range m.ws.acts {
		mo := m.ws.acts[l].moe
		if mo == nil {
			continue
		}
		rows += b.B * b.L
		for j := 0; j < E; j++ {
			counts[j] += float64(mo.count[j])
			st.sums[j] += mo.routedSumProbs[j]
		}
	}
	st.loss, st.on, st.weight = 0, false, 0
	if rows == 0 {
		return
	}
	T2 := float64(rows) * float64(rows)
	for j := 0; j < E; j++ {
		st.loss += counts[j] * st.sums[j]
	}
	st.loss *= float64(E) / T2
	st.on, st.weight = c.AuxLossOn(), 0
	if !st.on {
		return
	}
	share := 1.0
	if b.Seqs > 0 {
		share = float64(b.B) / float64(b.Seqs)
	}
	st.weight = c.RouterAuxLossCoef * share
	for j := range counts {
		counts[j] *= st.weight * float64(E) / T2
	}
}

// moeBackward sets ws.dxn to the gradient of the sparse block's input from ws.dx, the gradient
// of its output, and adds the block's weight gradients to g.
func (m *Model[T]) moeBackward(w, g layerWeights[T], a *layerActs[T], N int) {
	d, k := m.Cfg.HiddenSize, m.Cfg.NumExpertsPerTok
	mo, s, ws := a.moe, &m.ws.moe, &m.ws
	for i, as := range mo.order {
		t := int(as) / k
		copy(s.xg[i*d:(i+1)*d], a.xn2[t*d:(t+1)*d])
		copy(s.yg[i*d:(i+1)*d], ws.dx[t*d:(t+1)*d])
	}
	for j := 0; j < m.Cfg.NumExperts; j++ {
		m.expertBackward(w, g, mo, j)
	}
	dxn := ws.dxn[:N*d]
	clear(dxn)
	for i, as := range mo.order {
		t := int(as) / k
		dx, y := dxn[t*d:(t+1)*d], s.yg[i*d:(i+1)*d]
		for x := range dx {
			dx[x] += y[x]
		}
	}
	m.routerBackward(w, g, a, dxn, N)
}

// expertBackward runs expert j's backward pass over the tokens routed to it: its weight
// gradients, each assignment's mixing-weight gradient into dw, and the gradient of its input
// rows in place of the output gradient rows in yg.
func (m *Model[T]) expertBackward(w, g layerWeights[T], mo *moeActs[T], j int) {
	c, be, s := &m.Cfg, m.be, &m.ws.moe
	d, mff := c.HiddenSize, c.MoEIntermediateSize
	lo, hi := mo.offs[j], mo.offs[j+1]
	n := hi - lo
	if n == 0 {
		return
	}
	wg, wu, wd := m.expert(m.Params.Data, w, j)
	gg, gu, gd := m.expert(m.Grad, g, j)
	xg, yg := s.xg[lo*d:hi*d], s.yg[lo*d:hi*d]
	gate, up, act := mo.gate[lo*mff:hi*mff], mo.up[lo*mff:hi*mff], mo.act[lo*mff:hi*mff]
	dgate, dup, dact := s.dgate[lo*mff:hi*mff], s.dup[lo*mff:hi*mff], s.dact[lo*mff:hi*mff]
	// With y = act Wd^T and dy the output's gradient: dact = w dy Wd and dw = dy . y =
	// (dy Wd) . act, so one product gives both.
	be.Gemm(false, false, n, mff, d, 1, yg, d, wd, mff, 0, dact, mff)
	for r := 0; r < n; r++ {
		as := mo.order[lo+r]
		da, ac := dact[r*mff:(r+1)*mff], act[r*mff:(r+1)*mff]
		var dot float64
		for x := range da {
			dot += float64(da[x]) * float64(ac[x])
		}
		s.dw[as] = dot
		wt := mo.wts[as]
		for x := range da {
			da[x] *= wt
		}
		dy := yg[r*d : (r+1)*d]
		for x := range dy {
			dy[x] *= wt
		}
	}
	be.Gemm(true, false, d, mff, n, 1, yg, d, act, mff, 1, gd, mff)
	be.SwiGLUBackward(dgate, dup, dact, gate, up)
	be.Gemm(true, false, mff, d, n, 1, dgate, mff, xg, d, 1, gg, d)
	be.Gemm(true, false, mff, d, n, 1, dup, mff, xg, d, 1, gu, d)
	be.Gemm(false, false, n, d, mff, 1, dgate, mff, wg, d, 0, yg, d)
	be.Gemm(false, false, n, d, mff, 1, dup, mff, wu, d, 1, yg, d)
}

// routerBackward takes the mixing weights' gradient (through the renormalisation) and the aux
// loss's to the router logits, then to the router's weights and the layer's normed input dxn.
func (m *Model[T]) routerBackward(w, g layerWeights[T], a *layerActs[T], dxn []T, N int) {
	c, mo, s := &m.Cfg, a.moe, &m.ws.moe
	d, E, k := c.HiddenSize, c.NumExperts, c.NumExpertsPerTok
	for t := 0; t < N; t++ {
		p, dz := mo.probs[t*E:(t+1)*E], s.dz[t*E:(t+1)*E]
		sel, wts, dw := mo.sel[t*k:(t+1)*k], mo.wts[t*k:(t+1)*k], s.dw[t*k:(t+1)*k]
		dp := s.dp
		if m.aux.on {
			copy(dp, m.aux.grad)
		} else {
			clear(dp)
		}
		if c.NormTopKProb {
			// w_s = p_s / S with S = sum of the chosen p: dp_r = (dw_r - sum_s dw_s w_s) / S.
			var S, dot float64
			for s, e := range sel {
				S += float64(p[e])
				dot += dw[s] * float64(wts[s])
			}
			for s, e := range sel {
				dp[e] += (dw[s] - dot) / S
			}
		} else {
			for s, e := range sel {
				dp[e] += dw[s]
			}
		}
		var pdp float64
		for j := range p {
			pdp += float64(p[j]) * dp[j]
		}
		for j := range p {
			dz[j] = T(float64(p[j]) * (dp[j] - pdp))
		}
	}
	m.be.Gemm(true, false, E, d, N, 1, s.dz, E, a.xn2, d, 1, g.router, d)
	m.be.Gemm(false, false, N, d, E, 1, s.dz, E, w.router, d, 1, dxn, d)
}

// AuxLoss returns the router load-balancing loss of the last forward pass (Loss, LossAndGrad or
// ForwardLoss) over its micro-batch, and whether the model has one: false when no layer is
// sparse. It is reported whether or not the training loss includes it (Config.AuxLossOn).
func (m *Model[T]) AuxLoss() (float64, bool) {
	if m.Cfg.SparseLayers() == 0 {
		return 0, false
	}
	return m.aux.loss, true
}
