//go:build linux && amd64

#include "textflag.h"
#include "go_asm.h"

GLOBL ·dnnlGemmTrampolineABI0(SB), NOPTR|RODATA, $8
DATA ·dnnlGemmTrampolineABI0(SB)/8, $dnnlGemmTrampoline<>(SB)

// dnnlGemmTrampoline, for DI = &args (a *dnnlGemmArgs), calls args.ompSet(args.threads) when
// ompSet is not 0, then args.fn(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
// with the System V ABI, and stores the int result in args.status. runtime.cgocall runs it on
// the system stack with SP = 8 mod 16, as after a C call; the frame is laid out by hand
// (NOFRAME) so that SP is 16-byte aligned at both CALLs.
TEXT dnnlGemmTrampoline<>(SB), NOSPLIT|NOFRAME, $0
	PUSHQ BP
	MOVQ  SP, BP
	PUSHQ BX                  // callee-saved: holds &args across the calls
	SUBQ  $40, SP             // the five stack arguments; SP = 0 mod 16 from here
	MOVQ  DI, BX

	MOVQ  dnnlGemmArgs_ompSet(BX), R10
	TESTQ R10, R10
	JZ    gemm
	MOVQ  dnnlGemmArgs_threads(BX), DI
	CALL  R10

gemm:
	// Integer class arguments beyond the sixth go on the stack in order.
	MOVQ dnnlGemmArgs_lda(BX), AX
	MOVQ AX, 0(SP)
	MOVQ dnnlGemmArgs_b(BX), AX
	MOVQ AX, 8(SP)
	MOVQ dnnlGemmArgs_ldb(BX), AX
	MOVQ AX, 16(SP)
	MOVQ dnnlGemmArgs_c(BX), AX
	MOVQ AX, 24(SP)
	MOVQ dnnlGemmArgs_ldc(BX), AX
	MOVQ AX, 32(SP)

	MOVQ  dnnlGemmArgs_transA(BX), DI
	MOVQ  dnnlGemmArgs_transB(BX), SI
	MOVQ  dnnlGemmArgs_m(BX), DX
	MOVQ  dnnlGemmArgs_n(BX), CX
	MOVQ  dnnlGemmArgs_k(BX), R8
	MOVQ  dnnlGemmArgs_a(BX), R9
	MOVSS dnnlGemmArgs_alpha(BX), X0
	MOVSS dnnlGemmArgs_beta(BX), X1

	MOVQ dnnlGemmArgs_fn(BX), R10
	CALL R10

	MOVL AX, dnnlGemmArgs_status(BX)
	ADDQ $40, SP
	POPQ BX
	POPQ BP
	RET
