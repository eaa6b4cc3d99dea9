package data

import (
	"fmt"
	"math"
	"sort"

	"cbs/internal/rng"
)

// Markov is a sparse first-order Markov chain over token ids 0..Vocab-1: a corpus with known
// structure, whose best achievable loss is known exactly, so a trained model can be judged
// against it.
//
// State i moves to i+1 (mod Vocab), to itself when i = 0, and to further distinct random states
// until it has Branching successors; the probabilities over those successors are Dirichlet(1)
// draws. The ring makes the chain irreducible and the self-loop aperiodic, so it has a unique
// stationary distribution pi that the sample starts from: every position of the stream, and so
// every window, is distributed as pi.
type Markov struct {
	Vocab      int
	Next       [][]int32   // successors of each state, ascending
	Prob       [][]float64 // their probabilities
	Stationary []float64   // pi, with pi P = pi
}

// NewMarkov draws the chain for seed; vocab in [2, 256] is not required here (any vocab >= 2
// works) but branching must be in [2, vocab].
func NewMarkov(seed uint64, vocab, branching int) (*Markov, error) {
	if vocab < 2 || branching < 2 || branching > vocab {
		return nil, fmt.Errorf("markov chain: vocab %d and branching %d: want 2 <= branching <= vocab", vocab, branching)
	}
	s := rng.Key(seed, "synthetic-chain", 0)
	m := &Markov{Vocab: vocab, Next: make([][]int32, vocab), Prob: make([][]float64, vocab)}
	for i := range vocab {
		succ := map[int]bool{(i + 1) % vocab: true}
		if i == 0 {
			succ[0] = true
		}
		for len(succ) < branching {
			succ[s.Intn(vocab)] = true
		}
		next := make([]int32, 0, branching)
		for j := range succ {
			next = append(next, int32(j))
		}
		sort.Slice(next, func(a, b int) bool { return next[a] < next[b] })
		prob := make([]float64, len(next))
		var sum float64
		for k := range prob {
			prob[k] = -math.Log(1 - s.Float64()) // Exp(1): normalised, a Dirichlet(1) draw
			sum += prob[k]
		}
		for k := range prob {
			prob[k] /= sum
		}
		m.Next[i], m.Prob[i] = next, prob
	}
	pi, err := m.stationary()
	if err != nil {
		return nil, err
	}
	m.Stationary = pi
	return m, nil
}

// stationary finds pi by power iteration from the uniform distribution.
func (m *Markov) stationary() ([]float64, error) {
	pi := make([]float64, m.Vocab)
	nxt := make([]float64, m.Vocab)
	for i := range pi {
		pi[i] = 1 / float64(m.Vocab)
	}
	for iter := 0; iter < 1_000_000; iter++ {
		clear(nxt)
		for i, p := range pi {
			for k, j := range m.Next[i] {
				nxt[j] += p * m.Prob[i][k]
			}
		}
		var diff float64
		for i := range pi {
			diff += math.Abs(nxt[i] - pi[i])
		}
		pi, nxt = nxt, pi
		if diff < 1e-14 {
			return pi, nil
		}
	}
	return nil, fmt.Errorf("markov chain: stationary distribution did not converge")
}

// EntropyRate is the chain's entropy rate in nats per token, h = -sum_i pi_i sum_j P_ij ln P_ij:
// the AR loss (mean cross-entropy of each next token given the past) of a perfect model.
func (m *Markov) EntropyRate() float64 {
	var h float64
	for i, p := range m.Stationary {
		for _, q := range m.Prob[i] {
			if q > 0 {
				h -= p * q * math.Log(q)
			}
		}
	}
	return h
}

// StationaryEntropy is H(pi) in nats: the loss of a perfect model on a token with no context.
func (m *Markov) StationaryEntropy() float64 {
	var h float64
	for _, p := range m.Stationary {
		if p > 0 {
			h -= p * math.Log(p)
		}
	}
	return h
}

// WindowEntropy is the entropy of a window of L tokens, H(pi) + (L-1) h, in nats. Divided by L
// it is the least negative log-likelihood per token any model can reach on whole windows, so
// it lower-bounds the MDM diffusion loss (an upper bound on that likelihood).
func (m *Markov) WindowEntropy(L int) float64 {
	if L <= 0 {
		return 0
	}
	return m.StationaryEntropy() + float64(L-1)*m.EntropyRate()
}

// LogProb is ln P(next | prev), -Inf for a transition the chain never makes.
func (m *Markov) LogProb(prev, next int32) float64 {
	for k, j := range m.Next[prev] {
		if j == next {
			return math.Log(m.Prob[prev][k])
		}
	}
	return math.Inf(-1)
}

// Sample draws n tokens of the chain for seed, the first from pi.
func (m *Markov) Sample(seed uint64, n int64) []int32 {
	s := rng.Key(seed, "synthetic-sample", 0)
	out := make([]int32, n)
	if n == 0 {
		return out
	}
	state := pick(m.Stationary, s.Float64())
	out[0] = int32(state)
	for t := int64(1); t < n; t++ {
		k := pick(m.Prob[state], s.Float64())
		state = int(m.Next[state][k])
		out[t] = int32(state)
	}
	return out
}

// pick returns the index where the cumulative sum of p first exceeds u; rounding that leaves u
// beyond the total picks the last entry with positive probability.
func pick(p []float64, u float64) int {
	last := 0
	for k, q := range p {
		if q > 0 {
			last = k
		}
		u -= q
		if u < 0 {
			return k
		}
	}
	return last
}

func loadSynthetic(cfg SourceConfig, tok Tokenizer) (*loaded, error) {
	if cfg.SyntheticVocab > tok.VocabSize() {
		return nil, fmt.Errorf("data.synthetic_vocab = %d exceeds the %s tokenizer's vocabulary of %d", cfg.SyntheticVocab, tok.Name(), tok.VocabSize())
	}
	m, err := NewMarkov(cfg.SyntheticSeed, cfg.SyntheticVocab, cfg.SyntheticBranching)
	if err != nil {
		return nil, fmt.Errorf("data.source = synthetic: %w", err)
	}
	tokens, err := tokenArrayOf(m.Sample(cfg.SyntheticSeed, cfg.SyntheticTokens), tok.VocabSize())
	if err != nil {
		return nil, err
	}
	return &loaded{tokens: tokens, markov: m}, nil
}
