# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Fused per-frame eSRRF map in Cython + OpenMP (``prange`` over output rows).

Same algorithm as the numba backend (see ``_weights`` for the precomputed
window table and the 2× unit-gradient grid): per output row, a float64
Catmull-Rom row pass of the frame; per sub-pixel phase, the window loop with
the table entry fixed and a vectorisable inner loop over the same-phase output
columns of the interior; a general per-pixel loop for border columns.  RGC and
weight sums are float32, accumulated in row-major ``(j, i)`` order.

OpenMP schedules are variants of one core (``_row``): ``static`` (default,
registered as ``cython``), ``guided`` and ``dynamic`` (``cython-guided``,
``cython-dynamic``); each ``prange`` needs its schedule as a literal,
so ``_run`` branches on it and every branch calls the same ``_row``.

The interior inner loop is C (``livesr_esrrf_accum``) with GCC target clones
(AVX-512F, AVX2, baseline) chosen at load time, since the package is built
without ``-march``.  Measured (2-vCPU shared machine, 256×256, M=5, R=1.5,
``tests/benchmarks/test_bench_esrrf_map.py``, medians of one quiet run): 0.018 s
per frame with every schedule, NanoPyx threaded 3.40 s in the same run (×194).
"""

from cython.parallel cimport parallel, prange
from libc.math cimport fabsf, pow, sqrt
from libc.stdlib cimport free, malloc

import threading

import numpy as np

from livesr.engine import implementation

cdef extern from *:
    """
    #include <math.h>
    /* Inner loop of the interior path: one window sample (table entry fixed)
       for nq same-phase output columns.  Written in C for `restrict` and, on
       x86-64 Linux with GCC, an AVX2 clone chosen at load time (the package is
       built without -march, i.e. SSE2 only, elsewhere); GCC vectorises it only
       without trapping math (select of a computed value).  No FMA contraction:
       the "avx2" target does not enable FMA, so results match numba's. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define LIVESR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define LIVESR_CLONES
    #endif
    #if defined(__GNUC__) && !defined(__clang__)
    /* the default -ftrapping-math stops GCC from if-converting the select */
    #define LIVESR_NOTRAP __attribute__((optimize("no-trapping-math")))
    #else
    #define LIVESR_NOTRAP
    #endif
    LIVESR_CLONES LIVESR_NOTRAP
    static void livesr_esrrf_accum(float *restrict acc,
                                   const float *restrict gx, const float *restrict gy,
                                   int nq, float w, float ux, float uy) {
        for (int k = 0; k < nq; k++) {
            float nx = gx[k], ny = gy[k];
            float v = (1.0f - fabsf(ny * ux - nx * uy)) * w;
            acc[k] += (nx * ux + ny * uy < 0.0f) ? v : 0.0f;
        }
    }
    """
    void livesr_esrrf_accum(float* acc, const float* gx, const float* gy,
                            int nq, float w, float ux, float uy) noexcept nogil

from livesr.kernels.esrrf_map._weights import check_inputs, frame_plan, grid_taps

__all__ = ["SCHEDULES", "esrrf_map_cython", "unit_gradients", "variant"]

SCHEDULES = ("static", "guided", "dynamic")


cdef struct Ctx:
    const float* frame
    int W
    const float* grad
    int GC
    const float* planes
    int GR
    int WQ
    const float* table
    int n
    const int* r_idx
    const double* r_wt
    const int* r_g
    const int* r_lo
    const int* r_hi
    const int* c_idx
    const double* c_wt
    const int* c_g
    const int* c_lo
    const int* c_hi
    const int* offset
    const int* qa
    const int* qb
    int M
    int margin
    double sens
    int apply_pow
    int weighted
    float* out
    int HM
    int WM


cdef inline float _finish(float rgc, float wsum, const Ctx* c) noexcept nogil:
    if wsum > 0:
        rgc = rgc / wsum
    else:
        rgc = 0
    if rgc < 0:
        rgc = 0
    elif c.apply_pow:
        rgc = <float>pow(<double>rgc, c.sens)
    return rgc


cdef inline float _intensity(const double* line, const Ctx* c, int x) noexcept nogil:
    cdef double q = 0
    cdef const int* ci = c.c_idx + 4 * x
    cdef const double* cw = c.c_wt + 4 * x
    q = q + line[ci[0]] * cw[0]
    q = q + line[ci[1]] * cw[1]
    q = q + line[ci[2]] * cw[2]
    q = q + line[ci[3]] * cw[3]
    return <float>q


cdef void _row(const Ctx* c, int y, double* line, float* acc) noexcept nogil:
    cdef int W = c.W, n = c.n, M = c.M
    cdef int a, col, px, q0, nq, k, j, i, o, par, base, gr, gc, x, qx, jlo, jhi
    cdef double p
    cdef float w, ux, uy, nx, ny, v, rgc, wsum
    cdef const float* t
    cdef const float* gxr
    cdef const float* gyr
    cdef const int* ri = c.r_idx + 4 * y
    cdef const double* rw = c.r_wt + 4 * y
    cdef int py = y % M
    # Catmull-Rom row pass (float64, NanoPyx's order)
    for col in range(W):
        p = 0
        p = p + c.frame[ri[0] * W + col] * rw[0]
        p = p + c.frame[ri[1] * W + col] * rw[1]
        p = p + c.frame[ri[2] * W + col] * rw[2]
        p = p + c.frame[ri[3] * W + col] * rw[3]
        line[col] = p
    jlo = c.r_lo[y]
    jhi = c.r_hi[y]
    # interior: per phase, table entry fixed, inner loop over q (vectorisable)
    for px in range(M):
        q0 = c.qa[px]
        nq = c.qb[px] - q0
        if nq <= 0:
            continue
        for k in range(nq):
            acc[k] = 0
        wsum = 0  # the same for every column of this phase: accumulated once
        for j in range(jlo, jhi):
            gr = c.r_g[y * n + j]
            for i in range(n):
                o = c.offset[px * n + i]
                par = o & 1
                base = q0 + (o >> 1)
                t = c.table + (((py * M + px) * n + j) * n + i) * 3
                w = t[0]
                ux = t[1]
                uy = t[2]
                wsum = wsum + w
                gxr = c.planes + ((par * 2 + 0) * c.GR + gr) * c.WQ + base
                gyr = c.planes + ((par * 2 + 1) * c.GR + gr) * c.WQ + base
                livesr_esrrf_accum(acc, gxr, gyr, nq, w, ux, uy)
        for k in range(nq):
            x = (q0 + k) * M + px
            rgc = _finish(acc[k], wsum, c)
            if c.weighted:
                rgc = rgc * _intensity(line, c, x)
            c.out[y * c.WM + x] = rgc
    # general path: border columns (partial or clamped windows)
    for x in range(c.margin, c.WM - c.margin):
        px = x % M
        qx = x // M
        if c.qa[px] <= qx < c.qb[px]:
            continue
        rgc = 0
        wsum = 0
        for j in range(jlo, jhi):
            gr = c.r_g[y * n + j]
            for i in range(c.c_lo[x], c.c_hi[x]):
                gc = c.c_g[x * n + i]
                t = c.table + (((py * M + px) * n + j) * n + i) * 3
                w = t[0]
                ux = t[1]
                uy = t[2]
                nx = c.grad[(gr * c.GC + gc) * 2]
                ny = c.grad[(gr * c.GC + gc) * 2 + 1]
                wsum = wsum + w
                if nx * ux + ny * uy < 0:
                    rgc = rgc + (<float>1.0 - fabsf(ny * ux - nx * uy)) * w
        rgc = _finish(rgc, wsum, c)
        if c.weighted:
            rgc = rgc * _intensity(line, c, x)
        c.out[y * c.WM + x] = rgc


cdef void _rows(const Ctx* c, int y0, int y1) noexcept nogil:
    """Rows ``y0 <= y < y1`` of one thread, with its own scratch buffers."""
    cdef double* line = <double*>malloc(c.W * sizeof(double))
    cdef float* acc = <float*>malloc(c.W * sizeof(float))
    cdef int y
    for y in range(y0, y1):
        _row(c, y, line, acc)
    free(line)
    free(acc)


cdef void _run(const Ctx* c, int schedule) noexcept nogil:
    cdef int y
    cdef int y0 = c.margin, y1 = c.HM - c.margin
    if schedule == 0:
        for y in prange(y0, y1, schedule="static"):
            _rows(c, y, y + 1)
    elif schedule == 1:
        for y in prange(y0, y1, schedule="guided"):
            _rows(c, y, y + 1)
    else:
        for y in prange(y0, y1, schedule="dynamic"):
            _rows(c, y, y + 1)


cdef void _grid_row(const float* frame, int W, int k, const int* ri, const double* rw,
                    const int* ci, const double* cw, int GC, double* tx, double* ty,
                    float* out, float* planes, int GR) noexcept nogil:
    """Unit gradients of grid row ``k`` (twin of ``_weights.normalised_gradients``);
    with ``planes`` not NULL, also row ``k`` of their parity split
    (``_weights.parity_planes``: ``(2, 2, GR, W + 1)``, the odd plane's last
    column 0), written here so that no second pass over the grid is needed."""
    cdef int a, c1, c0, r0, r1, b, c, l
    cdef int WQ = W + 1
    cdef float i01, i10, i00, i11, gx, gy, ux, uy
    cdef double wr, wc, qx, qy, fx, fy, norm, inv
    for c1 in range(W):
        tx[c1] = 0
        ty[c1] = 0
    for a in range(4):
        r1 = ri[4 * k + a]
        r0 = r1 - 1 if r1 > 0 else 0
        wr = rw[4 * k + a]
        for c1 in range(W):
            c0 = c1 - 1 if c1 > 0 else 0
            i01 = frame[r0 * W + c1]
            i10 = frame[r1 * W + c0]
            i00 = frame[r0 * W + c0]
            i11 = frame[r1 * W + c1]
            gx = ((i01 - i10) + i11) - i00
            gy = ((i10 - i01) + i11) - i00
            tx[c1] = tx[c1] + <double>gx * wr
            ty[c1] = ty[c1] + <double>gy * wr
    for l in range(GC):
        qx = 0
        qy = 0
        for b in range(4):
            c = ci[4 * l + b]
            wc = cw[4 * l + b]
            qx = qx + tx[c] * wc
            qy = qy + ty[c] * wc
        fx = <double><float>qx
        fy = <double><float>qy
        norm = sqrt(fx * fx + fy * fy)
        inv = 1.0 / norm if norm > 0 else 0.0
        ux = <float>(fx * inv)
        uy = <float>(fy * inv)
        out[2 * (k * GC + l)] = ux
        out[2 * (k * GC + l) + 1] = uy
        if planes != NULL:
            # planes[l % 2, component, k, l // 2]
            planes[((l & 1) * 2 * GR + k) * WQ + (l >> 1)] = ux
            planes[(((l & 1) * 2 + 1) * GR + k) * WQ + (l >> 1)] = uy
    if planes != NULL:
        planes[(2 * GR + k) * WQ + W] = 0
        planes[(3 * GR + k) * WQ + W] = 0


cdef void _grid(const float* frame, int W, int GR, const int* ri, const double* rw,
                const int* ci, const double* cw, int GC, float* out,
                float* planes) noexcept nogil:
    cdef int k
    cdef double* tx
    cdef double* ty
    with parallel():
        tx = <double*>malloc(W * sizeof(double))
        ty = <double*>malloc(W * sizeof(double))
        for k in prange(GR, schedule="static"):
            _grid_row(frame, W, k, ri, rw, ci, cw, GC, tx, ty, out, planes, GR)
        free(tx)
        free(ty)


def unit_gradients(frame, magnification, shift=(0.0, 0.0)):
    """Cython twin of ``_weights.normalised_gradients`` (OpenMP over grid rows).

    Returns
    -------
    numpy.ndarray
        ``(2H + 1, 2W + 1, 2)`` float32, equal to the numpy version to 1 ulp.
    """
    h, w = frame.shape
    ri, rw = grid_taps(h, magnification, float(shift[0]))
    ci, cw = grid_taps(w, magnification, float(shift[1]))
    out = np.empty((2 * h + 1, 2 * w + 1, 2), dtype=np.float32)
    cdef const float[:, ::1] f_v = frame
    cdef const int[:, ::1] ri_v = ri
    cdef const double[:, ::1] rw_v = rw
    cdef const int[:, ::1] ci_v = ci
    cdef const double[:, ::1] cw_v = cw
    cdef float[:, :, ::1] o_v = out
    cdef int W = w, GR = 2 * h + 1, GC = 2 * w + 1
    with nogil:
        _grid(&f_v[0, 0], W, GR, &ri_v[0, 0], &rw_v[0, 0], &ci_v[0, 0], &cw_v[0, 0], GC,
              &o_v[0, 0, 0], NULL)
    return out


#: per-thread scratch of the map (gradient grid and its parity planes), kept
#: between calls for the newest frame shape when it is at most this many bytes:
#: fresh multi-MB temporaries every frame cost ~1 300 page faults per 256² M=2
#: call (2 ms of a 5 ms call on a 2-core VM) whenever glibc has trimmed its heap
WORKSPACE_MAX_BYTES = 64 * 2**20

_scratch = threading.local()


def _workspace(h, w):
    """``(grad, planes)`` scratch for an ``(h, w)`` frame, reused by this thread."""
    key = (h, w)
    ws = getattr(_scratch, "ws", None)
    if ws is not None and ws[0] == key:
        return ws[1], ws[2]
    grad = np.empty((2 * h + 1, 2 * w + 1, 2), dtype=np.float32)
    planes = np.empty((2, 2, 2 * h + 1, w + 1), dtype=np.float32)
    if grad.nbytes + planes.nbytes <= WORKSPACE_MAX_BYTES:
        _scratch.ws = (key, grad, planes)
    else:
        _scratch.ws = None
    return grad, planes


def _zero_border(out, margin):
    """Zero the outer ``margin`` rows and columns of ``out`` (the map writes the rest)."""
    if margin <= 0:
        return
    out[:margin] = 0
    out[out.shape[0] - margin:] = 0
    out[:, :margin] = 0
    out[:, out.shape[1] - margin:] = 0


def esrrf_map_cython(frame, magnification, radius, sensitivity, intensity_weighting,
                     shift=(0.0, 0.0), schedule="static", out=None):
    """Per-frame eSRRF map (RGC × magnified intensity), Cython/OpenMP backend.

    Parameters
    ----------
    frame : numpy.ndarray
        ``(H, W)`` float32, C-contiguous.
    magnification : int
        Magnification ``M``.
    radius : float
        RGC radius ``R`` (input px).
    sensitivity : float
        Exponent applied to RGC when ``> 1``.
    intensity_weighting : bool
        Multiply RGC by the Catmull-Rom magnified frame.
    shift : tuple of float
        ``(dy, dx)`` sample displacement (input px); ``(0, 0)`` equals NanoPyx.
    schedule : {"static", "guided", "dynamic"}
        OpenMP schedule of the loop over output rows.
    out : numpy.ndarray, optional
        ``(H·M, W·M)`` float32 C-contiguous array to write the map into (e.g. one
        frame of a batch), instead of a new one.

    Returns
    -------
    numpy.ndarray
        ``(H·M, W·M)`` float32 (``out`` when given); the outer ``int(R·M)``
        pixels are 0.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    check_inputs(frame, magnification, radius)
    cdef int m = int(magnification)
    h, w = frame.shape
    plan = frame_plan(frame.shape, m, radius, shift)
    if out is None:
        out = np.empty((h * m, w * m), dtype=np.float32)
    elif (not isinstance(out, np.ndarray) or out.shape != (h * m, w * m)
            or out.dtype != np.float32 or not out.flags.c_contiguous
            or not out.flags.writeable):
        raise ValueError(
            f"out must be a writeable C-contiguous float32 array of shape "
            f"{(h * m, w * m)}; got {getattr(out, 'shape', type(out))}"
        )
    # the kernel writes every pixel inside the margin, so only the border is zeroed
    _zero_border(out, plan.consts.margin)
    grad, planes = _workspace(h, w)
    gri, grw = grid_taps(h, m, float(shift[0]))
    gci, gcw = grid_taps(w, m, float(shift[1]))
    rp, cp, runs = plan.rows, plan.cols, plan.runs

    cdef const float[:, ::1] f_v = frame
    cdef float[:, :, ::1] g_v = grad
    cdef float[:, :, :, ::1] p_v = planes
    cdef const int[:, ::1] gri_v = gri
    cdef const double[:, ::1] grw_v = grw
    cdef const int[:, ::1] gci_v = gci
    cdef const double[:, ::1] gcw_v = gcw
    cdef const float[:, :, :, :, ::1] t_v = plan.table
    cdef const int[:, ::1] ri_v = rp.cr_idx
    cdef const double[:, ::1] rw_v = rp.cr_wt
    cdef const int[:, ::1] rg_v = rp.g_idx
    cdef const int[::1] rlo_v = rp.lo
    cdef const int[::1] rhi_v = rp.hi
    cdef const int[:, ::1] ci_v = cp.cr_idx
    cdef const double[:, ::1] cw_v = cp.cr_wt
    cdef const int[:, ::1] cg_v = cp.g_idx
    cdef const int[::1] clo_v = cp.lo
    cdef const int[::1] chi_v = cp.hi
    cdef const int[:, ::1] off_v = runs.offset
    cdef const int[::1] qa_v = runs.qa
    cdef const int[::1] qb_v = runs.qb
    cdef float[:, ::1] o_v = out

    cdef Ctx c
    c.frame = &f_v[0, 0]
    c.W = w
    c.grad = &g_v[0, 0, 0]
    c.GC = grad.shape[1]
    c.planes = &p_v[0, 0, 0, 0]
    c.GR = planes.shape[2]
    c.WQ = planes.shape[3]
    c.table = &t_v[0, 0, 0, 0, 0]
    c.n = plan.table.shape[2]
    c.r_idx = &ri_v[0, 0]
    c.r_wt = &rw_v[0, 0]
    c.r_g = &rg_v[0, 0]
    c.r_lo = &rlo_v[0]
    c.r_hi = &rhi_v[0]
    c.c_idx = &ci_v[0, 0]
    c.c_wt = &cw_v[0, 0]
    c.c_g = &cg_v[0, 0]
    c.c_lo = &clo_v[0]
    c.c_hi = &chi_v[0]
    c.offset = &off_v[0, 0]
    c.qa = &qa_v[0]
    c.qb = &qb_v[0]
    c.M = m
    c.margin = plan.consts.margin
    c.sens = float(sensitivity)
    c.apply_pow = <float>sensitivity > 1
    c.weighted = 1 if intensity_weighting else 0
    c.out = &o_v[0, 0]
    c.HM = h * m
    c.WM = w * m
    cdef int sched = SCHEDULES.index(schedule)
    cdef int W = w, GR = 2 * h + 1, GC = 2 * w + 1
    # one GIL release for both passes (each re-acquisition can wait for another
    # thread's switch interval in a busy pipeline)
    with nogil:
        _grid(&f_v[0, 0], W, GR, &gri_v[0, 0], &grw_v[0, 0], &gci_v[0, 0],
              &gcw_v[0, 0], GC, &g_v[0, 0, 0], &p_v[0, 0, 0, 0])
        _run(&c, sched)
    return out


def variant(schedule):
    """Return ``esrrf_map_cython`` bound to one OpenMP schedule (same signature)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")

    def esrrf_map(frame, magnification, radius, sensitivity, intensity_weighting,
                  shift=(0.0, 0.0)):
        return esrrf_map_cython(frame, magnification, radius, sensitivity,
                                intensity_weighting, shift, schedule)

    esrrf_map.__name__ = esrrf_map.__qualname__ = f"esrrf_map_cython_{schedule}"
    esrrf_map.__doc__ = esrrf_map_cython.__doc__
    return esrrf_map


# ids: cython (static schedule), cython-guided, cython-dynamic
for _schedule in SCHEDULES:
    implementation(
        "esrrf_map", backend="cython", variant="" if _schedule == "static" else _schedule
    )(variant(_schedule))
