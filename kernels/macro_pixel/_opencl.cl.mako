## macro_pixel: kernel phase_means (one work item per phase, M*M items) and
## kernel divide (one work item per pixel).  Rendered by _opencl.py
## (strict_undefined): M, NY, NX (slice shape), FP64 (0/1).
/* livesr macro_pixel: M=${M} ${NY}x${NX} fp64=${FP64} */
#pragma OPENCL FP_CONTRACT OFF
% if FP64:
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t;
% else:
typedef float acc_t;
% endif
#define M ${M}
#define ROWS (${NY} / M)
#define COLS (${NX} / M)
#define PLANE (${NY} * ${NX})

__kernel void phase_means(__global const float *img, const int slice,
                          __global float *cmap)
{
    const int ab = get_global_id(0);
    if (ab >= M * M) return;
    const int a = ab / M, b = ab % M;
    const float inv = (float)(ROWS * COLS);
    __global const float *im = img + (size_t)slice * PLANE;
    acc_t acc = 0;
    for (int p = 0; p < ROWS; ++p)
        for (int q = 0; q < COLS; ++q)
            acc += (acc_t)(im[(p * M + a) * ${NX} + q * M + b] / inv);
    cmap[(size_t)slice * M * M + ab] = (float)acc;
}

__kernel void divide(__global const float *img, __global const float *cmap,
                     __global float *out)
{
    const int x = get_global_id(0), y = get_global_id(1), s = get_global_id(2);
    if (x >= ${NX} || y >= ${NY}) return;
    const size_t i = (size_t)s * PLANE + y * ${NX} + x;
    const float c = cmap[s * M * M + (y % M) * M + x % M];
    out[i] = c != 0.0f ? img[i] / c : img[i];
}
