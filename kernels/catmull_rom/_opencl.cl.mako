## catmull_rom: one work item per output sample (s, u).
## Rendered by _opencl.py (strict_undefined): K, L (output shape), W (input
## columns), FP64 (0/1: sum in double like the reference).
/* livesr catmull_rom: K=${K} L=${L} W=${W} fp64=${FP64} */
#pragma OPENCL FP_CONTRACT OFF
% if FP64:
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t;
% else:
typedef float acc_t;
% endif

__kernel void catmull_rom(
    __global const float *img,                            /* (H, W) */
    __global const int *ri, __global const acc_t *rw,     /* (K, 4) */
    __global const int *ci, __global const acc_t *cw,     /* (L, 4) */
    __global float *out)                                  /* (K, L) */
{
    const int u = get_global_id(0);
    const int s = get_global_id(1);
    if (u >= ${L} || s >= ${K}) return;
    acc_t q = 0;
    for (int b = 0; b < 4; ++b) {
        const int c = ci[4 * u + b];
        acc_t p = 0;
        for (int a = 0; a < 4; ++a)
            p += rw[4 * s + a] * (acc_t)img[ri[4 * s + a] * ${W} + c];
        q += p * cw[4 * u + b];
    }
    out[s * ${L} + u] = (float)q;
}
