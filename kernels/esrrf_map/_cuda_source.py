"""CUDA source of the fused eSRRF map kernels (``esrrf_grad``, ``esrrf_rgc``) that
:mod:`._cupy` compiles with its ``-D`` constants (see its docstring for what they
compute).  Plain text: importing this imports nothing (no CuPy); the file name
matches no backend, so the engine does not take it for an implementation.
"""

from __future__ import annotations

__all__ = ["CUDA_SOURCE"]

CUDA_SOURCE = r"""
// Compile-time constants (-D): M N START H W MARGIN APPLY_POW SENS WEIGHTED
// BATCH BX BY TR TC
typedef unsigned long long idx_t;
#define HM (H * M)
#define WM (W * M)
#define GR (2 * H + 1)
#define GC (2 * W + 1)

__device__ __forceinline__ int half_base(int k) {
    // NanoPyx: (int)(2.0f * (float)((k + 0.5) / M))
    float c = (float)((k + 0.5) / (double)M);
    return (int)(2.0f * c);
}

// NanoPyx's Catmull-Rom kernel (float64, its evaluation order) and the taps of
// one sample coordinate along an axis of `size` pixels (catmull_rom_taps).
__device__ __forceinline__ double cubic(double x) {
    const double a = 0.5;
    double v = fabs(x);
    if (v < 1.0) return ((v * v) * ((v * (-a + 2)) + (a - 3))) + 1;
    if (v < 2.0)
        return (((((-a) * v) * v) * v) + (((5 * a) * v) * v)) - ((8 * a) * v) + (4 * a);
    return 0.0;
}

__device__ __forceinline__ void cr_taps(double r, int size, int* idx, double* wt) {
    long long r0 = (long long)floor(r - 0.5);
    bool outside = (r < 0.0) || (r >= (double)size);
    for (int a = 0; a < 4; a++) {
        long long nb = r0 - 1 + a;
        double w = cubic(r - ((double)nb + 0.5));
        wt[a] = (outside || nb < 0 || nb >= size) ? 0.0 : w;
        idx[a] = (int)(nb < 0 ? 0 : (nb >= size ? size - 1 : nb));
    }
}

// Sample coordinate of the 2x gradient grid (gradient_coords, before the shift).
__device__ __forceinline__ double grad_coord(int k, int size) {
    if (k < 2 * size) return (double)k / 2.0;
    return (double)((float)(2 * size * M - 1) / (float)(2 * M));
}

// Sample coordinate of output row/column v (axis_plan, before the shift).
__device__ __forceinline__ double out_coord(int v) {
    return (double)((float)v / (float)M);
}

__device__ __forceinline__ void roberts(const float* __restrict__ im, int r1, int c1,
                                        float* gx, float* gy) {
    int r0 = r1 > 0 ? r1 - 1 : 0;
    int c0 = c1 > 0 ? c1 - 1 : 0;
    float a = im[r0 * W + c1];   // I[r0, c1]
    float b = im[r1 * W + c0];   // I[r1, c0]
    float c = im[r0 * W + c0];   // I[r0, c0]
    float d = im[r1 * W + c1];   // I[r1, c1]
    *gx = __fsub_rn(__fadd_rn(__fsub_rn(a, b), d), c);
    *gy = __fsub_rn(__fadd_rn(__fsub_rn(b, a), d), c);
}

extern "C" __global__ void esrrf_grad(
    const float* __restrict__ frames,                 // (B, H, W)
    const int* __restrict__ gr_idx, const double* __restrict__ gr_wt,   // (GR, 4)
    const int* __restrict__ gc_idx, const double* __restrict__ gc_wt,   // (GC, 4)
    float2* __restrict__ grid,                        // (B, GR, GC)
    int nframes, const double* __restrict__ shifts,    // (B, 2) px
    int dev_taps)                                     // 0: use the tap tables
{
    int l = blockIdx.x * blockDim.x + threadIdx.x;
    int k = blockIdx.y * blockDim.y + threadIdx.y;
    int b = blockIdx.z;
    if (l >= GC || k >= GR || b >= nframes) return;
    const float* im = frames + (idx_t)b * H * W;
    int rix[4], cix[4];
    double rwt[4], cwt[4];
    if (dev_taps) {   // taps of this frame's shift, computed here (no host tables)
        cr_taps(grad_coord(k, H) + shifts[2 * b], H, rix, rwt);
        cr_taps(grad_coord(l, W) + shifts[2 * b + 1], W, cix, cwt);
    } else {
        for (int a = 0; a < 4; a++) {
            rix[a] = gr_idx[k * 4 + a]; rwt[a] = gr_wt[k * 4 + a];
            cix[a] = gc_idx[l * 4 + a]; cwt[a] = gc_wt[l * 4 + a];
        }
    }
    double qx = 0.0, qy = 0.0;
    for (int cb = 0; cb < 4; cb++) {
        int ci = cix[cb];
        double px = 0.0, py = 0.0;
        for (int ra = 0; ra < 4; ra++) {
            int ri = rix[ra];
            double wr = rwt[ra];
            float gx, gy;
            roberts(im, ri, ci, &gx, &gy);
            px += (double)gx * wr;
            py += (double)gy * wr;
        }
        double wc = cwt[cb];
        qx += px * wc;
        qy += py * wc;
    }
    double fx = (double)(float)qx, fy = (double)(float)qy;
    double norm = sqrt(fx * fx + fy * fy);
    double inv = norm > 0.0 ? 1.0 / norm : 0.0;
    grid[((idx_t)b * GR + k) * GC + l] =
        make_float2((float)(fx * inv), (float)(fy * inv));
}

// RGC sums over the window for all frames of the batch; the table entry of the
// thread's phase is loaded once per sample and reused for every frame.
template <bool FULL>
__device__ __forceinline__ void window(
    float2 (*tile)[TR][TC], const float4* __restrict__ tab, int ty, int tx,
    int jlo, int jhi, int ilo, int ihi, float* acc, float* wsum)
{
    for (int j = jlo; j < jhi; j++) {
#pragma unroll
        for (int i = 0; i < N; i++) {
            if (!FULL && (i < ilo || i >= ihi)) continue;
            const float4 t = __ldg(&tab[j * N + i]);
            *wsum += t.x;
#pragma unroll
            for (int b = 0; b < BATCH; b++) {
                const float2 g = tile[b][ty + j][tx + i];
                float v = (1.0f - fabsf(g.y * t.y - g.x * t.z)) * t.x;
                acc[b] += (g.x * t.y + g.y * t.z < 0.f) ? v : 0.f;
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(BX * BY) esrrf_rgc(
    const float* __restrict__ frames,                 // (B, H, W)
    const float2* __restrict__ grid,                  // (B, GR, GC)
    const float4* __restrict__ table,                 // (M, M, N, N): w, ux, uy, 0
    const int* __restrict__ r_idx, const double* __restrict__ r_wt,     // (HM, 4)
    const int* __restrict__ c_idx, const double* __restrict__ c_wt,     // (WM, 4)
    float* __restrict__ out,                          // mode 0: (B, HM, WM)
    float* __restrict__ ring,                         // mode 1: (K, HM, WM)
    float* __restrict__ acc_sum,                      // mode 1: (HM, WM)
    int nframes, int slot0, int nslots, int mode,
    const double* __restrict__ shifts, int dev_taps)  // (B, 2); 0: tables
{
    __shared__ float2 tile[BATCH][TR][TC];
    const int x0 = blockIdx.x * BX, y0 = blockIdx.y * BY;
    const int ky0 = half_base(y0) + START, kx0 = half_base(x0) + START;
    const int tid = threadIdx.y * BX + threadIdx.x;
    for (int e = tid; e < BATCH * TR * TC; e += BX * BY) {
        int b = e / (TR * TC), rem = e % (TR * TC);
        int tr = rem / TC, tc = rem % TC;
        int ky = min(max(ky0 + tr, 0), 2 * H);
        int kx = min(max(kx0 + tc, 0), 2 * W);
        tile[b][tr][tc] = b < nframes ? grid[((idx_t)b * GR + ky) * GC + kx]
                                      : make_float2(0.f, 0.f);
    }
    __syncthreads();
    const int x = x0 + threadIdx.x, y = y0 + threadIdx.y;
    if (x >= WM || y >= HM) return;
    const idx_t pix = (idx_t)y * WM + x;
    if (x < MARGIN || y < MARGIN || x >= WM - MARGIN || y >= HM - MARGIN) {
        if (mode == 0) {
            for (int b = 0; b < nframes; b++) out[(idx_t)b * HM * WM + pix] = 0.f;
        }
        return;   // mode 1: ring and sum were zeroed once and stay 0 here
    }
    const int by = half_base(y) + START, bx = half_base(x) + START;
    const int jlo = max(0, 1 - by), jhi = min(N, 2 * (HM - 1) - by + 1);
    const int ilo = max(0, 1 - bx), ihi = min(N, 2 * (WM - 1) - bx + 1);
    const int ty = by - ky0, tx = bx - kx0;
    const float4* tab = table + ((y % M) * M + (x % M)) * N * N;
    float acc[BATCH];
#pragma unroll
    for (int b = 0; b < BATCH; b++) acc[b] = 0.f;
    float wsum = 0.f;
    if (jlo == 0 && jhi == N && ilo == 0 && ihi == N) {
        window<true>(tile, tab, ty, tx, 0, N, 0, N, acc, &wsum);      // interior
    } else {
        window<false>(tile, tab, ty, tx, jlo, jhi, ilo, ihi, acc, &wsum);
    }
    float s = 0.f;
    if (mode == 1) s = acc_sum[pix];
#pragma unroll
    for (int b = 0; b < BATCH; b++) {
        if (b >= nframes) break;
        float rgc = wsum > 0.f ? acc[b] / wsum : 0.f;
        if (rgc < 0.f) rgc = 0.f;
#if APPLY_POW
        else rgc = (float)pow((double)rgc, (double)SENS);
#endif
#if WEIGHTED
        const float* im = frames + (idx_t)b * H * W;
        int rix[4], cix[4];
        double rwt[4], cwt[4];
        if (dev_taps) {
            cr_taps(out_coord(y) + shifts[2 * b], H, rix, rwt);
            cr_taps(out_coord(x) + shifts[2 * b + 1], W, cix, cwt);
        } else {
            for (int a = 0; a < 4; a++) {
                rix[a] = r_idx[y * 4 + a]; rwt[a] = r_wt[y * 4 + a];
                cix[a] = c_idx[x * 4 + a]; cwt[a] = c_wt[x * 4 + a];
            }
        }
        double q = 0.0;
        for (int cb = 0; cb < 4; cb++) {
            int ci = cix[cb];
            double p = 0.0;
            for (int ra = 0; ra < 4; ra++) {
                p += (double)im[rix[ra] * W + ci] * rwt[ra];
            }
            q += p * cwt[cb];
        }
        rgc *= (float)q;
#endif
        if (mode == 0) {
            out[(idx_t)b * HM * WM + pix] = rgc;
        } else {
            int slot = (slot0 + b) % nslots;
            float* r = ring + (idx_t)slot * HM * WM + pix;
            s += rgc - *r;
            *r = rgc;
        }
    }
    if (mode == 1) acc_sum[pix] = s;
}
"""
