package cpu

import (
	"math"

	"cbs/compute"
)

// The reference operations: plain loops, one per op, written to be read. They are the ground
// truth the fast paths are tested against, and they run the float64 gradient checks.

// RefGemm computes C = alpha op(A) op(B) + beta C, row-major.
func RefGemm[T compute.Float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var x, y T
				if transA {
					x = a[p*lda+i]
				} else {
					x = a[i*lda+p]
				}
				if transB {
					y = b[j*ldb+p]
				} else {
					y = b[p*ldb+j]
				}
				s += float64(x) * float64(y)
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * T(s)
			} else {
				c[i*ldc+j] = alpha*T(s) + beta*c[i*ldc+j]
			}
		}
	}
}

// RefEmbedding gathers rows.
func RefEmbedding[T compute.Float](out, table []T, ids []int32, d int) {
	for i, id := range ids {
		copy(out[i*d:(i+1)*d], table[int(id)*d:int(id+1)*d])
	}
}

// RefEmbeddingBackward scatters rows back, in token order.
func RefEmbeddingBackward[T compute.Float](dtable, dout []T, ids []int32, d int) {
	for i, id := range ids {
		row := dtable[int(id)*d : int(id+1)*d]
		for j := range row {
			row[j] += dout[i*d+j]
		}
	}
}

// RefRMSNorm normalises rows of width d.
func RefRMSNorm[T compute.Float](out, rstd, x, w []T, d int, eps float64) {
	for r := 0; r < len(x)/d; r++ {
		xr := x[r*d : (r+1)*d]
		var ss float64
		for _, v := range xr {
			ss += float64(v) * float64(v)
		}
		s := T(1 / math.Sqrt(ss/float64(d)+eps))
		rstd[r] = s
		for j, v := range xr {
			out[r*d+j] = v * s * w[j]
		}
	}
}

// RefRMSNormBackward: with n = x s (s = rstd), y = n w,
// dw += dy n and dx = s (dy w - n mean(dy w n)).
func RefRMSNormBackward[T compute.Float](dx, dw, dout, x, w, rstd []T, d int, accumulate bool) {
	for r := 0; r < len(x)/d; r++ {
		xr, dy := x[r*d:(r+1)*d], dout[r*d:(r+1)*d]
		s := float64(rstd[r])
		var dot float64
		for j := range xr {
			n := float64(xr[j]) * s
			g := float64(dy[j]) * float64(w[j])
			dot += g * n
			dw[j] += T(float64(dy[j]) * n)
		}
		dot /= float64(d)
		for j := range xr {
			n := float64(xr[j]) * s
			g := float64(dy[j]) * float64(w[j])
			v := T(s * (g - n*dot))
			if accumulate {
				dx[r*d+j] += v
			} else {
				dx[r*d+j] = v
			}
		}
	}
}

// RefRoPE rotates pairs (i, i + hd/2) of each head vector: (x1, x2) -> (x1 c - x2 s, x2 c + x1 s).
func RefRoPE[T compute.Float](x, cos, sin []T, L, heads, hd int, inverse bool) {
	half := hd / 2
	for t := 0; t < len(x)/(heads*hd); t++ {
		p := t % L
		c, s := cos[p*half:(p+1)*half], sin[p*half:(p+1)*half]
		for h := 0; h < heads; h++ {
			v := x[(t*heads+h)*hd : (t*heads+h+1)*hd]
			for i := 0; i < half; i++ {
				x1, x2 := v[i], v[i+half]
				if inverse {
					v[i] = x1*c[i] + x2*s[i]
					v[i+half] = x2*c[i] - x1*s[i]
				} else {
					v[i] = x1*c[i] - x2*s[i]
					v[i+half] = x2*c[i] + x1*s[i]
				}
			}
		}
	}
}

// RefAttention is scaled dot-product attention per (batch, head) with grouped-query sharing.
func RefAttention[T compute.Float](o, probs, q, k, v []T, B, L, H, KV, hd int, causal bool) {
	g := H / KV
	scale := 1 / math.Sqrt(float64(hd))
	qs, ks := H*hd, KV*hd
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			kh := h / g
			P := probs[((b*H+h)*L)*L : ((b*H+h)*L+L)*L]
			for i := 0; i < L; i++ {
				row := P[i*L : (i+1)*L]
				mx := math.Inf(-1)
				sc := make([]float64, L)
				for j := 0; j < L; j++ {
					if causal && j > i {
						sc[j] = math.Inf(-1)
						continue
					}
					var s float64
					for e := 0; e < hd; e++ {
						s += float64(q[(b*L+i)*qs+h*hd+e]) * float64(k[(b*L+j)*ks+kh*hd+e])
					}
					sc[j] = s * scale
					mx = math.Max(mx, sc[j])
				}
				var z float64
				for j := range sc {
					sc[j] = math.Exp(sc[j] - mx)
					z += sc[j]
				}
				for j := range row {
					row[j] = T(sc[j] / z)
				}
				for e := 0; e < hd; e++ {
					var s float64
					for j := 0; j < L; j++ {
						s += float64(row[j]) * float64(v[(b*L+j)*ks+kh*hd+e])
					}
					o[(b*L+i)*qs+h*hd+e] = T(s)
				}
			}
		}
	}
}

// RefAttentionBackward: with S = q k^T scale, P = softmax(S), o = P v:
// dv = P^T do, dP = do v^T, dS = P (dP - rowsum(dP P)), dq = dS k scale, dk = dS^T q scale.
func RefAttentionBackward[T compute.Float](dq, dk, dv, do, probs, q, k, v []T, B, L, H, KV, hd int, causal bool) {
	g := H / KV
	scale := 1 / math.Sqrt(float64(hd))
	qs, ks := H*hd, KV*hd
	clear(dq)
	clear(dk)
	clear(dv)
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			kh := h / g
			P := probs[((b*H+h)*L)*L : ((b*H+h)*L+L)*L]
			for i := 0; i < L; i++ {
				dP := make([]float64, L)
				var dot float64
				for j := 0; j < L; j++ {
					var s float64
					for e := 0; e < hd; e++ {
						s += float64(do[(b*L+i)*qs+h*hd+e]) * float64(v[(b*L+j)*ks+kh*hd+e])
					}
					dP[j] = s
					dot += s * float64(P[i*L+j])
				}
				for j := 0; j < L; j++ {
					pij := float64(P[i*L+j])
					for e := 0; e < hd; e++ {
						dv[(b*L+j)*ks+kh*hd+e] += T(pij * float64(do[(b*L+i)*qs+h*hd+e]))
					}
					dS := pij * (dP[j] - dot) * scale
					for e := 0; e < hd; e++ {
						dq[(b*L+i)*qs+h*hd+e] += T(dS * float64(k[(b*L+j)*ks+kh*hd+e]))
						dk[(b*L+j)*ks+kh*hd+e] += T(dS * float64(q[(b*L+i)*qs+h*hd+e]))
					}
				}
			}
		}
	}
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// RefSwiGLU: out = gate sigmoid(gate) up.
func RefSwiGLU[T compute.Float](out, gate, up []T) {
	for i := range out {
		g := float64(gate[i])
		out[i] = T(g * sigmoid(g) * float64(up[i]))
	}
}

// RefSwiGLUBackward: d silu(g)/dg = s (1 + g (1 - s)), s = sigmoid(g).
func RefSwiGLUBackward[T compute.Float](dgate, dup, dout, gate, up []T) {
	for i := range dout {
		g, u, d := float64(gate[i]), float64(up[i]), float64(dout[i])
		s := sigmoid(g)
		dup[i] = T(d * g * s)
		dgate[i] = T(d * u * s * (1 + g*(1-s)))
	}
}

// RefCrossEntropy: CE = logsumexp(x) - x[target]; its gradient is softmax(x) - onehot.
func RefCrossEntropy[T compute.Float](logits []T, targets []int32, weights []T, V int, grad bool) float64 {
	var total float64
	for r := 0; r < len(logits)/V; r++ {
		x := logits[r*V : (r+1)*V]
		wt := float64(weights[r])
		if wt == 0 {
			if grad {
				clear(x)
			}
			continue
		}
		mx := math.Inf(-1)
		for _, v := range x {
			mx = math.Max(mx, float64(v))
		}
		var z float64
		for _, v := range x {
			z += math.Exp(float64(v) - mx)
		}
		lse := mx + math.Log(z)
		total += wt * (lse - float64(x[targets[r]]))
		if grad {
			for j, v := range x {
				x[j] = T(wt * math.Exp(float64(v)-lse))
			}
			x[targets[r]] -= T(wt)
		}
	}
	return total
}

// RefAdamW is torch.optim.AdamW's update, element by element.
func RefAdamW[T compute.Float](w, g, m, v []T, p compute.AdamParams) {
	bc1 := 1 - math.Pow(p.Beta1, float64(p.Step))
	bc2 := 1 - math.Pow(p.Beta2, float64(p.Step))
	for i := range w {
		gi := float64(g[i])
		wi := float64(w[i]) * (1 - p.LR*p.WeightDecay)
		mi := p.Beta1*float64(m[i]) + (1-p.Beta1)*gi
		vi := p.Beta2*float64(v[i]) + (1-p.Beta2)*gi*gi
		m[i], v[i] = T(mi), T(vi)
		denom := math.Sqrt(float64(v[i]))/math.Sqrt(bc2) + p.Eps
		w[i] = T(wi - p.LR/bc1*float64(m[i])/denom)
	}
}
