package cuda

import (
	"fmt"
	"math"
	"testing"

	"cbs/compute/cpu"
	"cbs/internal/rng"
)

// colMajorRef is BLAS's gemm as cuBLAS defines it: column-major operands with leading
// dimensions, C (m x n) = alpha opA(A) opB(B) + beta C.
func colMajorRef(opA, opB int32, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	at := func(i, p int) float64 { // opA(A)[i, p]
		if opA == cublasOpT {
			return a[p+i*lda]
		}
		return a[i+p*lda]
	}
	bt := func(p, j int) float64 {
		if opB == cublasOpT {
			return b[j+p*ldb]
		}
		return b[p+j*ldb]
	}
	for j := 0; j < n; j++ {
		for i := 0; i < m; i++ {
			var s float64
			for p := 0; p < k; p++ {
				s += at(i, p) * bt(p, j)
			}
			c[i+j*ldc] = alpha*s + beta*c[i+j*ldc]
		}
	}
}

// TestColMajorMappingOnPaper checks toColMajor's arguments for the products the model issues.
func TestColMajorMappingOnPaper(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		ta, tb                 bool
		m, n, k, lda, ldb, ldc int
		want                   colMajorGemm
	}{
		// Y [N, out] = X [N, in] W^T, W [out, in]: cuBLAS computes Y^T = W X^T, op(W) = T.
		{"projection", false, true, 4096, 768, 2304, 2304, 2304, 768,
			colMajorGemm{OpA: cublasOpT, OpB: cublasOpN, M: 768, N: 4096, K: 2304, First: "b", Second: "a", LDA: 2304, LDB: 2304, LDC: 768}},
		// dX [N, in] = dY [N, out] W [out, in].
		{"input gradient", false, false, 4096, 2304, 768, 768, 2304, 2304,
			colMajorGemm{OpA: cublasOpN, OpB: cublasOpN, M: 2304, N: 4096, K: 768, First: "b", Second: "a", LDA: 2304, LDB: 768, LDC: 2304}},
		// dW [out, in] += dY^T [out, N] X [N, in].
		{"weight gradient", true, false, 768, 2304, 4096, 768, 2304, 2304,
			colMajorGemm{OpA: cublasOpN, OpB: cublasOpT, M: 2304, N: 768, K: 4096, First: "b", Second: "a", LDA: 2304, LDB: 768, LDC: 2304}},
		{"both transposed", true, true, 3, 5, 7, 3, 7, 5,
			colMajorGemm{OpA: cublasOpT, OpB: cublasOpT, M: 5, N: 3, K: 7, First: "b", Second: "a", LDA: 7, LDB: 3, LDC: 5}},
	} {
		if got := toColMajor(tc.ta, tc.tb, tc.m, tc.n, tc.k, tc.lda, tc.ldb, tc.ldc); got != tc.want {
			t.Errorf("%s: toColMajor = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestColMajorMappingComputes runs the mapped column-major product on the row-major buffers and
// compares with the row-major reference, for every transpose pair and padded strides.
func TestColMajorMappingComputes(t *testing.T) {
	s := rng.New(1, "gemm-map", 0)
	rnd := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = s.NormFloat64()
		}
		return v
	}
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			m, n, k := 5, 7, 3
			lda, ldb, ldc := k+2, n+1, n+3
			if ta {
				lda = m + 1
			}
			if tb {
				ldb = k + 4
			}
			rowsA, rowsB := m, k
			if ta {
				rowsA = k
			}
			if tb {
				rowsB = n
			}
			a, b := rnd(rowsA*lda), rnd(rowsB*ldb)
			c0 := rnd(m * ldc)
			want := append([]float64(nil), c0...)
			cpu.RefGemm(ta, tb, m, n, k, 0.5, a, lda, b, ldb, 2, want, ldc)
			got := append([]float64(nil), c0...)
			g := toColMajor(ta, tb, m, n, k, lda, ldb, ldc)
			ops := map[string][]float64{"a": a, "b": b}
			colMajorRef(g.OpA, g.OpB, g.M, g.N, g.K, 0.5, ops[g.First], g.LDA, ops[g.Second], g.LDB, 2, got, g.LDC)
			for i := range want {
				if math.Abs(got[i]-want[i]) > 1e-12 {
					t.Fatalf("%s: C[%d] = %v, want %v", fmt.Sprint("transA=", ta, " transB=", tb), i, got[i], want[i])
				}
			}
		}
	}
}

func TestExtent(t *testing.T) {
	// A 3 x 4 matrix with row stride 6 spans 2*6 + 4 elements; transposed, it is stored 4 x 3.
	if e := extent(false, 3, 4, 6); e != 16 {
		t.Errorf("extent = %d, want 16", e)
	}
	if e := extent(true, 3, 4, 6); e != 21 {
		t.Errorf("transposed extent = %d, want 21", e)
	}
}

func TestEmbeddingGrouping(t *testing.T) {
	var s csrScratch
	ids := []int32{3, 1, 3, 0, 1, 3}
	buf, u := s.group(ids, 5)
	n := len(ids)
	order, starts, rows := buf[:n], buf[n:n+u+1], buf[n+u+1:]
	if u != 3 || fmt.Sprint(order) != "[3 1 4 0 2 5]" || fmt.Sprint(starts) != "[0 1 3 6]" || fmt.Sprint(rows) != "[0 1 3]" {
		t.Fatalf("group = order %v starts %v rows %v (%d distinct)", order, starts, rows, u)
	}
}
