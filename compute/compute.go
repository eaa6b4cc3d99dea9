// Package compute defines the operations the model is written in. A backend implements them
// on its own buffers; compute/cpu is the reference (and a fast CPU path), compute/cuda the GPU.
//
// Layout conventions, shared by every backend: matrices are row-major; activations are
// token-major, [tokens, features], with tokens = batch x sequence length; a multi-head tensor
// is [tokens, heads x head_dim]. Weights are stored as PyTorch's nn.Linear stores them,
// [out_features, in_features], so a projection is Y = X W^T.
package compute

// Float is the element type of a backend: float32 for training, float64 for gradient checks.
type Float interface{ ~float32 | ~float64 }

// Backend is the set of coarse operations a training step is made of. Slices are the backend's
// buffers. Every method is deterministic: the same inputs give bit-identical outputs whatever
// the number of threads.
type Backend[T Float] interface {
	// Name says which implementation runs, e.g. "cpu (openblas Zen, 2 threads)".
	Name() string

	// Gemm computes C = alpha op(A) op(B) + beta C with op(X) = X or X^T; A is m x k after op,
	// B is k x n after op, and lda, ldb, ldc are row strides.
	Gemm(transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int)

	// Embedding gathers rows of table [V, d] into out [len(ids), d].
	Embedding(out, table []T, ids []int32, d int)
	// EmbeddingBackward adds row i of dout to row ids[i] of dtable.
	EmbeddingBackward(dtable, dout []T, ids []int32, d int)

	// RMSNorm normalises each row of x [rows, d]: out = x rsqrt(mean(x^2) + eps) w, and keeps
	// the reciprocal root per row in rstd for the backward pass.
	RMSNorm(out, rstd, x, w []T, d int, eps float64)
	// RMSNormBackward sets dx (or adds to it when accumulate) and adds to dw.
	RMSNormBackward(dx, dw, dout, x, w, rstd []T, d int, accumulate bool)

	// RoPE rotates x [B*L, heads*hd] in place by the rotate-half convention with tables
	// cos, sin [L, hd/2]; inverse applies the transpose rotation (the backward pass).
	RoPE(x, cos, sin []T, L, heads, hd int, inverse bool)

	// Attention computes o [B*L, H*hd] = softmax(q k^T / sqrt(hd) [+ causal mask]) v per batch
	// and head, with grouped-query attention (query head h reads kv head h / (H/KV)); probs
	// keeps what the backward pass needs: the attention weights [B, H, L, L], or less on a
	// backend that implements AttentionState (AttentionStateLen says how much).
	Attention(o, probs, q, k, v []T, B, L, H, KV, hd int, causal bool)
	// AttentionBackward sets dq, dk, dv from do and the probs Attention saved.
	AttentionBackward(dq, dk, dv, do, probs, q, k, v []T, B, L, H, KV, hd int, causal bool)

	// SwiGLU computes out = silu(gate) * up elementwise.
	SwiGLU(out, gate, up []T)
	// SwiGLUBackward sets dgate and dup from dout.
	SwiGLUBackward(dgate, dup, dout, gate, up []T)

	// CrossEntropy takes logits [rows, V] and returns sum_r weights[r] CE(logits[r], targets[r])
	// in float64. When grad is set it overwrites logits with the gradient of that sum
	// (weights[r] (softmax - onehot)). Rows with weight 0 contribute nothing (gradient 0).
	CrossEntropy(logits []T, targets []int32, weights []T, V int, grad bool) float64

	// Add sets dst = a + b elementwise (dst may alias a or b).
	Add(dst, a, b []T)
	// Scale multiplies x by s.
	Scale(x []T, s T)
	// SumSquares returns the sum of x^2 in float64, in a fixed order.
	SumSquares(x []T) float64
	// AdamW applies one decoupled-weight-decay Adam step to w from g, updating moments m, v:
	// w -= lr wd w; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; w -= lr/bc1 m / (sqrt(v/bc2) + eps).
	AdamW(w, g, m, v []T, p AdamParams)
}

// AdamParams are the scalars of one AdamW update of one parameter tensor.
type AdamParams struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	// Step is the 1-based count of updates including this one (for bias correction).
	Step int
}

// AttentionState is implemented by a backend whose Attention saves less than the attention
// weights for the backward pass: the CPU backend keeps one log-sum-exp per query row, B x H x L
// numbers instead of B x H x L x L, and recomputes the weights block by block in the backward
// pass, so memory grows with L, not L^2.
type AttentionState interface {
	// AttentionStateLen is the length the probs argument of Attention needs.
	AttentionStateLen(B, H, L int) int
}

// AttentionStateLen is the length of the probs buffer be's Attention needs: the weights
// [B, H, L, L] unless be implements AttentionState.
func AttentionStateLen(be any, B, H, L int) int {
	if s, ok := be.(AttentionState); ok {
		return s.AttentionStateLen(B, H, L)
	}
	return B * H * L * L
}
