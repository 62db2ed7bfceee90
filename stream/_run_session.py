"""The end of a pipeline run, shared by ``livesr run`` and ``livesr replay``.

:func:`drain` waits for a source to end and the pipeline to process what it sent;
:func:`finish_run` writes the final line (where the results are) and gives the exit
status.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["drain", "finish_run", "result_text"]


def drain(pipe: Any, src: Any) -> None:
    """Wait until ``src`` (a started source) ended and ``pipe`` processed its frames.

    Returns without waiting for processing when the source never reported its end
    within 5 s of stopping (the pipeline's close accounts for the rest).
    """
    while src.join(0.2) is None:
        pass
    if pipe.source_ended.wait(5.0):
        while not pipe.wait(0.5):
            pass


def _ms(v: Any) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.0f}"


def result_text(summary: Mapping[str, Any]) -> str:
    """``"40/40 frames persisted, 0 in gaps; 7 images published, 0 skipped; latency
    p50 12 ms p99 40 ms; results in OUT/ (summary.json)"`` from a pipeline summary."""
    lat = summary["latency_ms"]
    return (
        f"{summary['frames_persisted']}/{summary['frames_acquired']} frames persisted, "
        f"{summary['frames_in_gaps']} in gaps; "
        f"{summary['windows_published']} images published, "
        f"{summary['windows_skipped']} skipped; "
        f"latency p50 {_ms(lat['p50'])} ms p99 {_ms(lat['p99'])} ms; "
        f"results in {summary['output']}/ (summary.json"
        + (", preview.png" if summary.get("preview") else "")
        + ")"
    )


def run_failures(summary: Mapping[str, Any]) -> list[str]:
    """Why a run is not complete (empty: every acquired frame persisted, processing
    ran to the end): each reason makes the command exit non-zero."""
    out = []
    if summary.get("error"):
        out.append(str(summary["error"]))
    if summary.get("processing_error"):
        out.append(f"processing failed: {summary['processing_error']}")
    gaps = summary.get("frames_in_gaps") or 0
    if gaps:
        out.append(
            f"{gaps} acquired frame(s) were lost before persistence (gaps: "
            f"{summary.get('gaps')})"
        )
    if summary.get("accounting_ok") is False:
        out.append(
            "frame accounting does not add up: acquired "
            f"{summary.get('frames_acquired')} != persisted "
            f"{summary.get('frames_persisted')} + in gaps {gaps}"
        )
    return out


def finish_run(
    prog: str,
    summary: Mapping[str, Any],
    status: Any,
    *,
    head: str = "",
    errors: Iterable[str | None] = (),
) -> int:
    """Write ``"<prog>: <head><result_text>"`` (and any error lines); the exit status.

    Parameters
    ----------
    prog : str
        ``"livesr run"``, ``"livesr replay"``.
    summary : mapping
        :meth:`livesr.stream._pipeline.Pipeline.close`'s summary.
    status : StatusReporter or None
        Writes the final line (None: straight to stderr).
    head : str
        Text before the counters (e.g. ``"frames 0..99 of FILE: "``).
    errors : iterable of str or None
        Other failures of the run (e.g. the source's); each one makes it fail.

    Returns
    -------
    int
        1 when the summary (:func:`run_failures`) or ``errors`` report a failure,
        else 0.
    """
    line = f"{prog}: {head}{result_text(summary)}"
    reasons = run_failures(summary)
    failed = bool(reasons)
    for reason in reasons:
        line += f"\n{prog}: error: {reason}"
    for err in errors:
        if err:
            line += f"\n{prog}: error: {err}"
            failed = True
    if status is not None:
        status.final(line)
    else:
        sys.stderr.write(line + "\n")
    return 1 if failed else 0
