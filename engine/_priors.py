"""Priors for an (implementation, input signature) with too few local runs.

Two sources, both keyed by ``(implementation id, signature key)``:

- local runs of *other* signatures on this machine (the benchmark store), usable
  when they have at least ``min_runs`` timings;
- the factory defaults shipped as package data (``factory_defaults.json``),
  measured on the developers' machine.

The most similar signature wins (:meth:`InputSignature.distance`; a factory entry
pays ``FACTORY_PENALTY``, i.e. another machine counts as one more octave of size
difference).  Its timings are scaled linearly by the pixel-count ratio, so a prior
from ``(50, 64, 64)`` for a ``(100, 64, 64)`` call predicts twice the time.  For an
id absent from the defaults, the entries of its backend (``opencl-wg16`` →
``opencl``) are used, as NanoPyx maps every ``*opencl*`` run type to ``opencl``.

Factory-defaults file format::

    {"format": 1, "machine": "free text",
     "kernels": {"<kernel>": {"<impl id>": {"<signature key>": [seconds, ...]}}}}
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from livesr.engine._types import InputSignature

logger = logging.getLogger(__name__)

FACTORY_PENALTY = 1.0
#: Signatures farther than this are not similar enough to borrow timings from.
MAX_DISTANCE = 12.0
DEFAULTS_RESOURCE = "factory_defaults.json"

Timings = Mapping[tuple[str, str], Sequence[float]]


@dataclass(frozen=True)
class Prior:
    """Scaled timings borrowed for a signature, and where they came from."""

    times: tuple[float, ...]
    source: str
    distance: float


@functools.cache
def _parse_key(key: str) -> InputSignature | None:
    try:
        return InputSignature.from_key(key)
    except (ValueError, KeyError, TypeError):
        return None


def find_prior(
    sig: InputSignature,
    impl: str,
    local: Timings,
    defaults: Timings,
    min_runs: int = 3,
) -> Prior | None:
    """The best prior for ``impl`` on ``sig``, or ``None`` (see the module docs)."""
    best: tuple[float, str, InputSignature, Sequence[float]] | None = None
    backend = impl.split("-", 1)[0]
    for source, table, penalty, need in (
        ("local", local, 0.0, min_runs),
        ("factory", defaults, FACTORY_PENALTY, 1),
    ):
        ids = [impl] if any(k[0] == impl for k in table) else [backend]
        for (iid, key), times in table.items():
            if iid not in ids or len(times) < need:
                continue
            if source == "local" and key == sig.key:
                continue  # those are the signature's own runs, not a prior
            ref = _parse_key(key)
            if ref is None:
                continue
            d = sig.distance(ref) + penalty
            if d <= MAX_DISTANCE and (best is None or d < best[0]):
                best = (d, source, ref, times)
    if best is None:
        return None
    d, source, ref, times = best
    scale = sig.size / max(1, _size(ref.bucket))
    label = f"{source} {ref} (distance {d:.2f}, ×{scale:.3g})"
    return Prior(tuple(t * scale for t in times), label, d)


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


@functools.cache
def _load_all() -> dict[str, dict[tuple[str, str], list[float]]]:
    try:
        text = (
            resources.files("livesr.engine")
            .joinpath(DEFAULTS_RESOURCE)
            .read_text("utf-8")
        )
    except (FileNotFoundError, OSError) as exc:
        logger.warning(
            "factory defaults %s not readable (%s); using none", DEFAULTS_RESOURCE, exc
        )
        return {}
    return parse_defaults(json.loads(text))


def parse_defaults(
    data: Mapping[str, object],
) -> dict[str, dict[tuple[str, str], list[float]]]:
    """Turn the JSON structure of a factory-defaults file into lookup tables."""
    if data.get("format") != 1:
        raise ValueError(f"factory defaults format={data.get('format')!r}: expected 1")
    out: dict[str, dict[tuple[str, str], list[float]]] = {}
    kernels = data.get("kernels", {})
    if not isinstance(kernels, Mapping):
        raise ValueError("factory defaults: 'kernels' must be an object")
    for kernel, impls in kernels.items():
        table: dict[tuple[str, str], list[float]] = {}
        for impl, sigs in impls.items():
            for key, times in sigs.items():
                table[(impl, key)] = [float(t) for t in times]
        out[kernel] = table
    return out


def load_factory_defaults(kernel: str) -> dict[tuple[str, str], list[float]]:
    """The shipped factory defaults of ``kernel`` (empty if it has none)."""
    return _load_all().get(kernel, {})
