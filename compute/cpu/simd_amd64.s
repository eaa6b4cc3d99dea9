//go:build amd64

#include "textflag.h"

// AVX2 + FMA kernels for the elementwise parts of a training step. Each processes n elements,
// n a multiple of 8; the Go wrappers in simd.go do the tail and pick these only when the CPU
// has AVX2 and FMA. Lane sums are reduced in a fixed order, so results depend on n alone.

// Constants, each repeated over the 8 lanes so instructions can take them as memory operands.

DATA ·klog2e<>+0(SB)/4, $0x3fb8aa3b
DATA ·klog2e<>+4(SB)/4, $0x3fb8aa3b
DATA ·klog2e<>+8(SB)/4, $0x3fb8aa3b
DATA ·klog2e<>+12(SB)/4, $0x3fb8aa3b
DATA ·klog2e<>+16(SB)/4, $0x3fb8aa3b
DATA ·klog2e<>+20(SB)/4, $0x3fb8aa3b
DATA ·klog2e<>+24(SB)/4, $0x3fb8aa3b
DATA ·klog2e<>+28(SB)/4, $0x3fb8aa3b
GLOBL ·klog2e<>(SB), RODATA|NOPTR, $32

DATA ·kc1<>+0(SB)/4, $0x3f318000
DATA ·kc1<>+4(SB)/4, $0x3f318000
DATA ·kc1<>+8(SB)/4, $0x3f318000
DATA ·kc1<>+12(SB)/4, $0x3f318000
DATA ·kc1<>+16(SB)/4, $0x3f318000
DATA ·kc1<>+20(SB)/4, $0x3f318000
DATA ·kc1<>+24(SB)/4, $0x3f318000
DATA ·kc1<>+28(SB)/4, $0x3f318000
GLOBL ·kc1<>(SB), RODATA|NOPTR, $32

DATA ·kc2<>+0(SB)/4, $0xb95e8083
DATA ·kc2<>+4(SB)/4, $0xb95e8083
DATA ·kc2<>+8(SB)/4, $0xb95e8083
DATA ·kc2<>+12(SB)/4, $0xb95e8083
DATA ·kc2<>+16(SB)/4, $0xb95e8083
DATA ·kc2<>+20(SB)/4, $0xb95e8083
DATA ·kc2<>+24(SB)/4, $0xb95e8083
DATA ·kc2<>+28(SB)/4, $0xb95e8083
GLOBL ·kc2<>(SB), RODATA|NOPTR, $32

DATA ·kp0<>+0(SB)/4, $0x39506967
DATA ·kp0<>+4(SB)/4, $0x39506967
DATA ·kp0<>+8(SB)/4, $0x39506967
DATA ·kp0<>+12(SB)/4, $0x39506967
DATA ·kp0<>+16(SB)/4, $0x39506967
DATA ·kp0<>+20(SB)/4, $0x39506967
DATA ·kp0<>+24(SB)/4, $0x39506967
DATA ·kp0<>+28(SB)/4, $0x39506967
GLOBL ·kp0<>(SB), RODATA|NOPTR, $32

DATA ·kp1<>+0(SB)/4, $0x3ab743ce
DATA ·kp1<>+4(SB)/4, $0x3ab743ce
DATA ·kp1<>+8(SB)/4, $0x3ab743ce
DATA ·kp1<>+12(SB)/4, $0x3ab743ce
DATA ·kp1<>+16(SB)/4, $0x3ab743ce
DATA ·kp1<>+20(SB)/4, $0x3ab743ce
DATA ·kp1<>+24(SB)/4, $0x3ab743ce
DATA ·kp1<>+28(SB)/4, $0x3ab743ce
GLOBL ·kp1<>(SB), RODATA|NOPTR, $32

DATA ·kp2<>+0(SB)/4, $0x3c088908
DATA ·kp2<>+4(SB)/4, $0x3c088908
DATA ·kp2<>+8(SB)/4, $0x3c088908
DATA ·kp2<>+12(SB)/4, $0x3c088908
DATA ·kp2<>+16(SB)/4, $0x3c088908
DATA ·kp2<>+20(SB)/4, $0x3c088908
DATA ·kp2<>+24(SB)/4, $0x3c088908
DATA ·kp2<>+28(SB)/4, $0x3c088908
GLOBL ·kp2<>(SB), RODATA|NOPTR, $32

DATA ·kp3<>+0(SB)/4, $0x3d2aa9c1
DATA ·kp3<>+4(SB)/4, $0x3d2aa9c1
DATA ·kp3<>+8(SB)/4, $0x3d2aa9c1
DATA ·kp3<>+12(SB)/4, $0x3d2aa9c1
DATA ·kp3<>+16(SB)/4, $0x3d2aa9c1
DATA ·kp3<>+20(SB)/4, $0x3d2aa9c1
DATA ·kp3<>+24(SB)/4, $0x3d2aa9c1
DATA ·kp3<>+28(SB)/4, $0x3d2aa9c1
GLOBL ·kp3<>(SB), RODATA|NOPTR, $32

DATA ·kp4<>+0(SB)/4, $0x3e2aaaaa
DATA ·kp4<>+4(SB)/4, $0x3e2aaaaa
DATA ·kp4<>+8(SB)/4, $0x3e2aaaaa
DATA ·kp4<>+12(SB)/4, $0x3e2aaaaa
DATA ·kp4<>+16(SB)/4, $0x3e2aaaaa
DATA ·kp4<>+20(SB)/4, $0x3e2aaaaa
DATA ·kp4<>+24(SB)/4, $0x3e2aaaaa
DATA ·kp4<>+28(SB)/4, $0x3e2aaaaa
GLOBL ·kp4<>(SB), RODATA|NOPTR, $32

DATA ·kp5<>+0(SB)/4, $0x3f000000
DATA ·kp5<>+4(SB)/4, $0x3f000000
DATA ·kp5<>+8(SB)/4, $0x3f000000
DATA ·kp5<>+12(SB)/4, $0x3f000000
DATA ·kp5<>+16(SB)/4, $0x3f000000
DATA ·kp5<>+20(SB)/4, $0x3f000000
DATA ·kp5<>+24(SB)/4, $0x3f000000
DATA ·kp5<>+28(SB)/4, $0x3f000000
GLOBL ·kp5<>(SB), RODATA|NOPTR, $32

DATA ·kone<>+0(SB)/4, $0x3f800000
DATA ·kone<>+4(SB)/4, $0x3f800000
DATA ·kone<>+8(SB)/4, $0x3f800000
DATA ·kone<>+12(SB)/4, $0x3f800000
DATA ·kone<>+16(SB)/4, $0x3f800000
DATA ·kone<>+20(SB)/4, $0x3f800000
DATA ·kone<>+24(SB)/4, $0x3f800000
DATA ·kone<>+28(SB)/4, $0x3f800000
GLOBL ·kone<>(SB), RODATA|NOPTR, $32

DATA ·klo<>+0(SB)/4, $0xc2aeac4f
DATA ·klo<>+4(SB)/4, $0xc2aeac4f
DATA ·klo<>+8(SB)/4, $0xc2aeac4f
DATA ·klo<>+12(SB)/4, $0xc2aeac4f
DATA ·klo<>+16(SB)/4, $0xc2aeac4f
DATA ·klo<>+20(SB)/4, $0xc2aeac4f
DATA ·klo<>+24(SB)/4, $0xc2aeac4f
DATA ·klo<>+28(SB)/4, $0xc2aeac4f
GLOBL ·klo<>(SB), RODATA|NOPTR, $32

DATA ·khi<>+0(SB)/4, $0x42b0bd71
DATA ·khi<>+4(SB)/4, $0x42b0bd71
DATA ·khi<>+8(SB)/4, $0x42b0bd71
DATA ·khi<>+12(SB)/4, $0x42b0bd71
DATA ·khi<>+16(SB)/4, $0x42b0bd71
DATA ·khi<>+20(SB)/4, $0x42b0bd71
DATA ·khi<>+24(SB)/4, $0x42b0bd71
DATA ·khi<>+28(SB)/4, $0x42b0bd71
GLOBL ·khi<>(SB), RODATA|NOPTR, $32

DATA ·kinf<>+0(SB)/4, $0x7f800000
DATA ·kinf<>+4(SB)/4, $0x7f800000
DATA ·kinf<>+8(SB)/4, $0x7f800000
DATA ·kinf<>+12(SB)/4, $0x7f800000
DATA ·kinf<>+16(SB)/4, $0x7f800000
DATA ·kinf<>+20(SB)/4, $0x7f800000
DATA ·kinf<>+24(SB)/4, $0x7f800000
DATA ·kinf<>+28(SB)/4, $0x7f800000
GLOBL ·kinf<>(SB), RODATA|NOPTR, $32

DATA ·kbias<>+0(SB)/4, $127
DATA ·kbias<>+4(SB)/4, $127
DATA ·kbias<>+8(SB)/4, $127
DATA ·kbias<>+12(SB)/4, $127
DATA ·kbias<>+16(SB)/4, $127
DATA ·kbias<>+20(SB)/4, $127
DATA ·kbias<>+24(SB)/4, $127
DATA ·kbias<>+28(SB)/4, $127
GLOBL ·kbias<>(SB), RODATA|NOPTR, $32

DATA ·ksign<>+0(SB)/4, $0x80000000
DATA ·ksign<>+4(SB)/4, $0x80000000
DATA ·ksign<>+8(SB)/4, $0x80000000
DATA ·ksign<>+12(SB)/4, $0x80000000
DATA ·ksign<>+16(SB)/4, $0x80000000
DATA ·ksign<>+20(SB)/4, $0x80000000
DATA ·ksign<>+24(SB)/4, $0x80000000
DATA ·ksign<>+28(SB)/4, $0x80000000
GLOBL ·ksign<>(SB), RODATA|NOPTR, $32

// EXP sets Y0 = exp(Y0) with Cephes' expf polynomial (as expf in exp.go, with fused
// multiply-adds): 0 below -87.33654, +Inf above 88.37, where 2^n would leave float32's exponent
// range. Clobbers Y1 to Y5.
#define EXP \
	VCMPPS $1, ·klo<>(SB), Y0, Y4; \
	VCMPPS $0x1e, ·khi<>(SB), Y0, Y5; \
	VMAXPS ·klo<>(SB), Y0, Y0; \
	VMINPS ·khi<>(SB), Y0, Y0; \
	VMULPS ·klog2e<>(SB), Y0, Y1; \
	VROUNDPS $0, Y1, Y1; \
	VFNMADD231PS ·kc1<>(SB), Y1, Y0; \
	VFNMADD231PS ·kc2<>(SB), Y1, Y0; \
	VMULPS Y0, Y0, Y2; \
	VMOVUPS ·kp0<>(SB), Y3; \
	VFMADD213PS ·kp1<>(SB), Y0, Y3; \
	VFMADD213PS ·kp2<>(SB), Y0, Y3; \
	VFMADD213PS ·kp3<>(SB), Y0, Y3; \
	VFMADD213PS ·kp4<>(SB), Y0, Y3; \
	VFMADD213PS ·kp5<>(SB), Y0, Y3; \
	VFMADD213PS Y0, Y2, Y3; \
	VADDPS ·kone<>(SB), Y3, Y3; \
	VCVTPS2DQ Y1, Y1; \
	VPADDD ·kbias<>(SB), Y1, Y1; \
	VPSLLD $23, Y1, Y1; \
	VMULPS Y1, Y3, Y0; \
	VANDNPS Y0, Y4, Y0; \
	VBLENDVPS Y5, ·kinf<>(SB), Y0, Y0

// HSUM sets X0 to the sum of the lanes of Y6, in a fixed order. Clobbers X1.
#define HSUM \
	VEXTRACTF128 $1, Y6, X1; \
	VADDPS X1, X6, X0; \
	VMOVHLPS X0, X0, X1; \
	VADDPS X1, X0, X0; \
	VMOVSHDUP X0, X1; \
	VADDSS X1, X0, X0

// func cpuidex(leaf, sub uint32) (a, b, c, d uint32)
TEXT ·cpuidex(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, a+8(FP)
	MOVL BX, b+12(FP)
	MOVL CX, c+16(FP)
	MOVL DX, d+20(FP)
	RET

// func xgetbv0() (eax uint32)
TEXT ·xgetbv0(SB), NOSPLIT, $0-4
	MOVL $0, CX
	XGETBV
	MOVL AX, eax+0(FP)
	RET

// func maxAVX2(x *float32, n int) float32
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VMOVUPS (SI), Y6
	ADDQ $32, SI
	SHRQ $3, CX
	DECQ CX
	JZ mxdone
mxloop:
	VMAXPS (SI), Y6, Y6
	ADDQ $32, SI
	DECQ CX
	JNZ mxloop
mxdone:
	VEXTRACTF128 $1, Y6, X1
	VMAXPS X1, X6, X0
	VMOVHLPS X0, X0, X1
	VMAXPS X1, X0, X0
	VMOVSHDUP X0, X1
	VMAXSS X1, X0, X0
	MOVSS X0, ret+16(FP)
	VZEROUPPER
	RET

// func scaleAVX2(x *float32, n int, s float32)
TEXT ·scaleAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS s+16(FP), Y7
	SHRQ $3, CX
	JZ scdone
scloop:
	VMULPS (SI), Y7, Y0
	VMOVUPS Y0, (SI)
	ADDQ $32, SI
	DECQ CX
	JNZ scloop
scdone:
	VZEROUPPER
	RET

// func dotAVX2(x, y *float32, n int) float32
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y6, Y6, Y6
	SHRQ $3, CX
	JZ dtdone
dtloop:
	VMOVUPS (SI), Y0
	VFMADD231PS (DI), Y0, Y6
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ dtloop
dtdone:
	HSUM
	MOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func mulScaleAVX2(out, x, w *float32, n int, s float32)
// out = x s w
TEXT ·mulScaleAVX2(SB), NOSPLIT, $0-36
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSS s+32(FP), Y7
	SHRQ $3, CX
	JZ msdone
msloop:
	VMULPS (SI), Y7, Y0
	VMULPS (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNZ msloop
msdone:
	VZEROUPPER
	RET

// func rmsBwd1AVX2(dw, dy, w, x *float32, n int, s float32) float32
// dw += dy x s; returns sum(dy w x).
TEXT ·rmsBwd1AVX2(SB), NOSPLIT, $0-52
	MOVQ dw+0(FP), DI
	MOVQ dy+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ x+24(FP), BX
	MOVQ n+32(FP), CX
	VBROADCASTSS s+40(FP), Y7
	VXORPS Y6, Y6, Y6
	SHRQ $3, CX
	JZ r1done
r1loop:
	VMOVUPS (SI), Y0
	VMULPS (BX), Y0, Y1
	VFMADD231PS (DX), Y1, Y6
	VMOVUPS (DI), Y2
	VFMADD231PS Y7, Y1, Y2
	VMOVUPS Y2, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, BX
	ADDQ $32, DI
	DECQ CX
	JNZ r1loop
r1done:
	HSUM
	MOVSS X0, ret+48(FP)
	VZEROUPPER
	RET

// func rmsBwd2AVX2(dx, dy, w, x *float32, n int, s, c float32, acc int)
// v = s dy w - c x; dx = v, or dx += v when acc != 0.
TEXT ·rmsBwd2AVX2(SB), NOSPLIT, $0-56
	MOVQ dx+0(FP), DI
	MOVQ dy+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ x+24(FP), BX
	MOVQ n+32(FP), CX
	VBROADCASTSS s+40(FP), Y7
	VBROADCASTSS c+44(FP), Y8
	MOVQ acc+48(FP), AX
	SHRQ $3, CX
	JZ r2done
r2loop:
	VMULPS (SI), Y7, Y0
	VMULPS (DX), Y0, Y0
	VMOVUPS (BX), Y1
	VFNMADD231PS Y8, Y1, Y0
	TESTQ AX, AX
	JZ r2store
	VADDPS (DI), Y0, Y0
r2store:
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, BX
	ADDQ $32, DI
	DECQ CX
	JNZ r2loop
r2done:
	VZEROUPPER
	RET

// func softmaxBwdAVX2(dr, pr *float32, n int, dot, scale float32)
// dr = pr (dr - dot) scale
TEXT ·softmaxBwdAVX2(SB), NOSPLIT, $0-32
	MOVQ dr+0(FP), DI
	MOVQ pr+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS dot+24(FP), Y7
	VBROADCASTSS scale+28(FP), Y8
	SHRQ $3, CX
	JZ sbdone
sbloop:
	VMOVUPS (DI), Y0
	VSUBPS Y7, Y0, Y0
	VMULPS (SI), Y0, Y0
	VMULPS Y8, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ sbloop
sbdone:
	VZEROUPPER
	RET

// func swigluAVX2(out, gate, up *float32, n int)
// out = gate sigmoid(gate) up
TEXT ·swigluAVX2(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ gate+8(FP), SI
	MOVQ up+16(FP), DX
	MOVQ n+24(FP), CX
	SHRQ $3, CX
	JZ swdone
swloop:
	VMOVUPS (SI), Y8
	VXORPS ·ksign<>(SB), Y8, Y0
	EXP
	VADDPS ·kone<>(SB), Y0, Y0
	VDIVPS Y0, Y8, Y0
	VMULPS (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNZ swloop
swdone:
	VZEROUPPER
	RET

// func swigluBwdAVX2(dgate, dup, dout, gate, up *float32, n int)
// s = sigmoid(gate); dup = dout gate s; dgate = dout up s (1 + gate (1 - s))
TEXT ·swigluBwdAVX2(SB), NOSPLIT, $0-48
	MOVQ dgate+0(FP), DI
	MOVQ dup+8(FP), R8
	MOVQ dout+16(FP), R9
	MOVQ gate+24(FP), SI
	MOVQ up+32(FP), DX
	MOVQ n+40(FP), CX
	SHRQ $3, CX
	JZ sgdone
sgloop:
	VMOVUPS (SI), Y8
	VXORPS ·ksign<>(SB), Y8, Y0
	EXP
	VADDPS ·kone<>(SB), Y0, Y0
	VMOVUPS ·kone<>(SB), Y11
	VDIVPS Y0, Y11, Y11
	VMOVUPS (R9), Y10
	VMULPS Y8, Y11, Y12
	VMULPS Y10, Y12, Y12
	VMOVUPS Y12, (R8)
	VMOVUPS ·kone<>(SB), Y14
	VSUBPS Y11, Y14, Y14
	VFMADD213PS ·kone<>(SB), Y8, Y14
	VMULPS Y11, Y14, Y14
	VMULPS (DX), Y14, Y14
	VMULPS Y10, Y14, Y14
	VMOVUPS Y14, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	ADDQ $32, R8
	ADDQ $32, R9
	DECQ CX
	JNZ sgloop
sgdone:
	VZEROUPPER
	RET

// func expScaleSubSumAVX2(dst, src *float32, n int, scale, sub float32) float32
// dst = exp(src scale - sub), the product rounded before the subtraction; returns the sum.
TEXT ·expScaleSubSumAVX2(SB), NOSPLIT, $0-36
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS scale+24(FP), Y8
	VBROADCASTSS sub+28(FP), Y7
	VXORPS Y6, Y6, Y6
	SHRQ $3, CX
	JZ essdone
essloop:
	VMULPS (SI), Y8, Y0
	VSUBPS Y7, Y0, Y0
	EXP
	VMOVUPS Y0, (DI)
	VADDPS Y0, Y6, Y6
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ essloop
essdone:
	HSUM
	MOVSS X0, ret+32(FP)
	VZEROUPPER
	RET

// The AVX-512 kernels below give the AVX2 kernels' bits: EXP512 is EXP on 16 lanes (the same
// operations in the same order, K1 and K2 in place of the blend masks), and a sum adds the low
// and then the high 8 lanes of each 16 into the 8-lane accumulator, in the element order the
// AVX2 loop adds them. In the sum a group of 8 left over runs EXP in the same call; SwiGLU's
// callers hand such a group to the AVX2 kernel.

// EXPCONSTS512 loads EXP512's constants into Z16 to Z29.
#define EXPCONSTS512 \
	VBROADCASTSS ·klo<>(SB), Z16; \
	VBROADCASTSS ·khi<>(SB), Z17; \
	VBROADCASTSS ·klog2e<>(SB), Z18; \
	VBROADCASTSS ·kc1<>(SB), Z19; \
	VBROADCASTSS ·kc2<>(SB), Z20; \
	VBROADCASTSS ·kp0<>(SB), Z21; \
	VBROADCASTSS ·kp1<>(SB), Z22; \
	VBROADCASTSS ·kp2<>(SB), Z23; \
	VBROADCASTSS ·kp3<>(SB), Z24; \
	VBROADCASTSS ·kp4<>(SB), Z25; \
	VBROADCASTSS ·kp5<>(SB), Z26; \
	VBROADCASTSS ·kone<>(SB), Z27; \
	VBROADCASTSS ·kbias<>(SB), Z28; \
	VBROADCASTSS ·kinf<>(SB), Z29

// EXP512 sets Z0 = exp(Z0) as EXP does. Clobbers Z1 to Z3, K1 and K2.
#define EXP512 \
	VCMPPS $1, Z16, Z0, K1; \
	VCMPPS $0x1e, Z17, Z0, K2; \
	VMAXPS Z16, Z0, Z0; \
	VMINPS Z17, Z0, Z0; \
	VMULPS Z18, Z0, Z1; \
	VRNDSCALEPS $0, Z1, Z1; \
	VFNMADD231PS Z19, Z1, Z0; \
	VFNMADD231PS Z20, Z1, Z0; \
	VMULPS Z0, Z0, Z2; \
	VMOVAPS Z21, Z3; \
	VFMADD213PS Z22, Z0, Z3; \
	VFMADD213PS Z23, Z0, Z3; \
	VFMADD213PS Z24, Z0, Z3; \
	VFMADD213PS Z25, Z0, Z3; \
	VFMADD213PS Z26, Z0, Z3; \
	VFMADD213PS Z0, Z2, Z3; \
	VADDPS Z27, Z3, Z3; \
	VCVTPS2DQ Z1, Z1; \
	VPADDD Z28, Z1, Z1; \
	VPSLLD $23, Z1, Z1; \
	VMULPS Z1, Z3, Z0; \
	VXORPS Z0, Z0, K1, Z0; \
	VMOVAPS Z29, K2, Z0

// func expScaleSubSumAVX512(dst, src *float32, n int, scale, sub float32) float32
// expScaleSubSumAVX2 on 16 lanes, n a multiple of 8.
TEXT ·expScaleSubSumAVX512(SB), NOSPLIT, $0-36
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS scale+24(FP), Z8
	VBROADCASTSS sub+28(FP), Z7
	VXORPS Y6, Y6, Y6
	EXPCONSTS512
	MOVQ CX, DX
	SHRQ $4, CX
	JZ ess512tail
ess512loop:
	VMULPS (SI), Z8, Z0
	VSUBPS Z7, Z0, Z0
	EXP512
	VMOVUPS Z0, (DI)
	VADDPS Y0, Y6, Y6
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS Y1, Y6, Y6
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ ess512loop
ess512tail:
	TESTQ $8, DX
	JZ ess512done
	VMULPS (SI), Y8, Y0
	VSUBPS Y7, Y0, Y0
	EXP
	VMOVUPS Y0, (DI)
	VADDPS Y0, Y6, Y6
ess512done:
	HSUM
	MOVSS X0, ret+32(FP)
	VZEROUPPER
	RET

// func swigluAVX512(out, gate, up *float32, n int)
// swigluAVX2 on 16 lanes, n a multiple of 16.
TEXT ·swigluAVX512(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ gate+8(FP), SI
	MOVQ up+16(FP), DX
	MOVQ n+24(FP), CX
	EXPCONSTS512
	VBROADCASTSS ·ksign<>(SB), Z30
	SHRQ $4, CX
	JZ sw512done
sw512loop:
	VMOVUPS (SI), Z8
	VXORPS Z30, Z8, Z0
	EXP512
	VADDPS Z27, Z0, Z0
	VDIVPS Z0, Z8, Z0
	VMULPS (DX), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ sw512loop
sw512done:
	VZEROUPPER
	RET

// func swigluBwdAVX512(dgate, dup, dout, gate, up *float32, n int)
// swigluBwdAVX2 on 16 lanes, n a multiple of 16.
TEXT ·swigluBwdAVX512(SB), NOSPLIT, $0-48
	MOVQ dgate+0(FP), DI
	MOVQ dup+8(FP), R8
	MOVQ dout+16(FP), R9
	MOVQ gate+24(FP), SI
	MOVQ up+32(FP), DX
	MOVQ n+40(FP), CX
	EXPCONSTS512
	VBROADCASTSS ·ksign<>(SB), Z30
	SHRQ $4, CX
	JZ sg512done
sg512loop:
	VMOVUPS (SI), Z8
	VXORPS Z30, Z8, Z0
	EXP512
	VADDPS Z27, Z0, Z0
	VDIVPS Z0, Z27, Z11
	VMOVUPS (R9), Z10
	VMULPS Z8, Z11, Z12
	VMULPS Z10, Z12, Z12
	VMOVUPS Z12, (R8)
	VSUBPS Z11, Z27, Z14
	VFMADD213PS Z27, Z8, Z14
	VMULPS Z11, Z14, Z14
	VMULPS (DX), Z14, Z14
	VMULPS Z10, Z14, Z14
	VMOVUPS Z14, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	ADDQ $64, R8
	ADDQ $64, R9
	DECQ CX
	JNZ sg512loop
sg512done:
	VZEROUPPER
	RET

// ropeAVX2 rotates one token's heads heads of 2 half values in place by the angles whose
// cosines and sines are cs and sn (half of each, half a multiple of 8): x1 cs - x2 sn and
// x2 cs + x1 sn, or with inverse set x1 cs + x2 sn and x2 cs - x1 sn, each product rounded
// before the sum as ropeRows rounds them.
//
// func ropeAVX2(x, cs, sn *float32, heads, half int, inverse bool)
TEXT ·ropeAVX2(SB), NOSPLIT, $0-41
	MOVQ x+0(FP), DI
	MOVQ cs+8(FP), SI
	MOVQ sn+16(FP), DX
	MOVQ heads+24(FP), CX
	MOVQ half+32(FP), R8
	SHLQ $2, R8
	MOVBQZX inverse+40(FP), R9
	TESTQ CX, CX
	JZ rpdone
rphead:
	LEAQ (DI)(R8*1), R10
	XORQ AX, AX
rpelem:
	VMOVUPS (DI)(AX*1), Y0
	VMOVUPS (R10)(AX*1), Y1
	VMOVUPS (SI)(AX*1), Y2
	VMOVUPS (DX)(AX*1), Y3
	VMULPS Y2, Y0, Y4
	VMULPS Y3, Y1, Y5
	VMULPS Y2, Y1, Y6
	VMULPS Y3, Y0, Y7
	TESTQ R9, R9
	JNZ rpinv
	VSUBPS Y5, Y4, Y4
	VADDPS Y7, Y6, Y6
	JMP rpstore
rpinv:
	VADDPS Y5, Y4, Y4
	VSUBPS Y7, Y6, Y6
rpstore:
	VMOVUPS Y4, (DI)(AX*1)
	VMOVUPS Y6, (R10)(AX*1)
	ADDQ $32, AX
	CMPQ AX, R8
	JLT rpelem
	LEAQ (DI)(R8*2), DI
	DECQ CX
	JNZ rphead
rpdone:
	VZEROUPPER
	RET
