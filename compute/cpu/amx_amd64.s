//go:build amd64

#include "textflag.h"

// AMX instructions are written as bytes (the Go assembler has no mnemonics for them); each line
// names the instruction it encodes. Only AX, BX, CX, DX, SI and DI appear in tile addresses, so
// no encoding needs REX-style register bits.

// func amxGemmBF16(cfg *byte, a *uint16, lda int, b *uint16, ldb int, c *float32, ldc int, m, n, k, accum int)
//
// C (+)= A B on AMX tiles: A is m x k bf16, row stride lda bytes; B is k x n bf16 in pairs of
// rows (row r holds, for each column, the elements of rows 2r and 2r+1 side by side: the layout
// TDPBF16PS reads), row stride ldb bytes; C is m x n float32, row stride ldc bytes, overwritten
// (accum 0) or added to. m, n and k are multiples of 32. Each 32 x 32 block of C is summed over
// k in order, so the bits depend on the shape alone. The tile configuration is loaded and the
// tiles released within the call: no tile state is live when Go code runs.
TEXT ·amxGemmBF16(SB), NOSPLIT, $8-88
	MOVQ cfg+0(FP), AX
	BYTE $0xC4; BYTE $0xE2; BYTE $0x78; BYTE $0x49; BYTE $0x00	// ldtilecfg (AX)
	MOVQ a+8(FP), R8
	MOVQ c+40(FP), R10
	MOVQ m+56(FP), R11
	SHRQ $5, R11
iloop:
	MOVQ b+24(FP), R9
	MOVQ R10, DI
	MOVQ n+64(FP), R12
	SHRQ $5, R12
	MOVQ R12, jc-8(SP)
jloop:
	MOVQ ldc+48(FP), BX
	CMPQ accum+80(FP), $0
	JEQ zero
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7B; BYTE $0x4B; BYTE $0x04; BYTE $0x1F	// tileloadd tmm0, (DI)(BX*1)
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7B; BYTE $0x4B; BYTE $0x4C; BYTE $0x1F; BYTE $0x40	// tileloadd tmm1, (DI)(BX*1)+64
	MOVQ BX, SI
	SHLQ $4, SI
	ADDQ DI, SI
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7B; BYTE $0x4B; BYTE $0x14; BYTE $0x1E	// tileloadd tmm2, (SI)(BX*1)
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7B; BYTE $0x4B; BYTE $0x5C; BYTE $0x1E; BYTE $0x40	// tileloadd tmm3, (SI)(BX*1)+64
	JMP kinit
zero:
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7B; BYTE $0x49; BYTE $0xC0	// tilezero tmm0
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7B; BYTE $0x49; BYTE $0xC8	// tilezero tmm1
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7B; BYTE $0x49; BYTE $0xD0	// tilezero tmm2
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7B; BYTE $0x49; BYTE $0xD8	// tilezero tmm3
kinit:
	MOVQ lda+16(FP), CX
	MOVQ ldb+32(FP), AX
	MOVQ AX, R12
	SHLQ $4, R12
	MOVQ R8, SI
	MOVQ CX, BX
	SHLQ $4, BX
	ADDQ R8, BX
	MOVQ R9, DX
	MOVQ k+72(FP), R13
	SHRQ $5, R13
kloop:
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7B; BYTE $0x4B; BYTE $0x24; BYTE $0x0E	// tileloadd tmm4, (SI)(CX*1)
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7B; BYTE $0x4B; BYTE $0x2C; BYTE $0x0B	// tileloadd tmm5, (BX)(CX*1)
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7B; BYTE $0x4B; BYTE $0x34; BYTE $0x02	// tileloadd tmm6, (DX)(AX*1)
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7B; BYTE $0x4B; BYTE $0x7C; BYTE $0x02; BYTE $0x40	// tileloadd tmm7, (DX)(AX*1)+64
	BYTE $0xC4; BYTE $0xE2; BYTE $0x4A; BYTE $0x5C; BYTE $0xC4	// tdpbf16ps tmm0, tmm4, tmm6
	BYTE $0xC4; BYTE $0xE2; BYTE $0x42; BYTE $0x5C; BYTE $0xCC	// tdpbf16ps tmm1, tmm4, tmm7
	BYTE $0xC4; BYTE $0xE2; BYTE $0x4A; BYTE $0x5C; BYTE $0xD5	// tdpbf16ps tmm2, tmm5, tmm6
	BYTE $0xC4; BYTE $0xE2; BYTE $0x42; BYTE $0x5C; BYTE $0xDD	// tdpbf16ps tmm3, tmm5, tmm7
	ADDQ $64, SI
	ADDQ $64, BX
	ADDQ R12, DX
	DECQ R13
	JNZ kloop
	MOVQ ldc+48(FP), BX
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7A; BYTE $0x4B; BYTE $0x04; BYTE $0x1F	// tilestored (DI)(BX*1), tmm0
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7A; BYTE $0x4B; BYTE $0x4C; BYTE $0x1F; BYTE $0x40	// tilestored (DI)(BX*1)+64, tmm1
	MOVQ BX, SI
	SHLQ $4, SI
	ADDQ DI, SI
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7A; BYTE $0x4B; BYTE $0x14; BYTE $0x1E	// tilestored (SI)(BX*1), tmm2
	BYTE $0xC4; BYTE $0xE2; BYTE $0x7A; BYTE $0x4B; BYTE $0x5C; BYTE $0x1E; BYTE $0x40	// tilestored (SI)(BX*1)+64, tmm3
	ADDQ $128, DI
	ADDQ $128, R9
	DECQ jc-8(SP)
	JNZ jloop
	MOVQ lda+16(FP), CX
	SHLQ $5, CX
	ADDQ CX, R8
	MOVQ ldc+48(FP), BX
	SHLQ $5, BX
	ADDQ BX, R10
	DECQ R11
	JNZ iloop
	BYTE $0xC4; BYTE $0xE2; BYTE $0x78; BYTE $0x49; BYTE $0xC0	// tilerelease
	RET
