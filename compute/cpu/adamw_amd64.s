//go:build amd64

#include "textflag.h"

// AdamW over float32 tensors with float64 arithmetic, 4 elements at a time, bit for bit
// RefAdamW: the same operations in the same order (no fused multiply-adds), IEEE sqrt and
// division, and conversions to float32 that round to nearest as Go's do.

// func adamwAVX2(w, grad, m, v *float32, n int, k *adamConsts), n a multiple of 4
TEXT ·adamwAVX2(SB), NOSPLIT, $0-48
	MOVQ w+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), DX
	MOVQ v+24(FP), R8
	MOVQ n+32(FP), CX
	MOVQ k+40(FP), AX
	SHRQ $2, CX
	JZ adone
	VBROADCASTSD 0(AX), Y8   // decay = 1 - lr wd
	VBROADCASTSD 8(AX), Y9   // beta1
	VBROADCASTSD 16(AX), Y10 // 1 - beta1
	VBROADCASTSD 24(AX), Y11 // beta2
	VBROADCASTSD 32(AX), Y12 // 1 - beta2
	VBROADCASTSD 40(AX), Y13 // sqrt(bc2)
	VBROADCASTSD 48(AX), Y14 // eps
	VBROADCASTSD 56(AX), Y15 // lr / bc1
aloop:
	VCVTPS2PD (SI), Y0
	VCVTPS2PD (DI), Y1
	VMULPD Y8, Y1, Y1
	VCVTPS2PD (DX), Y2
	VMULPD Y9, Y2, Y2
	VMULPD Y10, Y0, Y3
	VADDPD Y3, Y2, Y2
	VCVTPS2PD (R8), Y3
	VMULPD Y11, Y3, Y3
	VMULPD Y12, Y0, Y4
	VMULPD Y0, Y4, Y4
	VADDPD Y4, Y3, Y3
	VCVTPD2PSY Y2, X2
	VCVTPD2PSY Y3, X3
	VMOVUPS X2, (DX)
	VMOVUPS X3, (R8)
	VCVTPS2PD X3, Y3
	VSQRTPD Y3, Y3
	VDIVPD Y13, Y3, Y3
	VADDPD Y14, Y3, Y3
	VCVTPS2PD X2, Y2
	VMULPD Y15, Y2, Y2
	VDIVPD Y3, Y2, Y2
	VSUBPD Y2, Y1, Y1
	VCVTPD2PSY Y1, X1
	VMOVUPS X1, (DI)
	ADDQ $16, SI
	ADDQ $16, DI
	ADDQ $16, DX
	ADDQ $16, R8
	DECQ CX
	JNZ aloop
	VZEROUPPER
adone:
	RET
