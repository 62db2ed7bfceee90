"""OpenCL host helpers shared by the stage kernels' ``_opencl.py`` modules.

Imports nothing at module import: ``pyopencl`` and ``mako`` are imported by the
functions, so importing a stage's ``_opencl`` module never loads them (the engine's
OpenCL probe decides availability).

- :func:`queue` -- one command queue per process on
  ``pyopencl.create_some_context(interactive=False)`` (honours ``PYOPENCL_CTX``).
- :func:`build` -- render a Mako template (``strict_undefined=True``) with the given
  parameters and build it once per (context, rendered source); with
  ``LIVESR_DUMP_KERNELS=dir`` each rendered source is written to
  ``dir/<name>_<sha1[:12]>.cl``.
- :data:`LOCK` -- held while setting a cached kernel's arguments and enqueuing it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOCK = threading.RLock()
_PROGRAMS: dict[tuple[int, str], Any] = {}
_KERNELS: dict[tuple[int, str], Any] = {}


@functools.cache
def _template(path: str) -> Any:
    from mako.template import Template

    return Template(filename=path, strict_undefined=True)


@functools.lru_cache(maxsize=1)
def queue() -> Any:
    """The process-wide ``pyopencl.CommandQueue`` (created on first use).

    On the first device that compiles a kernel (``PYOPENCL_CTX`` picks one
    explicitly); ``RuntimeError`` when none does (e.g. PoCL on a CPU its LLVM does
    not know: "unknown target CPU 'generic'").
    """
    import pyopencl as cl

    from livesr.engine._backends import _devices_that_compile

    if os.environ.get("PYOPENCL_CTX"):
        ctx = cl.create_some_context(interactive=False)
    else:
        devices = [d for p in cl.get_platforms() for d in _safe_devices(p)]
        usable, why = _devices_that_compile(cl, devices)
        if not usable:
            raise RuntimeError(
                f"no OpenCL device can compile a kernel ({why or 'none found'})"
            )
        ctx = cl.Context([usable[0]])
    dev = ctx.devices[0]
    logger.info("opencl stages: device %r on %r", dev.name, dev.platform.name)
    return cl.CommandQueue(ctx)


def _safe_devices(platform: Any) -> list[Any]:
    try:
        return list(platform.get_devices())
    except Exception:  # a broken ICD must not hide the others
        return []


def has_fp64() -> bool:
    """Whether the queue's device supports double precision (``cl_khr_fp64``)."""
    return "cl_khr_fp64" in queue().device.extensions


def render(template_path: Path | str, **params: Any) -> str:
    """Render the Mako template at ``template_path`` with ``params`` (all required)."""
    return str(_template(str(template_path)).render(**params))


def build(name: str, template_path: Path | str, **params: Any) -> Any:
    """The built ``pyopencl.Program`` of the rendered template (cached).

    Parameters
    ----------
    name : str
        Short name for dumps and logs, e.g. ``"rgc"``.
    template_path : path
        The ``.cl.mako`` template beside the host module.
    **params
        Template parameters (Mako ``strict_undefined``: every name must be given).
    """

    source = render(template_path, **params)
    ctx = queue().context
    key = (id(ctx), source)
    with LOCK:
        program = _PROGRAMS.get(key)
        if program is None:
            program = build_source(ctx, name, source)
            _PROGRAMS[key] = program
    return program


def build_source(ctx: Any, name: str, source: str) -> Any:
    """Build OpenCL ``source`` on ``ctx`` (dumped first if ``LIVESR_DUMP_KERNELS`` set).

    Compiler diagnostics (NVIDIA's compiler prints informational output that pyopencl
    turns into a ``CompilerWarning``) are logged at DEBUG instead of raised as warnings.
    """
    import warnings

    import pyopencl as cl

    dump = os.environ.get("LIVESR_DUMP_KERNELS")
    if dump:
        digest = hashlib.sha1(source.encode()).hexdigest()[:12]
        path = Path(dump) / f"{name}_{digest}.cl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        logger.debug("%s opencl: wrote %s", name, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", cl.CompilerWarning)
        program = cl.Program(ctx, source).build()
    for w in caught:
        if issubclass(w.category, cl.CompilerWarning):
            logger.debug("%s opencl compiler: %s", name, w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return program


def to_device(a: Any) -> Any:
    """A read-only device buffer holding a copy of numpy array ``a``."""
    import numpy as np
    import pyopencl as cl

    mf = cl.mem_flags
    return cl.Buffer(
        queue().context,
        mf.READ_ONLY | mf.COPY_HOST_PTR,
        hostbuf=np.ascontiguousarray(a),
    )


def run(
    program: Any,
    kernel: str,
    global_size: tuple[int, ...],
    args: list[Any],
    outputs: list[tuple[Any, Any]],
) -> None:
    """Enqueue ``program.kernel`` over ``global_size``, copy ``outputs`` back, finish.

    ``outputs`` is a list of ``(host numpy array, device buffer)`` pairs.
    """
    import pyopencl as cl

    q = queue()
    with LOCK:  # a cached program's kernel holds its arguments
        k = _KERNELS.get((id(program), kernel))
        if k is None:  # one cl.Kernel per (program, name): pyopencl warns on re-fetch
            k = _KERNELS[(id(program), kernel)] = cl.Kernel(program, kernel)
        k.set_args(*args)
        cl.enqueue_nd_range_kernel(q, k, global_size, None)
    for host, dev in outputs:
        cl.enqueue_copy(q, host, dev)
    q.finish()


def empty(nbytes: int) -> Any:
    """A write-only device buffer of ``nbytes``."""
    import pyopencl as cl

    return cl.Buffer(queue().context, cl.mem_flags.WRITE_ONLY, max(int(nbytes), 1))
