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
