## temporal: one work item per map pixel.  Rendered by _opencl.py
## (strict_undefined): N (maps), NY, NX (map shape), MODE (0 avg, 1 var,
## 2 tac2), FP64 (0/1: double sums like the reference).
/* livesr temporal: N=${N} ${NY}x${NX} mode=${MODE} fp64=${FP64} */
#pragma OPENCL FP_CONTRACT OFF
% if FP64:
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t;
% else:
typedef float acc_t;
% endif
#define PLANE (${NY} * ${NX})

__kernel void temporal(__global const float *maps, __global float *out)
{
    const int i = get_global_id(0);
    if (i >= PLANE) return;
    acc_t s = 0, q = 0, last = 0;
% if MODE == 0:
    for (int t = 0; t < ${N}; ++t) s += (acc_t)maps[t * PLANE + i];
    out[i] = (float)(s / ${N});
% else:
    const acc_t first = (acc_t)maps[i];
    for (int t = 0; t < ${N}; ++t) {
        const acc_t y = (acc_t)maps[t * PLANE + i] - first;
        s += y;
%   if MODE == 1:
        q += y * y;
%   else:
        if (t > 0) q += last * y;
        last = y;
%   endif
    }
    const acc_t mean = s / ${N};
%   if MODE == 1:
    const acc_t v = q / ${N} - mean * mean;
    out[i] = (float)(v > 0 ? v : 0);
%   elif N < 2:
    out[i] = NAN;
%   else:
    const acc_t a = s - last;
    out[i] = (float)((q - mean * (a + s) + (${N} - 1) * mean * mean) / (${N} - 1));
%   endif
% endif
}
