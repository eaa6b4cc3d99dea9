package model

import (
	"fmt"
	"math"
	"slices"

	"cbs/compute"
	"cbs/internal/rng"
)

// Parameter groups, for per-group LR multipliers and weight decay.
const (
	GroupAttention = "attention" // q, k, v, o projections and the q/k norms
	GroupMLP       = "mlp"       // gate, up, down projections (of the dense MLPs and of every expert)
	GroupEmbedding = "embedding" // the token embedding (and the head, when tied)
	GroupHead      = "head"      // the untied output head
	GroupNorms     = "norms"     // the input, post-attention and final RMSNorm weights
	GroupRouter    = "router"    // the routers of sparse MoE layers (mlp.gate.weight)
)

// Groups lists the groups of a dense model, in a fixed order.
var Groups = []string{GroupAttention, GroupMLP, GroupEmbedding, GroupHead, GroupNorms}

// MoEGroups lists the groups only a Qwen3-MoE model has.
var MoEGroups = []string{GroupRouter}

// KnownGroup reports whether name is a group of some model (Groups or MoEGroups).
func KnownGroup(name string) bool {
	return slices.Contains(Groups, name) || slices.Contains(MoEGroups, name)
}

// Tensor describes one parameter tensor inside the flat parameter vector.
type Tensor struct {
	Name   string // Hugging Face name, e.g. model.layers.0.self_attn.q_proj.weight
	Shape  []int  // [out, in] for projections, [n] for norm weights
	Offset int    // first element in the flat vector
	Size   int
	Group  string
}

// Is2D reports whether the tensor is a matrix (weight decay applies to matrices by default).
func (t Tensor) Is2D() bool { return len(t.Shape) == 2 }

// Layout lists the tensors of a config in Hugging Face order: embedding, then per layer, then
// the final norm and the head (absent when tied). A sparse layer has the router and then each
// expert's gate, up and down projections where a dense one has its MLP.
func Layout(c Config) []Tensor {
	d, ff, V, hd := c.HiddenSize, c.IntermediateSize, c.VocabSize, c.HeadDim
	var ts []Tensor
	add := func(name, group string, shape ...int) {
		n := 1
		for _, s := range shape {
			n *= s
		}
		off := 0
		if len(ts) > 0 {
			off = ts[len(ts)-1].Offset + ts[len(ts)-1].Size
		}
		ts = append(ts, Tensor{Name: name, Shape: shape, Offset: off, Size: n, Group: group})
	}
	add("model.embed_tokens.weight", GroupEmbedding, V, d)
	for i := 0; i < c.NumLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", GroupNorms, d)
		add(p+"self_attn.q_proj.weight", GroupAttention, c.NumHeads*hd, d)
		add(p+"self_attn.k_proj.weight", GroupAttention, c.NumKVHeads*hd, d)
		add(p+"self_attn.v_proj.weight", GroupAttention, c.NumKVHeads*hd, d)
		add(p+"self_attn.o_proj.weight", GroupAttention, d, c.NumHeads*hd)
		add(p+"self_attn.q_norm.weight", GroupAttention, hd)
		add(p+"self_attn.k_norm.weight", GroupAttention, hd)
		add(p+"post_attention_layernorm.weight", GroupNorms, d)
		if c.Sparse(i) {
			mff := c.MoEIntermediateSize
			add(p+"mlp.gate.weight", GroupRouter, c.NumExperts, d)
			for j := 0; j < c.NumExperts; j++ {
				e := fmt.Sprintf("%smlp.experts.%d.", p, j)
				add(e+"gate_proj.weight", GroupMLP, mff, d)
				add(e+"up_proj.weight", GroupMLP, mff, d)
				add(e+"down_proj.weight", GroupMLP, d, mff)
			}
			continue
		}
		add(p+"mlp.gate_proj.weight", GroupMLP, ff, d)
		add(p+"mlp.up_proj.weight", GroupMLP, ff, d)
		add(p+"mlp.down_proj.weight", GroupMLP, d, ff)
	}
	add("model.norm.weight", GroupNorms, d)
	if !c.TieWordEmbeddings {
		add("lm_head.weight", GroupHead, V, d)
	}
	return ts
}

// NumParams is the total number of parameters.
func NumParams(c Config) int {
	ts := Layout(c)
	return ts[len(ts)-1].Offset + ts[len(ts)-1].Size
}

// layerSlots is the number of tensors of a dense layer in Layout; a sparse layer has
// sparseSlots (the attention's, the norms and the router) and then 3 per expert.
const (
	layerSlots  = 11
	attnSlots   = 8 // input norm, q, k, v, o, q norm, k norm, post-attention norm
	sparseSlots = attnSlots + 1
)

// layerStart is the index in Layout of layer l's first tensor; layerStart(c, c.NumLayers) is the
// final norm's.
func layerStart(c *Config, l int) int {
	if !c.MoE() {
		return 1 + l*layerSlots
	}
	i := 1
	for k := 0; k < l; k++ {
		if c.Sparse(k) {
			i += sparseSlots + 3*c.NumExperts
		} else {
			i += layerSlots
		}
	}
	return i
}

// Params holds every parameter in one flat vector, so the optimizer, the gradient norm and the
// checkpoint treat the model as one array; the views in layers alias it.
type Params[T compute.Float] struct {
	Config  Config
	Tensors []Tensor
	Data    []T
	index   map[string]int
}

// NewParams allocates zeroed parameters for c.
func NewParams[T compute.Float](c Config) *Params[T] {
	ts := Layout(c)
	p := &Params[T]{Config: c, Tensors: ts, Data: make([]T, NumParams(c)), index: map[string]int{}}
	for i, t := range ts {
		p.index[t.Name] = i
	}
	return p
}

// View returns the slice of the flat vector holding tensor i of the layout.
func (p *Params[T]) View(i int) []T {
	t := p.Tensors[i]
	return p.Data[t.Offset : t.Offset+t.Size]
}

// Lookup returns the index of a named tensor.
func (p *Params[T]) Lookup(name string) (int, bool) {
	i, ok := p.index[name]
	return i, ok
}

// Init fills the parameters: N(0, std) for matrices, 1 for norm weights. Each tensor draws from
// its own stream keyed by its name's position, so the values do not depend on the element type.
func (p *Params[T]) Init(seed uint64, std float64) {
	for i, t := range p.Tensors {
		v := p.View(i)
		if !t.Is2D() {
			for j := range v {
				v[j] = 1
			}
			continue
		}
		s := rng.Key(seed, "init", uint64(i))
		for j := range v {
			v[j] = T(std * s.NormFloat64())
		}
	}
}

// Finite reports whether every parameter is finite.
func (p *Params[T]) Finite() bool {
	for _, v := range p.Data {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return false
		}
	}
	return true
}
