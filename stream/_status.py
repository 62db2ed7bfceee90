"""The live status line (stderr, refreshed at most twice a second) and the final line.

::

    reporter = StatusReporter(snapshot_fn, enabled=None)   # None: on if a TTY
    reporter.start()
    ...
    reporter.stop()
    reporter.final("livesr: results in out/ (summary.json)")

``snapshot_fn()`` returns a mapping with the keys of :func:`format_status`.  When the
stream is not a TTY (or ``enabled=False``, ``--no-status``) nothing is drawn live; the
final line is always written.

Log lines print above the status line, never into it: while a reporter draws, the
command line's log handler (:mod:`livesr.stream._logging`) hands each record to
:meth:`StatusReporter.write_above` of the reporter drawing on its stream
(:func:`active_status`), which erases the line (``\\r`` + ``ESC [K``), writes the
record and redraws the line, all under the one lock every write of the line takes.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TextIO

__all__ = ["StatusReporter", "active_status", "format_status"]

#: erase from the cursor to the end of the line (ANSI, every terminal livesr runs in)
_ERASE = "\x1b[K"
_ACTIVE: list[StatusReporter] = []  # the reporters drawing now (started, enabled)
_ACTIVE_LOCK = threading.Lock()


def active_status(stream: Any) -> StatusReporter | None:
    """The reporter drawing a live status line on ``stream`` now, or None."""
    with _ACTIVE_LOCK:
        for rep in _ACTIVE:
            if rep._stream is stream:
                return rep
    return None


def _ms(x: Any) -> str:
    return (
        "-"
        if x is None or (isinstance(x, float) and not math.isfinite(x))
        else f"{x:.0f}"
    )


#: status-line words for why a decorrelation value is not shown (stream/_resolution.py)
_WHY = {
    "no-frc": "unconfirmed",
    "frc-unresolved": "FRC unresolved",
    "disagrees-with-frc": "FRC disagrees",
}


def _resolution(r: Mapping[str, Any] | None) -> str:
    """``res 123 nm`` (decorrelation, newest estimate, confirmed by its window's
    FRC); ``res unresolved (<why>)`` otherwise (a Nyquist-floor or unconfirmed value
    is never shown as a measurement); ``res -``."""
    if not r or r.get("value_px") is None:
        return "res -"
    if not r.get("resolved"):
        return f"res unresolved ({_WHY.get(r.get('reason') or '', 'Nyquist floor')})"
    nm = r.get("value_nm")
    return f"res {nm:.0f} nm" if nm is not None else f"res {r['value_px']:.2f} px"


def _frc(r: Mapping[str, Any] | None) -> str:
    """`` | frc 123 nm`` (even/odd FRC, newest estimate), unresolved flagged as for
    :func:`_resolution`; empty before the first estimate."""
    if not r:
        return ""
    if r.get("value_px") is None or not r.get("resolved"):
        return " | frc unresolved"
    nm = r.get("value_nm")
    return f" | frc {nm:.0f} nm" if nm is not None else f" | frc {r['value_px']:.2f} px"


def _frames(s: Mapping[str, Any]) -> str:
    """``frames 120 (100/s)``; with a known length (``frames_total`` > 0)
    ``frames 120/200 (100/s, ETA 1 s)``."""
    n, fps = int(s.get("frames_received", 0)), float(s.get("fps", 0.0) or 0.0)
    total = int(s.get("frames_total", 0) or 0)
    if total <= 0:
        return f"frames {n} ({fps:.0f}/s)"
    left = max(0, total - n)
    eta = f"{left / fps:.0f} s" if fps > 0 and math.isfinite(fps) else "-"
    return f"frames {n}/{total} ({fps:.0f}/s, ETA {eta})"


def format_status(s: Mapping[str, Any]) -> str:
    """One status line from a pipeline snapshot (``frames_total``: the run's length
    when known, for the ETA)."""
    impl = s.get("implementation") or {}
    impl_txt = ",".join(f"{k}={v}" for k, v in impl.items()) or "-"
    return (
        f"{_frames(s)} | "
        f"windows {s.get('windows_published', 0)} | "
        f"latency p50 {_ms(s.get('latency_p50_ms'))} "
        f"p99 {_ms(s.get('latency_p99_ms'))} "
        "ms | "
        f"skipped {s.get('windows_skipped', 0)} | gaps {s.get('frames_in_gaps', 0)} | "
        f"{_resolution(s.get('resolution'))}{_frc(s.get('frc'))} | "
        f"{impl_txt}"
    )


class StatusReporter:
    """Redraw a status line in place on a TTY (see the module docstring).

    Parameters
    ----------
    snapshot : callable
        Returns the current counters (a mapping, see :func:`format_status`).
    enabled : bool or None
        None: on when ``stream`` is a TTY.
    stream : file, optional
        Default ``sys.stderr``.
    interval_s : float
        Refresh period, >= 0.5 s (at most 2 refreshes per second).
    total_frames : int
        The run's length in frames when known (``--frames``, a replay's range): the
        line shows ``received/total`` and an ETA; 0: unknown.
    """

    def __init__(
        self,
        snapshot: Callable[[], Mapping[str, Any]],
        *,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        interval_s: float = 0.5,
        total_frames: int = 0,
    ) -> None:
        self._snapshot = snapshot
        self.total_frames = max(0, int(total_frames))
        self._stream = stream if stream is not None else sys.stderr
        is_tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self.enabled = is_tty if enabled is None else (bool(enabled) and is_tty)
        self._interval = max(0.5, float(interval_s))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._line = ""  # the line on the terminal now ("" when none)
        self._lock = threading.RLock()  # every write of the line or above it
        self.redraws = 0

    def start(self) -> StatusReporter:
        if self.enabled and self._thread is None:
            with _ACTIVE_LOCK:
                _ACTIVE.append(self)
            self._thread = threading.Thread(
                target=self._run, name="livesr-status", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.draw()

    def draw(self) -> None:
        """Redraw the line once (no-op when disabled)."""
        if not self.enabled:
            return
        snap = self._snapshot()  # outside the lock: it may log
        if self.total_frames and "frames_total" not in snap:
            snap = {**snap, "frames_total": self.total_frames}
        line = format_status(snap)
        with self._lock:
            self._stream.write("\r" + line + _ERASE)
            self._stream.flush()
            self._line = line
            self.redraws += 1

    def write_above(self, text: str) -> None:
        """Write ``text`` (whole lines) above the status line: erase the line, write,
        redraw it; nothing else writes in between."""
        with self._lock:
            if self._line:
                self._stream.write("\r" + _ERASE)
            self._stream.write(text if text.endswith("\n") else text + "\n")
            if self._line:
                self._stream.write(self._line + _ERASE)
            self._stream.flush()

    def stop(self) -> None:
        """Stop redrawing and clear the line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        with _ACTIVE_LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
        with self._lock:
            if self.enabled and self._line:
                self._stream.write("\r" + _ERASE)
                self._stream.flush()
                self._line = ""

    def final(self, text: str) -> None:
        """Write one final line (always, TTY or not)."""
        self._stream.write(text.rstrip("\n") + "\n")
        self._stream.flush()
