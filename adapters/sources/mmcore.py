"""Micro-Manager (pymmcore-plus) frame source: sequence acquisition or an MDA.

:class:`MMCoreSource` takes frames from a pymmcore-plus core (``CMMCorePlus``
with a real Micro-Manager configuration, or ``UniMMCore`` with Python devices
such as :func:`livesr.sim.make_core`) and hands them on as
``(seq, frame, meta)``: ``frame`` a numpy array, ``meta`` a JSON-serialisable
dict. It is transport-agnostic: iterate over it, give it a callback
(:meth:`MMCoreSource.run`) or push into the lossless ZeroMQ link
(:meth:`MMCoreSource.push_to`).

Modes
-----
``"sequence"`` (default)
    ``startSequenceAcquisition(frames, 0, stop_on_overflow)`` (``frames=None``:
    continuous, until :meth:`MMCoreSource.close`), frames popped with
    ``popNextImageAndMD`` (oldest first). ``seq`` is the camera's
    ``ImageNumber``; a jump in it (the circular buffer overwrote frames a slow
    consumer had not taken) is recorded in :attr:`MMCoreSource.gaps` as the
    (first, last) seq range lost, so ``frames_delivered + frames_in_gaps ==
    frames_acquired`` always holds.
``"attach"`` (``attach=True``)
    Listen to a sequence acquisition someone else started (e.g. live mode of
    napari-micromanager, ``startContinuousSequenceAcquisition``): frames are
    popped from the circular buffer as in sequence mode, the acquisition is
    neither started nor stopped, and iteration ends when it stops (or on
    :meth:`MMCoreSource.close`). ``seq`` is the camera's ``ImageNumber``; frames
    before the first one taken are not counted; a jump (a continuous acquisition
    overwrote frames not yet taken) is a gap. Popping consumes the frames: a
    second consumer of ``popNextImage`` would miss them (live views use
    ``getLastImage``, which is unaffected).
``"mda"``
    ``core.run_mda(sequence)`` for a ``useq.MDASequence`` (or a YAML/JSON file
    read with ``useq.MDASequence.from_file``); frames come from the runner's
    ``frameReady`` signal through a bounded queue (``max_pending`` frames; a
    full queue drops the frame and records a gap). ``seq`` counts frames in
    acquisition order from 0.

Frame metadata (``meta``)
-------------------------
``seq``, ``ImageNumber``, ``camera``, ``pixel_size_um``, ``exposure_ms``,
``x_um``, ``y_um``, ``z_um``, ``t_acq`` (``time.time()`` of the frame's arrival
in the core, from ``TimeReceivedByCore``), ``elapsed_ms`` and ``mm`` (every
per-frame metadata key of pymmcore-plus as strings, e.g. the simulator's
``livesr_*`` ground truth); MDA frames add ``mda_index`` ({"t": 0, "z": 2, ...}).
In sequence mode the stage position is read from the core when the frame is
taken (stages do not report per-frame positions in sequence metadata); in MDA
mode it is the runner's recorded position.

>>> src = MMCoreSource(core, frames=300)       # doctest: +SKIP
>>> for seq, frame, meta in src: ...           # doctest: +SKIP
>>> src.gaps, src.frames_acquired              # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MMCoreSource"]

logger = logging.getLogger(__name__)

_END = object()


def _t_acq(md: Any) -> float:
    s = md.get("TimeReceivedByCore") if hasattr(md, "get") else None
    if s:
        try:
            return datetime.fromisoformat(str(s)).timestamp()
        except ValueError:
            pass
    return time.time()


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class MMCoreSource:
    """Frames from a pymmcore-plus core as ``(seq, frame, meta)``.

    Parameters
    ----------
    core : pymmcore_plus.CMMCorePlus
        A ready core (camera set). The source does not own it: :meth:`close`
        stops the acquisition it started, it does not shut the core down.
    frames : int or None
        Sequence mode: frames to acquire (>= 1), None for continuous acquisition.
    attach : bool
        Listen to the sequence acquisition already running on the core (mode
        ``"attach"``): it is neither started nor stopped here.
    mda : useq.MDASequence, str or Path, optional
        Run this MDA (a sequence object or a YAML/JSON file) instead of a
        sequence acquisition.
    stop_on_overflow : bool
        Sequence mode: stop the camera when the circular buffer is full
        (MMCore's ``stopOnOverflow``) instead of overwriting the oldest frames.
    poll_s : float
        Sleep between polls of an empty buffer, s (> 0).
    max_pending : int
        MDA mode: frames held for a slow consumer before drops, >= 1.
    timeout_s : float
        Iteration ends with a logged error if no frame arrives for this long
        while the acquisition claims to run, s (> 0).

    Attributes
    ----------
    frames_acquired : int
        Frames the camera produced (highest ``ImageNumber`` + 1 seen).
    frames_delivered : int
        Frames handed on.
    gaps : list of (int, int)
        Inclusive seq ranges lost to buffer overflow.
    overflowed : bool
        The core reported a buffer overflow (``isBufferOverflowed``).
    """

    def __init__(
        self,
        core: Any,
        *,
        frames: int | None = None,
        mda: Any = None,
        stop_on_overflow: bool = False,
        poll_s: float = 0.0005,
        max_pending: int = 1024,
        timeout_s: float = 10.0,
        attach: bool = False,
    ) -> None:
        if attach and (frames is not None or mda is not None):
            raise ValueError(
                "MMCoreSource(attach=True) listens to a running acquisition; frames "
                "and mda do not apply"
            )
        if frames is not None and (
            not isinstance(frames, (int, np.integer))
            or isinstance(frames, bool)
            or frames < 1
        ):
            raise ValueError(
                f"MMCoreSource frames={frames!r} is out of range; expected an integer "
                ">= 1, or None for continuous acquisition"
            )
        if mda is not None and frames is not None:
            raise ValueError(
                "MMCoreSource: give either frames (sequence acquisition) or mda, "
                "not both"
            )
        for name, v in (("poll_s", poll_s), ("timeout_s", timeout_s)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(
                    f"MMCoreSource {name}={v!r} is out of range; expected seconds > 0"
                )
        if not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(
                f"MMCoreSource max_pending={max_pending!r} is out of range; "
                "expected >= 1"
            )
        self._core = core
        self._frames = None if frames is None else int(frames)
        self._sequence = self._load_mda(mda) if mda is not None else None
        self._stop_on_overflow = bool(stop_on_overflow)
        self._poll_s = float(poll_s)
        self._timeout_s = float(timeout_s)
        self._pending: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self.frames_acquired = 0
        self.frames_delivered = 0
        self.gaps: list[tuple[int, int]] = []
        self.overflowed = False
        self._started = False
        self._closed = False
        self._next_seq = 0
        self._mda_seq = 0
        self._mda_thread: Any = None
        self._stop = threading.Event()
        self._attach = bool(attach)
        self._first_seq: int | None = None

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _load_mda(mda: Any) -> Any:
        import useq

        if isinstance(mda, useq.MDASequence):
            return mda
        if isinstance(mda, (str, Path)):
            path = Path(mda)
            if not path.is_file():
                raise FileNotFoundError(
                    f"MMCoreSource: MDA file {str(path)!r} does not exist; expected a "
                    "useq-schema YAML or JSON file"
                )
            return useq.MDASequence.from_file(path)
        raise TypeError(
            f"MMCoreSource mda must be a useq.MDASequence or a path, got "
            f"{type(mda).__name__}"
        )

    @property
    def mode(self) -> str:
        """``"sequence"`` or ``"mda"``."""
        if self._attach:
            return "attach"
        return "mda" if self._sequence is not None else "sequence"

    @property
    def frames_in_gaps(self) -> int:
        """Frames lost to buffer overflow (sum of the gap sizes)."""
        return sum(b - a + 1 for a, b in self.gaps)

    def start(self) -> MMCoreSource:
        """Start the acquisition (idempotent; iteration starts it too)."""
        if self._started:
            return self
        if self._closed:
            raise RuntimeError("MMCoreSource is closed; create a new one")
        self._started = True
        core = self._core
        if self._sequence is not None:
            ev = core.mda.events
            ev.frameReady.connect(self._on_frame)
            ev.sequenceFinished.connect(self._on_finished)
            self._mda_thread = core.run_mda(self._sequence)
            logger.info("MDA started: sizes %s", str(dict(self._sequence.sizes)))
        elif self._attach:
            if not core.isSequenceRunning():
                self._started = False
                raise RuntimeError(
                    "MMCoreSource(attach=True): no sequence acquisition is running on "
                    "this core; start one (e.g. live mode) or use attach=False"
                )
            logger.info(
                "attached to the running sequence acquisition of camera %s",
                core.getCameraDevice(),
            )
        else:
            if core.isSequenceRunning():
                raise RuntimeError(
                    "MMCoreSource: a sequence acquisition is already running on this "
                    "core; stop it first (core.stopSequenceAcquisition())"
                )
            if self._frames is None:
                core.startContinuousSequenceAcquisition(0)
            else:
                core.startSequenceAcquisition(self._frames, 0, self._stop_on_overflow)
            logger.info(
                "sequence acquisition started: %s frames, camera %s",
                self._frames if self._frames is not None else "continuous",
                core.getCameraDevice(),
            )
        return self

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[tuple[int, np.ndarray, dict[str, Any]]]:
        self.start()
        if self._sequence is not None:
            return self._iter_mda()
        return self._iter_sequence()

    def _iter_sequence(self) -> Iterator[tuple[int, np.ndarray, dict[str, Any]]]:
        core = self._core
        last_arrival = time.monotonic()
        while True:
            if core.getRemainingImageCount() > 0:
                frame, md = core.popNextImageAndMD()
                last_arrival = time.monotonic()
                yield self._deliver_sequence(frame, md)
                continue
            if self._attach and self._stop.is_set():
                break  # detach: the acquisition goes on without us
            if self._stop.is_set() or not core.isSequenceRunning():
                if core.getRemainingImageCount() == 0:
                    break
                continue
            if time.monotonic() - last_arrival > self._timeout_s:
                logger.error(
                    "no frame for %.1f s although the sequence acquisition runs; "
                    "giving up",
                    self._timeout_s,
                )
                break
            time.sleep(self._poll_s)
        if core.isBufferOverflowed():
            self.overflowed = True
        self._log_end()

    def _deliver_sequence(
        self, frame: np.ndarray, md: Any
    ) -> tuple[int, np.ndarray, dict[str, Any]]:
        core = self._core
        n = int(md.get("ImageNumber", self._next_seq))
        if self._first_seq is None:
            self._first_seq = n if self._attach else 0
            self._next_seq = self._first_seq
        if n > self._next_seq:
            self._gap(self._next_seq, n - 1)
        elif n < self._next_seq:  # a camera restarting its numbering: keep counting
            logger.warning(
                "ImageNumber went back from %d to %d; continuing from %d",
                self._next_seq - 1,
                n,
                self._next_seq,
            )
            n = self._next_seq
        self._next_seq = n + 1
        self.frames_acquired = max(self.frames_acquired, n + 1 - self._first_seq)
        try:
            x, y = core.getXYPosition()
        except Exception:  # no XY stage
            x, y = math.nan, math.nan
        try:
            z = core.getPosition()
        except Exception:  # no focus device
            z = math.nan
        mm = {str(k): str(v) for k, v in dict(md).items()}
        meta: dict[str, Any] = {
            "seq": n,
            "ImageNumber": n,
            "camera": mm.get("Camera", core.getCameraDevice()),
            "pixel_size_um": _num(core.getPixelSizeUm()),
            "exposure_ms": _num(core.getExposure()),
            "x_um": _num(x),
            "y_um": _num(y),
            "z_um": _num(z),
            "t_acq": _t_acq(md),
            "elapsed_ms": _num(mm.get("ElapsedTime-ms")),
            "mm": mm,
        }
        self.frames_delivered += 1
        return n, frame, meta

    def _gap(self, first: int, last: int) -> None:
        self.gaps.append((first, last))
        self.overflowed = True
        logger.warning(
            "frames %d..%d (%d) lost: the circular buffer overflowed (consumer too "
            "slow); reported as a gap",
            first,
            last,
            last - first + 1,
        )

    # -- MDA
    def _on_frame(self, img: np.ndarray, event: Any, meta: Any) -> None:
        seq = self._mda_seq
        self._mda_seq += 1
        try:
            self._pending.put_nowait((seq, img, event, meta))
        except queue.Full:
            self._gap(seq, seq)

    def _on_finished(self, sequence: Any) -> None:
        self._put_end()

    def _put_end(self) -> None:
        while True:
            try:
                self._pending.put(_END, timeout=0.1)
                return
            except queue.Full:
                if self._closed:
                    return

    def _iter_mda(self) -> Iterator[tuple[int, np.ndarray, dict[str, Any]]]:
        while True:
            try:
                item = self._pending.get(timeout=self._timeout_s)
            except queue.Empty:
                logger.error("no MDA frame for %.1f s; giving up", self._timeout_s)
                break
            if item is _END:
                break
            seq, img, event, fmeta = item
            yield self._deliver_mda(seq, img, event, fmeta)
        self._disconnect()
        self._log_end()

    def _deliver_mda(
        self, seq: int, img: np.ndarray, event: Any, fmeta: Any
    ) -> tuple[int, np.ndarray, dict[str, Any]]:
        fm = dict(fmeta) if fmeta is not None else {}
        pos = fm.get("position") or {}
        cam_md = fm.get("camera_metadata") or {}
        mm = {str(k): str(v) for k, v in dict(cam_md).items()}
        t = fm.get("runner_time_ms")
        meta: dict[str, Any] = {
            "seq": seq,
            "ImageNumber": int(mm["ImageNumber"]) if "ImageNumber" in mm else seq,
            "camera": fm.get("camera_device") or self._core.getCameraDevice(),
            "pixel_size_um": _num(fm.get("pixel_size_um")),
            "exposure_ms": _num(fm.get("exposure_ms")),
            "x_um": _num(pos.get("x")),
            "y_um": _num(pos.get("y")),
            "z_um": _num(pos.get("z")),
            "t_acq": _t_acq(mm) if "TimeReceivedByCore" in mm else time.time(),
            "elapsed_ms": _num(t),
            "mda_index": {str(k): int(v) for k, v in dict(event.index).items()},
            "mm": mm,
        }
        self.frames_acquired = max(self.frames_acquired, seq + 1)
        self.frames_delivered += 1
        return seq, img, meta

    def _disconnect(self) -> None:
        ev = self._core.mda.events
        for sig, slot in (
            (ev.frameReady, self._on_frame),
            (ev.sequenceFinished, self._on_finished),
        ):
            try:
                sig.disconnect(slot)
            except Exception:  # already disconnected
                pass

    def _log_end(self) -> None:
        logger.info(
            "%s source done: %d acquired, %d delivered, %d in %d gap(s)",
            self.mode,
            self.frames_acquired,
            self.frames_delivered,
            self.frames_in_gaps,
            len(self.gaps),
        )

    # ------------------------------------------------------------------ consumers
    def run(self, callback: Callable[[int, np.ndarray, dict[str, Any]], Any]) -> int:
        """Deliver every frame to ``callback(seq, frame, meta)``; returns the count.

        Blocks until the acquisition ends (or :meth:`close` from another thread).
        """
        n = 0
        for seq, frame, meta in self:
            callback(seq, frame, meta)
            n += 1
        return n

    def push_to(self, link: Any, *, timeout: float = 0.0) -> int:
        """Send every frame into a :class:`livesr.stream._source_link.SourceLink`.

        The link assigns its own seq; the camera's is kept in the header's meta
        (``meta["seq"]``), and a lost camera range is written into the next
        frame's meta as ``meta["gap_before"] = [first, last]`` (the link has no
        API to report a source-side gap yet). Returns the frames sent.
        """
        n = 0
        reported = 0
        for _seq, frame, meta in self:
            if len(self.gaps) > reported:
                meta["gap_before"] = [list(g) for g in self.gaps[reported:]]
                reported = len(self.gaps)
            link.send(frame, t_acq=meta["t_acq"], meta=meta, timeout=timeout)
            n += 1
        return n

    # ------------------------------------------------------------------ shutdown
    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the acquisition this source started (idempotent); the core stays up."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        core = self._core
        if not self._started:
            return
        if self._sequence is not None:
            if core.mda.is_running():
                core.mda.cancel()
                deadline = time.monotonic() + timeout_s
                while core.mda.is_running() and time.monotonic() < deadline:
                    time.sleep(0.005)
            self._disconnect()
        elif core.isSequenceRunning() and not self._attach:
            core.stopSequenceAcquisition()
        if core.isBufferOverflowed():
            self.overflowed = True

    def __enter__(self) -> MMCoreSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
