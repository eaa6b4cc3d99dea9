package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"cbs/compute"
)

// bf16Backend returns a fast backend at bf16 products, or skips the test where oneDNN is absent
// (Debian: libdnnl2).
func bf16Backend(t testing.TB, threads int) *CPU {
	c := New(threads)
	if err := c.SetPrecision(compute.PrecisionBF16); err != nil {
		t.Skip(err)
	}
	return c
}

// TestRoundBF16 checks the vector rounding against compute.BF16 bit for bit: special values,
// ties and random bit patterns, at every tail length.
func TestRoundBF16(t *testing.T) {
	specials := []uint32{0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xff800001,
		0x7fa50000, 0x3f808000, 0x3f818000, 0x3f808001, 0x3f807fff, 0xbf818000, 0x7f7fffff,
		0x7f7f8000, 0x00008000, 0x00018000, 0x00000001, 0x007fffff, 0xffffffff, 0x7fffffff}
	r := rand.New(rand.NewPCG(11, 12))
	for _, n := range append(simdLengths, 4099) {
		src := make([]float32, n)
		for i := range src {
			if i < len(specials) && n > 40 {
				src[i] = math.Float32frombits(specials[i])
			} else {
				src[i] = math.Float32frombits(r.Uint32())
			}
		}
		want := make([]uint16, n)
		compute.RoundBF16(want, src)
		vec, scalar := withSIMD(t, func() []uint16 {
			got := make([]uint16, n)
			roundBF16(got, src)
			return got
		})
		if !slices.Equal(vec, want) || !slices.Equal(scalar, want) {
			for i := range want {
				if vec[i] != want[i] {
					t.Fatalf("n=%d: vector %#04x for %#08x, want %#04x", n, vec[i], math.Float32bits(src[i]), want[i])
				}
			}
			t.Fatalf("n=%d: Go loop differs", n)
		}
		got := make([]uint16, n)
		New(3).ToBF16(got, src)
		if !slices.Equal(got, want) {
			t.Fatalf("n=%d: ToBF16 differs", n)
		}
	}
}

// relErr is ||got - want|| / ||want|| (Frobenius).
func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / den)
}

// bf16Tolerance is the largest relative (Frobenius) error against the fp32 reference that each
// bf16 operation may show. Rounding an operand to bf16 (8 significant bits) changes it by at
// most 2^-8 relative (3.9e-3); a product of two rounded operands sums such errors over k terms of random sign, so its
// relative error stays near that, well under the 1e-2 allowed. The same tolerances are used in
// model/bf16_test.go for whole passes.
var bf16Tolerance = map[string]float64{
	"round":      1.0 / 256, // |BF16(x) - x| <= 2^-8 |x|, elementwise
	"gemm":       1e-2,      // C = alpha op(A) op(B) + beta C, both operands bf16
	"gemm_accum": 1e-2,      // the same onto a nonzero C with beta = 1
	// Attention's products take bf16 q, k, v and weights P, its backward also bf16 do and dS;
	// each output goes through two rounded products, and shows about 3e-3 (o) to 5e-3 (dq).
	"attention": 1e-2,
}

// TestBF16Attention checks attention at bf16 against the fp32 reference, causal and not, with
// grouped kv heads and a partial last block of query rows, and that its results do not depend
// on the thread count.
func TestBF16Attention(t *testing.T) {
	ref := Reference[float32]{}
	// The last two run on AMX where the CPU has it (sides multiple of 32; a last block of 32
	// rows in the first of them).
	for _, sh := range []struct{ B, L, H, KV, hd int }{{2, 129, 4, 2, 16}, {1, 200, 2, 2, 64}, {1, 7, 2, 1, 8}, {2, 96, 4, 2, 64}, {1, 128, 2, 2, 32}} {
		B, L, H, KV, hd := sh.B, sh.L, sh.H, sh.KV, sh.hd
		q, k, v := randVec(B*L*H*hd, 9, 1), randVec(B*L*KV*hd, 10, 1), randVec(B*L*KV*hd, 11, 1)
		do := randVec(B*L*H*hd, 12, 1)
		for _, causal := range []bool{false, true} {
			t.Run(fmt.Sprintf("%+v/causal=%v", sh, causal), func(t *testing.T) {
				o2, p2 := make([]float32, len(q)), make([]float32, B*H*L*L)
				dq2, dk2, dv2 := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
				ref.Attention(o2, p2, q, k, v, B, L, H, KV, hd, causal)
				ref.AttentionBackward(dq2, dk2, dv2, do, p2, q, k, v, B, L, H, KV, hd, causal)
				var first [][]float32
				for _, threads := range []int{1, 3} {
					be := bf16Backend(t, threads)
					o1, s1 := randVec(len(q), 1, 1), randVec(compute.AttentionStateLen(be, B, H, L), 2, 1)
					dq1, dk1, dv1 := randVec(len(q), 3, 1), randVec(len(k), 4, 1), randVec(len(v), 5, 1)
					be.Attention(o1, s1, q, k, v, B, L, H, KV, hd, causal)
					be.AttentionBackward(dq1, dk1, dv1, do, s1, q, k, v, B, L, H, KV, hd, causal)
					outs := [][]float32{o1, s1, dq1, dk1, dv1}
					if first == nil {
						first = outs
						tol := bf16Tolerance["attention"]
						for _, c := range []struct {
							name      string
							got, want []float32
						}{{"o", o1, o2}, {"dq", dq1, dq2}, {"dk", dk1, dk2}, {"dv", dv1, dv2}} {
							e := relErr(c.got, c.want)
							t.Logf("%s: relative error %.2e (tolerance %g)", c.name, e, tol)
							if e > tol || math.IsNaN(e) {
								t.Errorf("%s: relative error %.3g > %g", c.name, e, tol)
							}
							if L > 8 && e < 1e-5 {
								t.Errorf("%s: relative error %.3g: the products were not rounded to bf16", c.name, e)
							}
						}
						continue
					}
					for i := range outs {
						if !slices.Equal(outs[i], first[i]) {
							t.Errorf("output %d at %d threads differs from 1 thread", i, threads)
						}
					}
				}
			})
		}
	}
}

func TestBF16Ops(t *testing.T) {
	ref := Reference[float32]{}
	for _, threads := range []int{1, 3} {
		be := bf16Backend(t, threads)
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			t.Run("round", func(t *testing.T) {
				x := randVec(10000, 21, 3)
				h := make([]uint16, len(x))
				be.ToBF16(h, x)
				for i, v := range x {
					if d := math.Abs(float64(compute.FromBF16(h[i])) - float64(v)); d > bf16Tolerance["round"]*math.Abs(float64(v)) {
						t.Fatalf("x[%d] = %v rounds to %v", i, v, compute.FromBF16(h[i]))
					}
				}
			})
			for _, tc := range []struct {
				ta, tb  bool
				m, n, k int
				beta    float32
			}{
				{false, true, 600, 96, 64, 0}, {false, false, 300, 7, 5, 1}, {false, true, 9, 600, 33, 0},
				{true, false, 513, 64, 700, 1}, {true, true, 20, 21, 22, 0}, {false, false, 257, 300, 128, 1},
				{true, false, 256, 96, 3000, 1}, {false, true, 33, 256, 2048, 0}, // inner dimension split
			} {
				name := "gemm"
				if tc.beta != 0 {
					name = "gemm_accum"
				}
				t.Run(fmt.Sprintf("%s/%+v", name, tc), func(t *testing.T) {
					lda, ldb := denseStrides(tc.ta, tc.tb, tc.m, tc.n, tc.k)
					a, b := randVec(tc.m*tc.k, 1, 1), randVec(tc.k*tc.n, 2, 1)
					want, got := randVec(tc.m*tc.n, 3, 1), randVec(tc.m*tc.n, 3, 1)
					ref.Gemm(tc.ta, tc.tb, tc.m, tc.n, tc.k, 0.5, a, lda, b, ldb, tc.beta, want, tc.n)
					be.Gemm(tc.ta, tc.tb, tc.m, tc.n, tc.k, 0.5, a, lda, b, ldb, tc.beta, got, tc.n)
					e := relErr(got, want)
					t.Logf("relative error %.2e (tolerance %g)", e, bf16Tolerance[name])
					if e > bf16Tolerance[name] || math.IsNaN(e) {
						t.Fatalf("relative error %.3g > %g", e, bf16Tolerance[name])
					}
					if e < 1e-5 {
						t.Fatalf("relative error %.3g: the operands were not rounded to bf16", e)
					}
					// GemmBF16 on operands rounded once gives Gemm's result bit for bit, and a
					// second run the same bits.
					ah, bh := make([]uint16, len(a)), make([]uint16, len(b))
					compute.RoundBF16(ah, a)
					compute.RoundBF16(bh, b)
					for range 2 {
						again := randVec(tc.m*tc.n, 3, 1)
						be.GemmBF16(tc.ta, tc.tb, tc.m, tc.n, tc.k, 0.5, ah, lda, bh, ldb, tc.beta, again, tc.n)
						if !slices.Equal(again, got) {
							t.Fatal("GemmBF16 on pre-rounded operands differs from Gemm at bf16")
						}
					}
				})
			}
		})
	}
}

// TestBF16ThreadsIdentical: the bf16 products give the same bits at any thread count.
func TestBF16ThreadsIdentical(t *testing.T) {
	m, n, k := 700, 300, 200
	a, b := randVec(m*k, 31, 1), randVec(k*n, 32, 1)
	var outs [][]float32
	for _, threads := range []int{1, 2, 5} {
		be := bf16Backend(t, threads)
		c := make([]float32, m*n)
		be.Gemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
		outs = append(outs, c)
		c2 := make([]float32, n*k)
		be.Gemm(true, false, n, k, m, 1, outs[0], n, a, k, 0, c2, k)
		outs = append(outs, c2)
	}
	for i := 2; i < len(outs); i++ {
		if !slices.Equal(outs[i], outs[i%2]) {
			t.Fatalf("result %d differs from the 1-thread one", i)
		}
	}
}

func TestSetPrecision(t *testing.T) {
	be := New(1)
	fp32Name := be.Name()
	if be.GemmPrecision() != compute.PrecisionFP32 {
		t.Fatal("a new backend is not fp32")
	}
	// oneDNN is loaded at fp32 exactly when it runs the fp32 products.
	if (be.DNNL().Library == "onednn") != (be.FP32Library() == "onednn") {
		t.Fatalf("fp32 products on %q, but oneDNN %+v", be.FP32Library(), be.DNNL())
	}
	if err := be.SetPrecision(compute.Precision(7)); err == nil {
		t.Error("unknown precision accepted")
	}
	if err := be.SetPrecision(compute.PrecisionBF16); err != nil {
		t.Skip(err)
	}
	if be.GemmPrecision() != compute.PrecisionBF16 || be.DNNL().Library != "onednn" || be.Name() == fp32Name {
		t.Errorf("after SetPrecision(bf16): %v, %+v, %q", be.GemmPrecision(), be.DNNL(), be.Name())
	}
	t.Log(be.Name())
	if err := be.SetPrecision(compute.PrecisionFP32); err != nil || be.Name() != fp32Name {
		t.Errorf("back to fp32: %v, %q", err, be.Name())
	}
	// k = 0 at bf16: C = beta C.
	be.SetPrecision(compute.PrecisionBF16)
	c := []float32{1, 2, 3, 4, 5, 6}
	be.Gemm(false, false, 3, 2, 0, 1, nil, 1, nil, 2, 2, c, 2)
	if !slices.Equal(c, []float32{2, 4, 6, 8, 10, 12}) {
		t.Errorf("k=0: %v", c)
	}
}

// TestBF16Outputs: the ops that write bf16 give the bits of the fp32 op rounded with
// compute.RoundBF16, across task and tile boundaries and the SIMD kernels' scalar tails.
func TestBF16Outputs(t *testing.T) {
	n := 2*swigluBlock + 3*bf16Tile + 21
	gate, up, dout := randVec(n, 41, 3), randVec(n, 42, 1), randVec(n, 43, 1)
	for _, threads := range []int{1, 3} {
		be := bf16Backend(t, threads)
		rounded := func(x []float32) []uint16 {
			h := make([]uint16, len(x))
			compute.RoundBF16(h, x)
			return h
		}
		t.Run(fmt.Sprintf("threads=%d/swiglu", threads), func(t *testing.T) {
			f := make([]float32, n)
			be.SwiGLU(f, gate, up)
			h := make([]uint16, n)
			be.SwiGLUBF16(h, gate, up)
			if !slices.Equal(h, rounded(f)) {
				t.Fatal("SwiGLUBF16 differs from SwiGLU rounded")
			}
		})
		t.Run(fmt.Sprintf("threads=%d/swiglu_backward", threads), func(t *testing.T) {
			fg, fu := make([]float32, n), make([]float32, n)
			be.SwiGLUBackward(fg, fu, dout, gate, up)
			hg, hu := make([]uint16, n), make([]uint16, n)
			be.SwiGLUBackwardBF16(hg, hu, dout, gate, up)
			if !slices.Equal(hg, rounded(fg)) || !slices.Equal(hu, rounded(fu)) {
				t.Fatal("SwiGLUBackwardBF16 differs from SwiGLUBackward rounded")
			}
		})
		for _, d := range []int{37, 64, 1500} {
			t.Run(fmt.Sprintf("threads=%d/rmsnorm/d=%d", threads, d), func(t *testing.T) {
				rows := 2*rowBlock + 3
				x, w := randVec(rows*d, 44, 2), randVec(d, 45, 1)
				f, rf := make([]float32, rows*d), make([]float32, rows)
				be.RMSNorm(f, rf, x, w, d, 1e-6)
				h, rh := make([]uint16, rows*d), make([]float32, rows)
				be.RMSNormBF16(h, rh, x, w, d, 1e-6)
				if !slices.Equal(h, rounded(f)) || !slices.Equal(rh, rf) {
					t.Fatal("RMSNormBF16 differs from RMSNorm rounded")
				}
			})
		}
	}
}

// TestFusedSoftmaxKernels: the kernels that fold a scale into the exp or a rounding into the
// softmax's last pass give the bits of the passes they replace, with the vector kernels and
// without.
func TestFusedSoftmaxKernels(t *testing.T) {
	old := useSIMD
	defer func() { useSIMD = old }()
	for _, simd := range []bool{true, false} {
		if simd && !hasAVX2FMA() {
			continue
		}
		useSIMD = simd
		for _, n := range simdLengths {
			t.Run(fmt.Sprintf("simd=%v/n=%d", simd, n), func(t *testing.T) {
				x, y := randVec(n, 111, 4), randVec(n, 112, 1)
				cp := func(v []float32) []float32 { return append([]float32(nil), v...) }
				rounded := func(v []float32) []uint16 { h := make([]uint16, len(v)); roundBF16(h, v); return h }

				got := make([]float32, n)
				gotSum := expScaleSubSum(got, x, 0.125, 0.3)
				want := cp(x)
				scale(want, 0.125)
				wantSum := expSubSum(want, want, 0.3)
				if !slices.Equal(got, want) || gotSum != wantSum {
					t.Errorf("expScaleSubSum differs from scale then expSubSum (sums %v, %v)", gotSum, wantSum)
				}

				h := make([]uint16, n)
				mulRoundBF16(h, x, 0.37)
				w := cp(x)
				scale(w, 0.37)
				if !slices.Equal(h, rounded(w)) {
					t.Error("mulRoundBF16 differs from scale then roundBF16")
				}

				softmaxBwdBF16(h, x, y, 0.2, 0.125)
				w = cp(x)
				softmaxBwd(w, y, 0.2, 0.125)
				if !slices.Equal(h, rounded(w)) {
					t.Error("softmaxBwdBF16 differs from softmaxBwd then roundBF16")
				}
			})
		}
	}
}
