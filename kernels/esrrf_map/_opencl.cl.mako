## Fused per-frame eSRRF map, one work item per output pixel.
## Rendered by _opencl.py with strict_undefined=True; never commit the output.
## Parameters: M (magnification), N (window width), H, W (input shape),
## MARGIN, APPLY_POW (0/1), SENSITIVITY (float literal), WEIGHTED (0/1),
## FP64 (0/1: accumulate the Catmull-Rom intensity in double like NanoPyx).
/* livesr esrrf_map: M=${M} N=${N} H=${H} W=${W} margin=${MARGIN} */
% if FP64:
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t;
% else:
typedef float acc_t;
% endif

#define M ${M}
#define N ${N}
#define H ${H}
#define W ${W}
#define HM (H * M)
#define WM (W * M)
#define GC (2 * W + 1)
#define MARGIN ${MARGIN}

__kernel void esrrf_map(
    __global const float *frame,     /* (H, W) */
    __global const float2 *grad,     /* (2H+1, 2W+1) unit gradients */
    __global const float4 *table,    /* (M, M, N, N) (w, ux, uy, 0) */
    __global const int *r_idx, __global const acc_t *r_wt,   /* (HM, 4) */
    __global const int *r_g,                                 /* (HM, N) */
    __global const int *r_lo, __global const int *r_hi,      /* (HM,) */
    __global const int *c_idx, __global const acc_t *c_wt,   /* (WM, 4) */
    __global const int *c_g,                                 /* (WM, N) */
    __global const int *c_lo, __global const int *c_hi,      /* (WM,) */
    __global float *out)             /* (HM, WM) */
{
    const int x = get_global_id(0);
    const int y = get_global_id(1);
    if (x >= WM || y >= HM) return;
    if (x < MARGIN || y < MARGIN || x >= WM - MARGIN || y >= HM - MARGIN) {
        out[y * WM + x] = 0.0f;   /* NanoPyx's OpenCL path leaves this unset */
        return;
    }
    const int py = y % M, px = x % M;
    __global const float4 *tab = table + (py * M + px) * N * N;
    float rgc = 0.0f, wsum = 0.0f;
    const int ilo = c_lo[x], ihi = c_hi[x];
    for (int j = r_lo[y]; j < r_hi[y]; j++) {
        __global const float2 *grow = grad + r_g[y * N + j] * GC;
        for (int i = ilo; i < ihi; i++) {
            const float4 t = tab[j * N + i];
            const float2 g = grow[c_g[x * N + i]];
            wsum += t.x;
            if (g.x * t.y + g.y * t.z < 0.0f) {
                rgc += (1.0f - fabs(g.y * t.y - g.x * t.z)) * t.x;
            }
        }
    }
    rgc = wsum > 0.0f ? rgc / wsum : 0.0f;
    if (rgc < 0.0f) {
        rgc = 0.0f;
    }
% if APPLY_POW:
    else {
        rgc = pow(rgc, ${SENSITIVITY}f);
    }
% endif
% if WEIGHTED:
    /* Catmull-Rom intensity at (y/M, x/M): NanoPyx's order (rows inner). */
    acc_t q = 0;
    for (int b = 0; b < 4; b++) {
        const int cb = c_idx[x * 4 + b];
        acc_t p = 0;
        for (int a = 0; a < 4; a++) {
            p += frame[r_idx[y * 4 + a] * W + cb] * r_wt[y * 4 + a];
        }
        q += p * c_wt[x * 4 + b];
    }
    rgc *= (float)q;
% endif
    out[y * WM + x] = rgc;
}
