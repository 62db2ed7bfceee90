## roberts_cross: one work item per pixel.  Rendered by _opencl.py
## (strict_undefined): H, W (image shape).
/* livesr roberts_cross: H=${H} W=${W} */
#pragma OPENCL FP_CONTRACT OFF

__kernel void roberts_cross(__global const float *im, __global float *gx,
                            __global float *gy)
{
    const int c = get_global_id(0);
    const int r = get_global_id(1);
    if (c >= ${W} || r >= ${H}) return;
    const int r0 = r > 0 ? r - 1 : 0;
    const int c0 = c > 0 ? c - 1 : 0;
    const float up = im[r0 * ${W} + c];
    const float left = im[r * ${W} + c0];
    const float diag = im[r0 * ${W} + c0];
    const float cur = im[r * ${W} + c];
    gx[r * ${W} + c] = ((up - left) + cur) - diag;
    gy[r * ${W} + c] = ((-up + left) + cur) - diag;
}
