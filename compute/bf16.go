package compute

import (
	"fmt"

	"cbs/internal/safetensors"
)

// BF16 rounds f to bfloat16 (the high 16 bits of a float32: sign, 8 exponent bits, 7 mantissa
// bits) to nearest, ties to even, as PyTorch and oneDNN do. Infinities stay infinite, finite
// values past the largest bfloat16 round to infinity, subnormals are kept (not flushed), and a
// NaN stays a NaN of the same sign (made quiet, so a payload in the low bits alone survives).
// It is the rounding checkpoints are written with.
func BF16(f float32) uint16 { return safetensors.BF16FromFloat32(f) }

// FromBF16 widens a bfloat16 to float32 exactly.
func FromBF16(h uint16) float32 { return safetensors.BF16ToFloat32(h) }

// RoundBF16 rounds src into dst elementwise with BF16; dst must be at least as long as src.
func RoundBF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, f := range src {
		dst[i] = BF16(f)
	}
}

// Precision names the operands of a backend's matrix products; accumulation is fp32 either way.
type Precision int

const (
	// PrecisionFP32 multiplies the float32 operands as they are (the default).
	PrecisionFP32 Precision = iota
	// PrecisionBF16 rounds both operands of each product to bfloat16 (BF16) and accumulates in fp32:
	// what torch.autocast(bfloat16) does to a linear layer. Weights, optimizer moments,
	// norms, softmax, the loss and every gradient outside the products stay fp32.
	PrecisionBF16
)

func (p Precision) String() string {
	switch p {
	case PrecisionFP32:
		return "fp32"
	case PrecisionBF16:
		return "bf16"
	}
	return fmt.Sprintf("precision(%d)", int(p))
}

// ParsePrecision reads "fp32" (or "", the default) or "bf16".
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "", "fp32":
		return PrecisionFP32, nil
	case "bf16":
		return PrecisionBF16, nil
	}
	return PrecisionFP32, fmt.Errorf("precision %q: want fp32 or bf16", s)
}

// BF16Gemm is what a float32 backend offers when it can run matrix products on bfloat16
// operands. While its precision is PrecisionBF16, its Gemm rounds both operands with BF16 and
// calls GemmBF16; a model can save most of that rounding by keeping bf16 copies of operands it
// reuses (weights across the micro-batches of a step, activations between the forward and the
// backward pass) and calling GemmBF16 itself, with bit-identical results.
type BF16Gemm interface {
	// GemmPrecision is the precision Gemm runs at.
	GemmPrecision() Precision
	// ToBF16 sets dst[i] = BF16(src[i]) for every i < len(src).
	ToBF16(dst []uint16, src []float32)
	// GemmBF16 is Gemm with A and B given as bfloat16: C = alpha op(A) op(B) + beta C, the
	// products accumulated in fp32.
	GemmBF16(transA, transB bool, m, n, k int, alpha float32, a []uint16, lda int, b []uint16, ldb int, beta float32, c []float32, ldc int)
}

// BF16Outputs is what a BF16Gemm backend offers when it can write an op's result straight to
// bfloat16, for results that only bf16 matrix products read: the fp32 result is rounded while
// it is still in cache instead of after a trip through memory. Each gives exactly the bits of
// its fp32 op followed by ToBF16 (RMSNormBF16 also the same rstd).
type BF16Outputs interface {
	RMSNormBF16(out []uint16, rstd, x, w []float32, d int, eps float64)
	SwiGLUBF16(out []uint16, gate, up []float32)
	SwiGLUBackwardBF16(dgate, dup []uint16, dout, gate, up []float32)
}
