## xcorr upsampled_peak_axes: kernels collapse (one work item per output entry)
## and profile (one work item per profile point), double precision.  Rendered by
## _opencl.py (strict_undefined): H, W (spectrum shape).
/* livesr xcorr refine: H=${H} W=${W} */
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#pragma OPENCL FP_CONTRACT OFF

/* out[k] = sum_l x[k*SK + l*SL] * phase[l], complex (double2) */
__kernel void collapse(__global const double2 *x, __global const double2 *phase,
                       const int axis, __global double2 *out)
{
    const int k = get_global_id(0);
    const int n_out = axis == 1 ? ${H} : ${W};
    const int n_sum = axis == 1 ? ${W} : ${H};
    if (k >= n_out) return;
    double re = 0.0, im = 0.0;
    for (int l = 0; l < n_sum; ++l) {
        const double2 a = axis == 1 ? x[k * ${W} + l] : x[l * ${W} + k];
        const double2 b = phase[l];
        re += a.x * b.x - a.y * b.y;
        im += a.x * b.y + a.y * b.x;
    }
    out[k] = (double2)(re, im);
}

/* out[i] = Re sum_k exp(2 pi i pos[i] f[k]) v[k] */
__kernel void profile(__global const double2 *v, __global const double *pos,
                      __global const double *freqs, const int n_freq, const int n,
                      __global double *out)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    double acc = 0.0;
    for (int k = 0; k < n_freq; ++k) {
        const double a = 2.0 * M_PI * pos[i] * freqs[k];
        acc += cos(a) * v[k].x - sin(a) * v[k].y;
    }
    out[i] = acc;
}
