package cpu

import "cbs/compute"

// Reference is the Backend made of the reference operations alone: single-threaded and slow,
// the ground truth for tests and the float64 gradient checks.
type Reference[T compute.Float] struct{}

var (
	_ compute.Backend[float32] = Reference[float32]{}
	_ compute.Backend[float64] = Reference[float64]{}
)

func (Reference[T]) Name() string { return "cpu reference" }

func (Reference[T]) Gemm(transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	RefGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
func (Reference[T]) Embedding(out, table []T, ids []int32, d int) { RefEmbedding(out, table, ids, d) }
func (Reference[T]) EmbeddingBackward(dtable, dout []T, ids []int32, d int) {
	RefEmbeddingBackward(dtable, dout, ids, d)
}
func (Reference[T]) RMSNorm(out, rstd, x, w []T, d int, eps float64) {
	RefRMSNorm(out, rstd, x, w, d, eps)
}
func (Reference[T]) RMSNormBackward(dx, dw, dout, x, w, rstd []T, d int, accumulate bool) {
	RefRMSNormBackward(dx, dw, dout, x, w, rstd, d, accumulate)
}
func (Reference[T]) RoPE(x, cos, sin []T, L, heads, hd int, inverse bool) {
	RefRoPE(x, cos, sin, L, heads, hd, inverse)
}
func (Reference[T]) Attention(o, probs, q, k, v []T, B, L, H, KV, hd int, causal bool) {
	RefAttention(o, probs, q, k, v, B, L, H, KV, hd, causal)
}
func (Reference[T]) AttentionBackward(dq, dk, dv, do, probs, q, k, v []T, B, L, H, KV, hd int, causal bool) {
	RefAttentionBackward(dq, dk, dv, do, probs, q, k, v, B, L, H, KV, hd, causal)
}
func (Reference[T]) SwiGLU(out, gate, up []T) { RefSwiGLU(out, gate, up) }
func (Reference[T]) SwiGLUBackward(dgate, dup, dout, gate, up []T) {
	RefSwiGLUBackward(dgate, dup, dout, gate, up)
}
func (Reference[T]) CrossEntropy(logits []T, targets []int32, weights []T, V int, grad bool) float64 {
	return RefCrossEntropy(logits, targets, weights, V, grad)
}
func (Reference[T]) Add(dst, a, b []T) {
	for i := range dst {
		dst[i] = a[i] + b[i]
	}
}
func (Reference[T]) Scale(x []T, s T) {
	for i := range x {
		x[i] *= s
	}
}
func (Reference[T]) SumSquares(x []T) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return s
}
func (Reference[T]) AdamW(w, g, m, v []T, p compute.AdamParams) { RefAdamW(w, g, m, v, p) }
