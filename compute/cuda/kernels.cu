// Kernels of the cuda backend, compiled at run time by NVRTC for the device found. No headers
// (NVRTC provides the math functions), C linkage so the names are the symbols. Storage is fp32;
// bf16 appears only in the rounded copies the matrix products read.
//
// Reductions go through fixed trees (warp shuffles down to lane 0, then shared memory), never
// float atomics, so every result is the same from run to run. Where the reference accumulates
// in float64 (norms, cross-entropy, AdamW, sums of squares), so do these kernels.

typedef unsigned short bf16_t;
typedef unsigned int u32;
typedef long long i64;

#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float warp_sum_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(FULL_MASK, v, o);
    return __shfl_sync(FULL_MASK, v, 0);
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(FULL_MASK, v, o);
    return __shfl_sync(FULL_MASK, v, 0);
}

__device__ __forceinline__ float warp_max_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(FULL_MASK, v, o));
    return __shfl_sync(FULL_MASK, v, 0);
}

// block_sum_d sums v over the block (blockDim.x a multiple of 32, at most 1024) and returns the
// total to every thread. sh holds 33 doubles.
__device__ double block_sum_d(double v, double* sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        double t = lane < nw ? sh[lane] : 0.0;
        t = warp_sum_d(t);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

__device__ float block_sum_f(float v, float* sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_f(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float t = lane < nw ? sh[lane] : 0.0f;
        t = warp_sum_f(t);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

__device__ float block_max_f(float v, float* sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max_f(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float t = lane < nw ? sh[lane] : NEG_INF;
        t = warp_max_f(t);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

// Round to nearest even, NaN kept quiet: the conversion torch and cuda_bf16.h do.
__device__ __forceinline__ bf16_t f2bf(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

extern "C" __global__ void cast_f32_bf16(bf16_t* y, const float* x, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        y[i] = f2bf(x[i]);
}

extern "C" __global__ void cast_bf16_f32(float* y, const bf16_t* x, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        y[i] = __uint_as_float(((u32)x[i]) << 16);
}

extern "C" __global__ void embedding_fwd(float* out, const float* table, const int* ids, int n, int d) {
    i64 total = (i64)n * d;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        i64 t = i / d, j = i - t * d;
        out[i] = table[(i64)ids[t] * d + j];
    }
}

// embedding_bwd adds, for each distinct id u (block u), the rows of dout of its tokens in token
// order: order[starts[u] .. starts[u+1]) are those tokens. The additions happen in the
// reference's order, so the result is bit-identical to it.
extern "C" __global__ void embedding_bwd(float* dtable, const float* dout, const int* order,
                                         const int* starts, const int* rows, int nrows, int d) {
    for (int u = blockIdx.x; u < nrows; u += gridDim.x) {
        i64 r = rows[u];
        int s = starts[u], e = starts[u + 1];
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            float acc = dtable[r * d + j];
            for (int p = s; p < e; p++) acc += dout[(i64)order[p] * d + j];
            dtable[r * d + j] = acc;
        }
    }
}

// One warp per row.
extern "C" __global__ void rmsnorm_fwd(float* out, float* rstd, const float* x, const float* w,
                                       int rows, int d, float eps) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const float* xr = x + (i64)row * d;
    double ss = 0;
    for (int j = lane; j < d; j += 32) ss += (double)xr[j] * (double)xr[j];
    ss = warp_sum_d(ss);
    float s = (float)(1.0 / sqrt(ss / d + (double)eps));
    if (lane == 0) rstd[row] = s;
    float* o = out + (i64)row * d;
    for (int j = lane; j < d; j += 32) o[j] = xr[j] * s * w[j];
}

// dx = s (dy w - n mean(dy w n)), n = x s; one warp per row. accumulate adds to dx.
extern "C" __global__ void rmsnorm_bwd_dx(float* dx, const float* dout, const float* x, const float* w,
                                          const float* rstd, int rows, int d, int accumulate) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const float* xr = x + (i64)row * d;
    const float* dy = dout + (i64)row * d;
    double s = rstd[row];
    double dot = 0;
    for (int j = lane; j < d; j += 32) dot += ((double)dy[j] * (double)w[j]) * ((double)xr[j] * s);
    dot = warp_sum_d(dot) / d;
    float* o = dx + (i64)row * d;
    for (int j = lane; j < d; j += 32) {
        double n = (double)xr[j] * s, g = (double)dy[j] * (double)w[j];
        float v = (float)(s * (g - n * dot));
        o[j] = accumulate ? o[j] + v : v;
    }
}

// Column sums of dy n over a chunk of rows: partial[c, j] for chunk c = blockIdx.y.
extern "C" __global__ void rmsnorm_bwd_dw_partial(double* partial, const float* dout, const float* x,
                                                  const float* rstd, int rows, int d, int chunk) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    int r0 = blockIdx.y * chunk, r1 = min(rows, r0 + chunk);
    double acc = 0;
    for (int r = r0; r < r1; r++) acc += (double)dout[(i64)r * d + j] * ((double)x[(i64)r * d + j] * (double)rstd[r]);
    partial[(i64)blockIdx.y * d + j] = acc;
}

// dw[j] += sum over chunks, in chunk order.
extern "C" __global__ void colsum_finish(float* dw, const double* partial, int chunks, int d) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    double acc = 0;
    for (int c = 0; c < chunks; c++) acc += partial[(i64)c * d + j];
    dw[j] += (float)acc;
}

// Rotate-half RoPE in place on x [ntok, heads*hd]; token t is at position t % L. One thread per
// pair (i, i + hd/2).
extern "C" __global__ void rope(float* x, const float* cs, const float* sn, int ntok, int L, int heads,
                                int hd, int inverse) {
    int half = hd >> 1;
    i64 total = (i64)ntok * heads * half;
    for (i64 idx = blockIdx.x * (i64)blockDim.x + threadIdx.x; idx < total; idx += (i64)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        i64 th = idx / half;
        i64 t = th / heads;
        int p = (int)(t % L);
        float* v = x + th * hd;
        float c = cs[p * half + i], s = sn[p * half + i];
        float x1 = v[i], x2 = v[i + half];
        if (inverse) {
            v[i] = x1 * c + x2 * s;
            v[i + half] = x2 * c - x1 * s;
        } else {
            v[i] = x1 * c - x2 * s;
            v[i + half] = x2 * c + x1 * s;
        }
    }
}

// Row softmax in place on scores [rows, L] already scaled; row r is query position r % L.
// Causal rows are zero right of the diagonal. One block per row.
extern "C" __global__ void softmax_fwd(float* p, int rows, int L, int causal) {
    __shared__ float sh[33];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        float* row = p + (i64)r * L;
        int n = causal ? (r % L) + 1 : L;
        float mx = NEG_INF;
        for (int j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, row[j]);
        mx = block_max_f(mx, sh);
        float z = 0;
        for (int j = threadIdx.x; j < n; j += blockDim.x) z += expf(row[j] - mx);
        z = block_sum_f(z, sh);
        float inv = 1.0f / z;
        for (int j = threadIdx.x; j < L; j += blockDim.x) row[j] = j < n ? expf(row[j] - mx) * inv : 0.0f;
        __syncthreads();
    }
}

// dS = P (dP - rowsum(dP P)) scale, in place on dp.
extern "C" __global__ void softmax_bwd(float* dp, const float* p, int rows, int L, float scale, int causal) {
    __shared__ float sh[33];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        float* drow = dp + (i64)r * L;
        const float* prow = p + (i64)r * L;
        int n = causal ? (r % L) + 1 : L;
        float dot = 0;
        for (int j = threadIdx.x; j < n; j += blockDim.x) dot += drow[j] * prow[j];
        dot = block_sum_f(dot, sh);
        for (int j = threadIdx.x; j < L; j += blockDim.x) drow[j] = j < n ? prow[j] * (drow[j] - dot) * scale : 0.0f;
        __syncthreads();
    }
}

__device__ __forceinline__ float sigmoidf(float g) { return 1.0f / (1.0f + expf(-g)); }

extern "C" __global__ void swiglu_fwd(float* out, const float* gate, const float* up, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = g * sigmoidf(g) * up[i];
    }
}

extern "C" __global__ void swiglu_bwd(float* dgate, float* dup, const float* dout, const float* gate,
                                      const float* up, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        float g = gate[i], u = up[i], d = dout[i];
        float s = sigmoidf(g);
        dup[i] = d * g * s;
        dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
    }
}

// Weighted cross-entropy per row, one block per row: rowloss[r] = w (logsumexp(x) - x[target]).
// With grad, the row becomes w (softmax(x) - onehot); rows of weight 0 become 0.
extern "C" __global__ void cross_entropy(float* logits, const int* targets, const float* weights,
                                         double* rowloss, int rows, int V, int grad) {
    __shared__ double shd[33];
    __shared__ float shf[33];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        float* x = logits + (i64)r * V;
        float wt = weights[r];
        if (wt == 0.0f) {
            if (grad)
                for (int j = threadIdx.x; j < V; j += blockDim.x) x[j] = 0.0f;
            if (threadIdx.x == 0) rowloss[r] = 0.0;
            continue;
        }
        float mx = NEG_INF;
        for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, x[j]);
        mx = block_max_f(mx, shf);
        double z = 0;
        for (int j = threadIdx.x; j < V; j += blockDim.x) z += exp((double)x[j] - (double)mx);
        z = block_sum_d(z, shd);
        double lse = (double)mx + log(z);
        int t = targets[r];
        if (threadIdx.x == 0) rowloss[r] = (double)wt * (lse - (double)x[t]);
        __syncthreads(); // x[t] is read above before the gradient overwrites it
        if (grad) {
            for (int j = threadIdx.x; j < V; j += blockDim.x) {
                float g = (float)((double)wt * exp((double)x[j] - lse));
                x[j] = j == t ? g - wt : g;
            }
        }
        __syncthreads();
    }
}

// Sum of x in one block, fixed order: out[0] = sum.
extern "C" __global__ void sum_d(double* out, const double* x, int n) {
    __shared__ double sh[33];
    double acc = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += x[i];
    acc = block_sum_d(acc, sh);
    if (threadIdx.x == 0) out[0] = acc;
}

// Per-block sums of x^2 with a grid-stride loop: the grid size is a function of n only, so the
// order of additions is too.
extern "C" __global__ void sumsq_partial(double* partial, const float* x, i64 n) {
    __shared__ double sh[33];
    double acc = 0;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        acc += (double)x[i] * (double)x[i];
    acc = block_sum_d(acc, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

extern "C" __global__ void add(float* dst, const float* a, const float* b, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        dst[i] = a[i] + b[i];
}

extern "C" __global__ void scale(float* x, float s, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        x[i] *= s;
}

// torch.optim.AdamW's update in float64, as the reference writes it; keep is 1 - lr wd,
// lr_bc1 is lr / (1 - beta1^t) and sqrt_bc2 is sqrt(1 - beta2^t), computed by the caller.
extern "C" __global__ void adamw(float* w, const float* g, float* m, float* v, i64 n, double keep,
                                 double b1, double b2, double eps, double lr_bc1, double sqrt_bc2) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        double gi = g[i];
        double wi = (double)w[i] * keep;
        float mi = (float)(b1 * (double)m[i] + (1.0 - b1) * gi);
        float vi = (float)(b2 * (double)v[i] + (1.0 - b2) * gi * gi);
        m[i] = mi;
        v[i] = vi;
        double denom = sqrt((double)vi) / sqrt_bc2 + eps;
        w[i] = (float)(wi - lr_bc1 * (double)mi / denom);
    }
}
