## rgc: one work item per output pixel.  Rendered by _opencl.py
## (strict_undefined): H, W (input shape), M, NOFF (window offsets), MARGIN,
## WEIGHTED (0/1), APPLY_POW (0/1), SENSITIVITY (float literal).
/* livesr rgc: H=${H} W=${W} M=${M} noff=${NOFF} margin=${MARGIN} */
#pragma OPENCL FP_CONTRACT OFF
#define M ${M}
#define HM (${H} * M)
#define WM (${W} * M)
#define G_COLS (2 * ${W} + 1)

__kernel void rgc(
    __global const float *gxn, __global const float *gyn,  /* (2H+1, 2W+1) unit */
    __global const int2 *offs,                              /* (NOFF,) (j, i) */
    __global const float4 *table,                           /* (NOFF, M, M) */
    __global const float *inten,                            /* (HM, WM) or 1x1 */
    __global float *out)                                    /* (HM, WM) */
{
    const int x = get_global_id(0);
    const int y = get_global_id(1);
    if (x >= WM || y >= HM) return;
    if (y < ${MARGIN} || y >= HM - ${MARGIN} || x < ${MARGIN} || x >= WM - ${MARGIN}) {
        out[y * WM + x] = 0.0f;
        return;
    }
    const int py = y % M, px = x % M;
    const int by = (2 * y + 1) / M, bx = (2 * x + 1) / M;
    float rgc = 0.0f, wsum = 0.0f;
    for (int n = 0; n < ${NOFF}; ++n) {
        const int2 o = offs[n];
        const int ty = by + o.x;
        if (ty <= 0 || ty > 2 * (HM - 1)) continue;
        const int tx = bx + o.y;
        if (tx <= 0 || tx > 2 * (WM - 1)) continue;
        const int iy = min(ty, 2 * ${H});
        const int ix = min(tx, 2 * ${W});
        const float4 t = table[(n * M + py) * M + px];
        wsum += t.x;
        const float gx = gxn[iy * G_COLS + ix];
        const float gy = gyn[iy * G_COLS + ix];
        const float dot = gx * t.y + gy * t.z;
        if (dot < 0.0f) {
            const float cross = gy * t.y - gx * t.z;
            rgc += (1.0f - fabs(cross)) * t.x;
        }
    }
    rgc = wsum > 0.0f ? rgc / wsum : 0.0f;
% if APPLY_POW:
    if (rgc >= 0.0f) rgc = pow(rgc, ${SENSITIVITY}f);
% endif
    if (rgc < 0.0f) rgc = 0.0f;
% if WEIGHTED:
    rgc *= inten[y * WM + x];
% endif
    out[y * WM + x] = rgc;
}
