package cuda

import (
	"fmt"
	"unsafe"
)

type cublasStatus int32

// cuBLAS and CUDA library enums (cublas_api.h, library_types.h).
const (
	cublasOpN = 0
	cublasOpT = 1

	cudaR32F  = 0
	cudaR16BF = 14

	cublasCompute32F         = 68
	cublasCompute32FPedantic = 69
	cublasCompute32FFastTF32 = 77

	cublasGemmDefault = -1
)

// Precision selects the inputs of the matrix products; accumulation is fp32 in every case.
type Precision int

const (
	// BF16 rounds both inputs to bfloat16 (8-bit mantissa) and accumulates in fp32: tensor
	// cores at full rate. The default.
	BF16 Precision = iota
	// TF32 lets cuBLAS round fp32 inputs to tf32 (10-bit mantissa) inside the tensor cores.
	TF32
	// FP32 is plain single precision, no tensor-core rounding: for parity checks.
	FP32
)

func (p Precision) String() string {
	switch p {
	case BF16:
		return "bf16"
	case TF32:
		return "tf32"
	case FP32:
		return "fp32"
	}
	return fmt.Sprintf("precision(%d)", int(p))
}

// ParsePrecision reads "bf16", "tf32" or "fp32".
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "bf16", "":
		return BF16, nil
	case "tf32":
		return TF32, nil
	case "fp32":
		return FP32, nil
	}
	return 0, fmt.Errorf("gemm precision %q: want bf16, tf32 or fp32", s)
}

// cublas holds the entry points of libcublas.
type cublas struct {
	*loaded
	cublasCreate     func(h *uintptr) cublasStatus
	cublasDestroy    func(h uintptr) cublasStatus
	cublasSetStream  func(h, s uintptr) cublasStatus
	cublasGetVersion func(h uintptr, v *int32) cublasStatus
	cublasGemmEx     func(h uintptr, ta, tb int32, m, n, k int32, alpha unsafe.Pointer,
		a uintptr, atype int32, lda int32, b uintptr, btype int32, ldb int32, beta unsafe.Pointer,
		c uintptr, ctype int32, ldc int32, compute int32, algo int32) cublasStatus
	cublasGemmStridedBatchedEx func(h uintptr, ta, tb int32, m, n, k int32, alpha unsafe.Pointer,
		a uintptr, atype int32, lda int32, strideA int64, b uintptr, btype int32, ldb int32, strideB int64,
		beta unsafe.Pointer, c uintptr, ctype int32, ldc int32, strideC int64, batch int32,
		compute int32, algo int32) cublasStatus
	cublasGetStatusString func(s cublasStatus) string
}

func loadCUBLAS(env searchEnv) (*cublas, error) {
	c := &cublas{}
	syms := []symbol{
		{name: "cublasCreate_v2", fn: &c.cublasCreate},
		{name: "cublasDestroy_v2", fn: &c.cublasDestroy},
		{name: "cublasSetStream_v2", fn: &c.cublasSetStream},
		{name: "cublasGetVersion_v2", fn: &c.cublasGetVersion},
		{name: "cublasGemmEx", fn: &c.cublasGemmEx},
		{name: "cublasGemmStridedBatchedEx", fn: &c.cublasGemmStridedBatchedEx},
		{name: "cublasGetStatusString", fn: &c.cublasGetStatusString, optional: true},
	}
	l, err := openLibrary(libCUBLAS, env, syms)
	if err != nil {
		return nil, err
	}
	c.loaded = l
	return c, nil
}

func (c *cublas) check(s cublasStatus, call string) error {
	if s == 0 {
		return nil
	}
	msg := "see cublas_api.h"
	if c.cublasGetStatusString != nil {
		msg = c.cublasGetStatusString(s)
	}
	return fmt.Errorf("%s: cublas status %d: %s", call, int(s), msg)
}

// colMajorGemm is one cuBLAS call: C (m x n, column-major, ldc) = alpha opA(A) opB(B) + beta C,
// with A the operand at pointer First and B at Second.
type colMajorGemm struct {
	OpA, OpB      int32
	M, N, K       int
	First, Second string // "a" or "b": which of the row-major operands cuBLAS reads as its A, B
	LDA, LDB, LDC int
}

// toColMajor maps the row-major product C = op(A) op(B) (m x n, row strides lda, ldb, ldc) onto
// cuBLAS's column-major one. A row-major matrix with row stride ld is the column-major transpose
// with leading dimension ld, so computing C^T = op(B)^T op(A)^T in column-major writes C in row-major:
// swap the operands and the sizes m and n, and keep each operand's own transpose flag.
func toColMajor(transA, transB bool, m, n, k, lda, ldb, ldc int) colMajorGemm {
	op := func(t bool) int32 {
		if t {
			return cublasOpT
		}
		return cublasOpN
	}
	return colMajorGemm{
		OpA: op(transB), OpB: op(transA),
		M: n, N: m, K: k,
		First: "b", Second: "a",
		LDA: ldb, LDB: lda, LDC: ldc,
	}
}
