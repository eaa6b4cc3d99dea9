//go:build amd64

#include "textflag.h"

// Rounding float32 to bfloat16 with AVX2 integer operations, bit for bit compute.BF16:
// b += 0x7fff + ((b >> 16) & 1), keep the high half; a NaN keeps its high half with the quiet
// bit set. (AVX512-BF16's VCVTNEPS2BF16 would flush subnormals, so it is not used.)

DATA ·kbfOne<>+0(SB)/4, $0x00000001
GLOBL ·kbfOne<>(SB), RODATA|NOPTR, $4
DATA ·kbfHalf<>+0(SB)/4, $0x00007fff
GLOBL ·kbfHalf<>(SB), RODATA|NOPTR, $4
DATA ·kbfAbs<>+0(SB)/4, $0x7fffffff
GLOBL ·kbfAbs<>(SB), RODATA|NOPTR, $4
DATA ·kbfInf<>+0(SB)/4, $0x7f800000
GLOBL ·kbfInf<>(SB), RODATA|NOPTR, $4
DATA ·kbfQuiet<>+0(SB)/4, $0x00400000
GLOBL ·kbfQuiet<>(SB), RODATA|NOPTR, $4

// ROUND8 rounds the 8 floats in X (a Y register) in place to their bf16 values in the low
// 16 bits of each lane. Clobbers Y4, Y5.
#define ROUND8(X) \
	VPSRLD $16, X, Y4 \
	VPAND Y10, Y4, Y4 \
	VPADDD Y11, Y4, Y4 \
	VPADDD X, Y4, Y4 \
	VPAND Y12, X, Y5 \
	VPCMPGTD Y13, Y5, Y5 \
	VPOR Y14, X, X \
	VPBLENDVB Y5, X, Y4, X \
	VPSRLD $16, X, X

// func toBF16AVX2(dst *uint16, src *float32, n int), n a multiple of 16
TEXT ·toBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ bfdone
	VPBROADCASTD ·kbfOne<>(SB), Y10
	VPBROADCASTD ·kbfHalf<>(SB), Y11
	VPBROADCASTD ·kbfAbs<>(SB), Y12
	VPBROADCASTD ·kbfInf<>(SB), Y13
	VPBROADCASTD ·kbfQuiet<>(SB), Y14
bfloop:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	ROUND8(Y0)
	ROUND8(Y1)
	// Per 128-bit lane: Y0's 4 words, then Y1's; VPERMQ puts Y0's 8 first.
	VPACKUSDW Y1, Y0, Y0
	VPERMQ $0xd8, Y0, Y0
	VMOVDQU Y0, (DI)
	ADDQ $64, SI
	ADDQ $32, DI
	DECQ CX
	JNZ bfloop
	VZEROUPPER
bfdone:
	RET

#define ROUNDCONSTS \
	VPBROADCASTD ·kbfOne<>(SB), Y10 \
	VPBROADCASTD ·kbfHalf<>(SB), Y11 \
	VPBROADCASTD ·kbfAbs<>(SB), Y12 \
	VPBROADCASTD ·kbfInf<>(SB), Y13 \
	VPBROADCASTD ·kbfQuiet<>(SB), Y14

// STORE16 rounds Y0 and Y1 and stores their 16 bf16 values at (DI).
#define STORE16 \
	ROUND8(Y0) \
	ROUND8(Y1) \
	VPACKUSDW Y1, Y0, Y0 \
	VPERMQ $0xd8, Y0, Y0 \
	VMOVDQU Y0, (DI)

// func mulRoundBF16AVX2(dst *uint16, src *float32, n int, s float32), n a multiple of 16
// dst = BF16(src s)
TEXT ·mulRoundBF16AVX2(SB), NOSPLIT, $0-28
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS s+24(FP), Y9
	SHRQ $4, CX
	JZ mrdone
	ROUNDCONSTS
mrloop:
	VMULPS (SI), Y9, Y0
	VMULPS 32(SI), Y9, Y1
	STORE16
	ADDQ $64, SI
	ADDQ $32, DI
	DECQ CX
	JNZ mrloop
	VZEROUPPER
mrdone:
	RET

// func softmaxBwdBF16AVX2(dst *uint16, dr, pr *float32, n int, dot, scale float32), n a
// multiple of 16: dst = BF16(pr (dr - dot) scale), in softmaxBwdAVX2's order of operations.
TEXT ·softmaxBwdBF16AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ dr+8(FP), SI
	MOVQ pr+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSS dot+32(FP), Y7
	VBROADCASTSS scale+36(FP), Y8
	SHRQ $4, CX
	JZ sbhdone
	ROUNDCONSTS
sbhloop:
	VMOVUPS (SI), Y0
	VSUBPS Y7, Y0, Y0
	VMULPS (DX), Y0, Y0
	VMULPS Y8, Y0, Y0
	VMOVUPS 32(SI), Y1
	VSUBPS Y7, Y1, Y1
	VMULPS 32(DX), Y1, Y1
	VMULPS Y8, Y1, Y1
	STORE16
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $32, DI
	DECQ CX
	JNZ sbhloop
	VZEROUPPER
sbhdone:
	RET

// func roundPairsAVX2(dst *uint16, x0, x1 *float32, n int), n a multiple of 8
// dst[2j] = BF16(x0[j]), dst[2j+1] = BF16(x1[j]): two rows rounded into the pair layout of
// the AMX products.
TEXT ·roundPairsAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x0+8(FP), SI
	MOVQ x1+16(FP), DX
	MOVQ n+24(FP), CX
	SHRQ $3, CX
	JZ rpdone
	ROUNDCONSTS
rploop:
	VMOVDQU (SI), Y0
	VMOVDQU (DX), Y1
	ROUND8(Y0)
	ROUND8(Y1)
	VPSLLD $16, Y1, Y1
	VPOR Y1, Y0, Y0
	VMOVDQU Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNZ rploop
	VZEROUPPER
rpdone:
	RET

// func pairRowsAVX2(dst, r0, r1 *uint16, n int), n a multiple of 8
// dst[2j] = r0[j], dst[2j+1] = r1[j].
TEXT ·pairRowsAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ r0+8(FP), SI
	MOVQ r1+16(FP), DX
	MOVQ n+24(FP), CX
	SHRQ $3, CX
	JZ prdone
prloop:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD (DX), Y1
	VPSLLD $16, Y1, Y1
	VPOR Y1, Y0, Y0
	VMOVDQU Y0, (DI)
	ADDQ $16, SI
	ADDQ $16, DX
	ADDQ $32, DI
	DECQ CX
	JNZ prloop
	VZEROUPPER
prdone:
	RET

// func transpose16AVX(dst *uint16, ldd int, src *uint16, lds int, rows, cols int)
// dst (cols x rows, row stride ldd) = src^T (rows x cols, row stride lds), in blocks of 8 x 8;
// rows and cols are multiples of 8.
TEXT ·transpose16AVX(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	SHLQ $1, R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R9
	SHLQ $1, R9
	MOVQ rows+32(FP), R10
	SHRQ $3, R10
	JZ t16done
t16rows:
	MOVQ cols+40(FP), R11
	SHRQ $3, R11
	MOVQ SI, R12
	MOVQ DI, R13
t16cols:
	MOVQ R12, BX
	VMOVDQU (BX), X0
	ADDQ R9, BX
	VMOVDQU (BX), X1
	ADDQ R9, BX
	VMOVDQU (BX), X2
	ADDQ R9, BX
	VMOVDQU (BX), X3
	ADDQ R9, BX
	VMOVDQU (BX), X4
	ADDQ R9, BX
	VMOVDQU (BX), X5
	ADDQ R9, BX
	VMOVDQU (BX), X6
	ADDQ R9, BX
	VMOVDQU (BX), X7
	VPUNPCKLWD X1, X0, X8
	VPUNPCKHWD X1, X0, X9
	VPUNPCKLWD X3, X2, X10
	VPUNPCKHWD X3, X2, X11
	VPUNPCKLWD X5, X4, X12
	VPUNPCKHWD X5, X4, X13
	VPUNPCKLWD X7, X6, X14
	VPUNPCKHWD X7, X6, X15
	VPUNPCKLDQ X10, X8, X0
	VPUNPCKHDQ X10, X8, X1
	VPUNPCKLDQ X11, X9, X2
	VPUNPCKHDQ X11, X9, X3
	VPUNPCKLDQ X14, X12, X4
	VPUNPCKHDQ X14, X12, X5
	VPUNPCKLDQ X15, X13, X6
	VPUNPCKHDQ X15, X13, X7
	VPUNPCKLQDQ X4, X0, X8
	VPUNPCKHQDQ X4, X0, X9
	VPUNPCKLQDQ X5, X1, X10
	VPUNPCKHQDQ X5, X1, X11
	VPUNPCKLQDQ X6, X2, X12
	VPUNPCKHQDQ X6, X2, X13
	VPUNPCKLQDQ X7, X3, X14
	VPUNPCKHQDQ X7, X3, X15
	MOVQ R13, BX
	VMOVDQU X8, (BX)
	ADDQ R8, BX
	VMOVDQU X9, (BX)
	ADDQ R8, BX
	VMOVDQU X10, (BX)
	ADDQ R8, BX
	VMOVDQU X11, (BX)
	ADDQ R8, BX
	VMOVDQU X12, (BX)
	ADDQ R8, BX
	VMOVDQU X13, (BX)
	ADDQ R8, BX
	VMOVDQU X14, (BX)
	ADDQ R8, BX
	VMOVDQU X15, (BX)
	ADDQ $16, R12
	MOVQ R8, AX
	SHLQ $3, AX
	ADDQ AX, R13
	DECQ R11
	JNZ t16cols
	MOVQ R9, AX
	SHLQ $3, AX
	ADDQ AX, SI
	ADDQ $16, DI
	DECQ R10
	JNZ t16rows
t16done:
	RET

// func transpose32AVX(dst *uint32, ldd int, src *uint32, lds int, rows, cols int)
// dst (cols x rows, row stride ldd) = src^T (rows x cols, row stride lds), in blocks of 4 x 4;
// rows and cols are multiples of 4.
TEXT ·transpose32AVX(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R9
	SHLQ $2, R9
	MOVQ rows+32(FP), R10
	SHRQ $2, R10
	JZ t32done
t32rows:
	MOVQ cols+40(FP), R11
	SHRQ $2, R11
	MOVQ SI, R12
	MOVQ DI, R13
t32cols:
	MOVQ R12, BX
	VMOVDQU (BX), X0
	ADDQ R9, BX
	VMOVDQU (BX), X1
	ADDQ R9, BX
	VMOVDQU (BX), X2
	ADDQ R9, BX
	VMOVDQU (BX), X3
	VPUNPCKLDQ X1, X0, X4
	VPUNPCKHDQ X1, X0, X5
	VPUNPCKLDQ X3, X2, X6
	VPUNPCKHDQ X3, X2, X7
	VPUNPCKLQDQ X6, X4, X0
	VPUNPCKHQDQ X6, X4, X1
	VPUNPCKLQDQ X7, X5, X2
	VPUNPCKHQDQ X7, X5, X3
	MOVQ R13, BX
	VMOVDQU X0, (BX)
	ADDQ R8, BX
	VMOVDQU X1, (BX)
	ADDQ R8, BX
	VMOVDQU X2, (BX)
	ADDQ R8, BX
	VMOVDQU X3, (BX)
	ADDQ $16, R12
	MOVQ R8, AX
	SHLQ $2, AX
	ADDQ AX, R13
	DECQ R11
	JNZ t32cols
	MOVQ R9, AX
	SHLQ $2, AX
	ADDQ AX, SI
	ADDQ $16, DI
	DECQ R10
	JNZ t32rows
t32done:
	RET
