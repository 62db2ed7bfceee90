"""The napari viewer in its own process (``livesr run --viewer``), and its entry point.

::

    viewer = ViewerProcess(pipe.publish_endpoint, raw_endpoint=pipe.raw_publish_endpoint,
                           title="livesr run: out").start()     # returns at once
    viewer.closed          # True once the user closed the window (or it failed)
    viewer.close()         # ask it to quit (stdin EOF), reap it; terminate/kill late

    python -m livesr.adapters.sinks.napari_viewer ENDPOINT --raw RAW_ENDPOINT

Why a process
-------------
Qt, napari's drawing and the pipeline's Python threads share one GIL in one process:
on 2 cores a viewer there froze its own GUI for most of an acquisition and made the
pipeline skip windows.  In its own process the viewer only subscribes to the
pipeline's PUB sockets (results, newest raw frame), which never wait for it.

Child side (:func:`main`)
-------------------------
Opens :func:`~livesr.adapters.sinks.napari_viewer.run_viewer`, runs the Qt event
loop until the window is closed, or (``--quit-on-eof``) until its standard input
reaches end of file (the parent closed it, or died), or SIGTERM; then, after a short
grace for the final image, closes the window.  ``--stats-json PATH`` (or
``$LIVESR_VIEWER_STATS``) writes :class:`GuiProbe`'s record at exit: timer ticks,
the longest gap between them (how long the GUI could not repaint), draws, raw seqs.
The child logs to its stderr, which the parent forwards to its log (above the status
line), so napari's and Qt's messages never break into the terminal's status line.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

__all__ = [
    "NICE_ENV",
    "READY_LINE",
    "STATS_ENV",
    "GuiProbe",
    "ViewerProcess",
    "freeze_gui_objects",
    "main",
    "warm_up_layers",
]

logger = logging.getLogger(__name__)

#: environment variable naming the JSON file the viewer process writes its probe to
STATS_ENV = "LIVESR_VIEWER_STATS"
#: what the viewer process prints on its standard output once it is ready to draw
READY_LINE = "livesr-viewer: ready"
#: environment variable overriding the viewer process's niceness increment
NICE_ENV = "LIVESR_VIEWER_NICE"
#: seconds after the first SR image before gaps count (layers are created then)
_SETTLE_S = 1.0
#: seconds the child keeps drawing after it was asked to quit (the final image)
_QUIT_GRACE_S = 0.5
#: the viewer process's poll period, ms (the event loop stays this responsive)
_INTERVAL_MS = 33
#: drawn updates per second at most: a repaint costs ~25-30 ms of CPU with software
#: OpenGL (Xvfb, 2 cores): 25 raw + 8 SR repaints/s took 0.8 of a core, 10/s 0.45
_MAX_FPS = 10.0
#: drawn updates per second at least while the pipeline skips windows (the viewer
#: yields its CPU to the reconstruction: :mod:`livesr.adapters.sinks._draw_pacer`)
_MIN_FPS = 1.0
#: the viewer process's niceness increment: drawing (software OpenGL under Xvfb,
#: on a few cores) must never take the CPU the pipeline needs
_NICE = 10


# ------------------------------------------------------------------ child: the probe
class GuiProbe:
    """What the GUI thread did: timer ticks, their gaps, draws (one thread, no Qt).

    :meth:`tick` is called at the end of every timer tick of the sink
    (:attr:`LiveViewerSink.on_tick
    <livesr.adapters.sinks.napari_viewer.LiveViewerSink.on_tick>`).  A gap between
    ticks longer than the timer's interval is time the event loop could not run:
    no repaint, no input.
    """

    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self.t0 = time.perf_counter()
        self._last: float | None = None
        self._last_cpu = time.thread_time()
        self._last_draw: float | None = None
        self._settled_at: float | None = None
        self.ticks = 0
        self.gaps_ms: deque[float] = deque(maxlen=100_000)
        self.max_gap_ms = 0.0  # after the first SR image has settled
        self.max_gap_all_ms = 0.0  # from the first tick
        self.max_draw_gap_ms = 0.0
        self.gaps_over_100ms = 0
        self.draw_backoffs = 0
        self.max_poll_ms = 0.0  # the longest tick itself (decode + draw calls)
        self.poll_s = 0.0
        self.raw_seqs: list[int] = []
        self.sr_indices: list[int] = []
        # garbage-collector pauses of this (GUI) thread: a full collection of napari's
        # object graph stops the event loop like any other long call
        self.gc_pauses_ms: list[float] = [0.0, 0.0, 0.0]  # longest, per generation
        self.gc_s = 0.0
        self._gc_t0 = 0.0
        self._gc_in_gap_ms = 0.0
        self.long_gaps: list[dict[str, float]] = []  # the gaps over 100 ms: when, why
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
            return
        ms = (time.perf_counter() - self._gc_t0) * 1e3
        gen = info.get("generation", 2)
        self.gc_pauses_ms[gen] = max(self.gc_pauses_ms[gen], ms)
        self.gc_s += ms / 1e3
        self._gc_in_gap_ms += ms

    def close(self) -> None:
        """Stop watching the garbage collector (idempotent)."""
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def tick(self, drew: bool, spent_s: float, sink: Any) -> None:
        now = time.perf_counter()
        cpu = (
            time.thread_time()
        )  # of the GUI thread: busy (drawing) or waiting for a CPU
        self.ticks += 1
        if self._settled_at is not None and now >= self._settled_at:
            self.max_poll_ms = max(self.max_poll_ms, spent_s * 1e3)
            self.poll_s += spent_s
        if self._last is not None:
            gap = (now - self._last) * 1e3
            self.max_gap_all_ms = max(self.max_gap_all_ms, gap)
            if self._settled_at is not None and now >= self._settled_at:
                self.gaps_ms.append(gap)
                self.max_gap_ms = max(self.max_gap_ms, gap)
                self.gaps_over_100ms += gap > 100.0
                if gap > 100.0 and len(self.long_gaps) < 50:
                    self.long_gaps.append({
                        "at_s": round(now - self.t0, 3),
                        "gap_ms": round(gap, 1),
                        "gc_ms": round(self._gc_in_gap_ms, 1),
                        "tick_ms": round(spent_s * 1e3, 1),
                        "gui_cpu_ms": round((cpu - self._last_cpu) * 1e3, 1),
                    })  # fmt: skip
        self._last = now
        self._last_cpu = cpu
        self._gc_in_gap_ms = 0.0
        pacer = getattr(sink, "pacer", None)
        if pacer is not None:
            self.draw_backoffs = pacer.backoffs
        if not drew:
            return
        if self._last_draw is not None and self._settled_at is not None:
            self.max_draw_gap_ms = max(
                self.max_draw_gap_ms, (now - self._last_draw) * 1e3
            )
        self._last_draw = now
        raw, sr = sink.stats.last_raw, sink.stats.last
        if raw is not None and (not self.raw_seqs or raw.index != self.raw_seqs[-1]):
            self.raw_seqs.append(raw.index)
        if sr is not None and (not self.sr_indices or sr.index != self.sr_indices[-1]):
            self.sr_indices.append(sr.index)
            if self._settled_at is None:
                self._settled_at = now + _SETTLE_S

    def record(self, exit_reason: str) -> dict[str, Any]:
        """The probe as JSON-able numbers."""
        gaps = sorted(self.gaps_ms)
        p99 = gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))] if gaps else None
        raw = self.raw_seqs
        return {
            "interval_ms": self.interval_ms,
            "duration_s": round(time.perf_counter() - self.t0, 3),
            "ticks": self.ticks,
            "max_tick_gap_ms": round(self.max_gap_ms, 1),
            "p99_tick_gap_ms": round(p99, 1) if p99 is not None else None,
            "ticks_gap_over_100ms": self.gaps_over_100ms,
            "max_tick_gap_ms_incl_startup": round(self.max_gap_all_ms, 1),
            "max_draw_gap_ms": round(self.max_draw_gap_ms, 1),
            "max_tick_ms": round(self.max_poll_ms, 1),
            "ticks_busy_s": round(self.poll_s, 3),
            "sr_shown": len(self.sr_indices),
            "sr_last_index": self.sr_indices[-1] if self.sr_indices else None,
            "raw_shown": len(raw),
            "raw_first_seq": raw[0] if raw else None,
            "raw_last_seq": raw[-1] if raw else None,
            "raw_seqs_increasing": all(
                b > a for a, b in zip(raw, raw[1:], strict=False)
            ),
            "cpu_s": round(_cpu_seconds(), 2),
            "draw_backoffs": self.draw_backoffs,
            "gc_longest_ms_by_generation": [round(v, 1) for v in self.gc_pauses_ms],
            "gc_s": round(self.gc_s, 3),
            "long_gaps": self.long_gaps,
            "exit": exit_reason,
        }


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far, s."""
    t = os.times()
    return t.user + t.system


def warm_up_layers(viewer: Any) -> None:
    """Pay napari's first-use costs before the stream starts.

    The first Shapes layer of a process took 0.88 s to add on the 2-core VM (software
    OpenGL: imports, shaders), the next ones 0.12-0.13 s; the first Image layer 0.18
    s, then 0.09 s.  Adding one of each and removing them while the window opens
    moves that CPU out of the acquisition, where the SR and drift layers are made
    with the first image.
    """
    import numpy as np
    from qtpy.QtWidgets import QApplication

    shapes = viewer.add_shapes(
        [np.array([[0.0, 0.0], [1.0, 1.0]])], shape_type="path", name="livesr warm-up"
    )
    image = viewer.add_image(
        np.zeros((64, 64), np.float32), name="livesr warm-up image"
    )
    QApplication.processEvents()  # drawn once: the shaders are built
    viewer.layers.remove(shapes)
    viewer.layers.remove(image)
    QApplication.processEvents()


def freeze_gui_objects(viewer: Any, *, collect: bool) -> None:
    """Keep napari's long-lived objects out of the garbage collector's full passes.

    A full (generation 2) collection walks every tracked object: with napari, Qt
    wrappers and vispy loaded that took 170 ms on the 2-core VM, a stall of the GUI
    thread three times the repaint period.  :func:`gc.freeze` moves the objects alive
    now to a generation the collector never walks, so a full pass visits only what
    was created since.  Done once the window is up (``collect=True`` first: nothing
    is drawn yet) and again, without a collection, whenever a layer is added (the
    first SR image adds the SR, raw and drift layers).  Only in the viewer's own
    process: a napari the user runs keeps its collector as it is.
    """
    if collect:
        gc.collect()
    gc.freeze()
    if collect:  # the first call: follow the layers added later
        viewer.layers.events.inserted.connect(
            lambda _event: freeze_gui_objects(viewer, collect=False)
        )


# ------------------------------------------------------------------ child: entry point
def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m livesr.adapters.sinks.napari_viewer",
        description="show a livesr run's published results (and raw frames) in napari",
    )
    ap.add_argument("endpoint", help="the run's results endpoint (livesr run logs it)")
    ap.add_argument(
        "--raw", default=None, metavar="ENDPOINT", help="raw-frame endpoint"
    )
    ap.add_argument("--title", default="livesr", help="window title")
    ap.add_argument(
        "--interval-ms",
        type=int,
        default=_INTERVAL_MS,
        help=f"GUI poll period: at most one repaint per period ({_INTERVAL_MS})",
    )
    ap.add_argument(
        "--max-fps",
        type=float,
        default=_MAX_FPS,
        help=f"drawn updates per second at most, raw and SR together ({_MAX_FPS:g})",
    )
    ap.add_argument(
        "--min-fps",
        type=float,
        default=_MIN_FPS,
        help="drawn updates per second while the pipeline skips windows: the rate "
        f"halves at each new skip down to this, and recovers when it keeps up ({_MIN_FPS:g})",
    )
    ap.add_argument(
        "--nice",
        type=int,
        default=int(os.environ.get(NICE_ENV, _NICE)),
        help=f"lower this process's CPU priority by N, so that on a busy machine the "
        f"pipeline is served first (default ${NICE_ENV} or {_NICE}; 0: as the parent)",
    )
    ap.add_argument(
        "--announce-ready",
        action="store_true",
        help=f"print {READY_LINE!r} on standard output once the window is up and "
        "napari's first-use costs are paid (the run starts acquiring then)",
    )
    ap.add_argument(
        "--quit-on-eof",
        action="store_true",
        help="close the window when standard input ends (the parent process's handle)",
    )
    ap.add_argument(
        "--stats-json",
        default=os.environ.get(STATS_ENV),
        metavar="PATH",
        help=f"write the GUI probe here at exit (default ${STATS_ENV})",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run a viewer until its window closes (or it is asked to quit); 0 ok, 2 no GUI."""
    from livesr.adapters.sinks._draw_pacer import DrawPacer
    from livesr.adapters.sinks.napari_viewer import (
        run_viewer,
        viewer_unavailable_reason,
    )

    quit_asked = threading.Event()  # first: SIGTERM while napari loads is kept too
    signal.signal(signal.SIGTERM, lambda *_: quit_asked.set())
    args = _parse(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.nice > 0 and hasattr(os, "nice"):
        os.nice(args.nice)
    if (reason := viewer_unavailable_reason()) is not None:
        sys.stderr.write(f"livesr viewer: cannot open the viewer: {reason}\n")
        return 2
    import napari
    from qtpy.QtCore import QTimer

    if args.quit_on_eof:

        def watch_stdin() -> None:
            try:  # os.read: a daemon thread blocked in a buffered read aborts exit
                while os.read(sys.stdin.fileno(), 4096):
                    pass
            except (OSError, ValueError):
                pass
            quit_asked.set()

        threading.Thread(
            target=watch_stdin, name="livesr-viewer-eof", daemon=True
        ).start()
    sink = run_viewer(
        args.endpoint,
        title=args.title,
        block=False,
        raw_endpoint=args.raw,
        interval_ms=args.interval_ms,
    )
    if args.max_fps > 0:
        sink.pacer = DrawPacer(args.max_fps, min(args.min_fps, args.max_fps))
    probe = GuiProbe(args.interval_ms)
    sink.on_tick = lambda drew, spent: probe.tick(drew, spent, sink)
    exit_reason = ["window closed"]
    warm_up_layers(sink.viewer)
    freeze_gui_objects(sink.viewer, collect=True)
    if args.announce_ready:
        sys.stdout.write(READY_LINE + "\n")
        sys.stdout.flush()

    def check_quit() -> None:  # the GUI thread; also lets Python run signal handlers
        if quit_asked.is_set() and exit_reason[0] == "window closed":
            exit_reason[0] = "asked to quit"
            QTimer.singleShot(int(_QUIT_GRACE_S * 1e3), sink.viewer.close)

    watchdog = QTimer()
    watchdog.setInterval(50)
    watchdog.timeout.connect(check_quit)
    watchdog.start()
    try:
        napari.run()
    finally:
        watchdog.stop()
        sink.stop()
        probe.close()
        if args.stats_json:
            Path(args.stats_json).write_text(
                json.dumps(probe.record(exit_reason[0]), indent=1) + "\n"
            )
    return 0


# ------------------------------------------------------------------ parent side
class ViewerProcess:
    """Start and reap the viewer process of a run (see the module docstring).

    Parameters
    ----------
    endpoint : str
        Results endpoint (``Pipeline.publish_endpoint``).
    raw_endpoint : str, optional
        Raw-frame endpoint (``Pipeline.raw_publish_endpoint``).
    title : str
        Window title.
    env : mapping, optional
        Extra environment of the child (``LIVESR_VIEWER_STATS``...).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        raw_endpoint: str | None = None,
        title: str = "livesr",
        env: dict[str, str] | None = None,
    ) -> None:
        self.cmd = [
            sys.executable,
            "-m",
            "livesr.adapters.sinks.napari_viewer",
            endpoint,
            "--title",
            title,
            "--quit-on-eof",
            "--announce-ready",
        ]
        if raw_endpoint:
            self.cmd += ["--raw", raw_endpoint]
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._tail: deque[str] = deque(maxlen=20)
        self._reader: threading.Thread | None = None
        self._stdout_reader: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> ViewerProcess:
        """Start the child (returns at once; the window opens in a few seconds)."""
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env,
            start_new_session=True,  # Ctrl-C reaches the run, which closes the viewer
        )
        self._reader = threading.Thread(
            target=self._forward, name="livesr-viewer-log", daemon=True
        )
        self._reader.start()
        self._stdout_reader = threading.Thread(
            target=self._watch_ready, name="livesr-viewer-ready", daemon=True
        )
        self._stdout_reader.start()
        logger.info("viewer process %d started: %s", self.proc.pid, " ".join(self.cmd))
        return self

    def _watch_ready(self) -> None:
        """The child's stdout: :data:`READY_LINE` sets :attr:`ready`; set at its end
        too (the child exited: nobody waits for a window that will not come)."""
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            if raw.decode("utf-8", "replace").strip() == READY_LINE:
                self._ready.set()
        self._ready.set()

    @property
    def ready(self) -> bool:
        """Whether the window is up and ready to draw (or the child has exited)."""
        return self._ready.is_set()

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` s until :attr:`ready`; whether it is.

        ``livesr run --viewer`` starts acquiring only then: loading napari and its
        first layers costs seconds of CPU, which on a small machine made the first
        windows of the stream late (11 of 299 skipped on the 2-core VM).
        """
        return self._ready.wait(timeout_s)

    def _forward(self) -> None:
        """The child's stderr, line by line, into this process's log."""
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._tail.append(line)
                logger.info("viewer: %s", line)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def closed(self) -> bool:
        """Whether the child has exited (its window closed, or it failed)."""
        return self.proc is None or self.proc.poll() is not None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` s for the child; its exit code or None."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self, timeout_s: float = 10.0) -> int | None:
        """Ask the child to quit (end of its stdin), reap it within ``timeout_s``,
        else terminate (5 s) and kill it; its exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except OSError:  # it exited already
                pass
        code = self.wait(timeout_s)
        if code is None:
            logger.warning(
                "the viewer did not quit within %.0f s: terminating it", timeout_s
            )
            proc.terminate()
            code = self.wait(5.0)
        if code is None:
            proc.kill()
            code = self.wait(5.0)
        for reader in (self._reader, self._stdout_reader):
            if reader is not None:
                reader.join(5.0)
        for pipe in (proc.stderr, proc.stdout):
            if pipe is not None:
                pipe.close()
        if code not in (0, None):
            logger.error(
                "the viewer process exited with code %s:\n%s",
                code,
                "\n".join(self._tail),
            )
        return code
