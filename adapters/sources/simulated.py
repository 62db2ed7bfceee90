"""The simulated camera as a source: render frames and push them over the lossless link.

::

    src = SimulatedSource(sim_config, "ipc:///tmp/livesr.ipc", frames=200)
    summary = src.run()            # blocking; or src.start() ... src.join()

Frames come from :class:`livesr.sim.Microscope` (with its ground truth), rendered
straight into a free slot of the link's replay ring (``reserve``/``commit``, no copy),
stamped with their acquisition time and sent through a
:class:`livesr.stream._source_link.SourceLink` (credit, ACK, replay ring).  With
``pace=True`` frames are produced at the camera's ``interval_ms`` like a live camera
(an overflowing replay ring is then a reported gap and stops acquisition); with
``pace=False`` as fast as the link accepts them (``send`` waits for ring space).

Frame bank (``bank=N``): the first ``N`` frames are rendered before acquisition starts
and then sent over and over (frame ``i`` is bank frame ``i % N``, with its truth), so
the source keeps up with a fast camera: rendering a 256² frame costs about 3 ms of
Python (250-300 frames/s at most), copying one from the bank a few microseconds
(the end-to-end benchmark, ``livesr bench --e2e``, offers 256² at thousands of frames
per second this way).  The displacement jumps back at each wrap of the bank.

Acquisition stops after ``frames`` frames (0: until :meth:`SimulatedSource.stop` or
``stop_event``), when ``stop_event`` is set (e.g. the pipeline's ``stop_requested``
after a raw-store failure) or on a ring overflow; the link is then closed cleanly
(END, END_ACK) so the pipeline can account for every frame.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import zmq

from livesr.adapters.sources._base import ThreadedSource

__all__ = ["SimulatedSource"]

logger = logging.getLogger(__name__)


def _ring_frames(shape: tuple[int, ...], interval_ms: float) -> int:
    """Replay ring slots: 1 s of frames, >= 256, <= 512 MiB of uint16 frames."""
    frame_bytes = 2 * int(np.prod(shape))
    one_second = int(1000.0 / interval_ms) if interval_ms > 0 else 256
    return max(16, min(max(256, one_second), (512 * 2**20) // max(1, frame_bytes)))


class SimulatedSource(ThreadedSource):
    """Push simulated camera frames to a pipeline ingest.

    Parameters
    ----------
    sim_config : livesr.sim.SimConfig
        The simulated microscope.
    endpoint : str
        Ingest endpoint to connect to.
    frames : int
        Frames to acquire, >= 0 (0: until stopped).
    pace : bool
        Produce frames at the camera interval (True) or as fast as accepted (False).
    stream : str
        Stream id.
    ring_frames : int, optional
        Replay ring slots of the link (default: 1 s of frames at the camera's
        rate, at least 256, at most 512 MiB of frames): what the source holds while
        the pipeline has not acknowledged it.
    stop_event : threading.Event, optional
        Acquisition stops when it is set.
    context : zmq.Context, optional
        Shared context (required for ``inproc://``).
    send_timeout_s : float
        Unpaced mode: how long ``send`` may wait for a free ring slot.
    on_frame : callable, optional
        ``on_frame(index, frame, meta)`` after each frame is rendered, before it is
        sent (``meta`` has the true ``displacement_px``; e.g.
        :class:`~livesr.adapters.sources.sim_truth.SimTruthRecorder`).
    bank : int
        Pre-render this many frames and cycle them (0: render every frame).
    """

    thread_name = "livesr-sim-source"
    label = "simulated source"

    def __init__(
        self,
        sim_config: Any,
        endpoint: str,
        *,
        frames: int,
        pace: bool = True,
        stream: str = "sim",
        ring_frames: int | None = None,
        stop_event: threading.Event | None = None,
        context: zmq.Context[Any] | None = None,
        send_timeout_s: float = 30.0,
        on_frame: Any = None,
        bank: int = 0,
        curve: Any = None,
    ) -> None:
        if isinstance(bank, bool) or not isinstance(bank, int) or bank < 0:
            raise ValueError(
                f"SimulatedSource bank={bank!r}; expected an integer >= 0 (0 = render "
                "every frame)"
            )
        self.bank = bank
        #: CURVE client keys for a non-loopback endpoint (``--keys``)
        self.curve = curve
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
            raise ValueError(
                f"SimulatedSource frames={frames!r}; expected an integer >= 0 (0 = "
                "until stopped)"
            )
        super().__init__(stop_event)
        self.sim_config = sim_config
        self.endpoint = endpoint
        self.frames = frames
        self.pace = bool(pace)
        self.stream = stream
        self.ring_frames = None if ring_frames is None else int(ring_frames)
        self._ctx = context
        self._send_timeout = float(send_timeout_s)
        self._on_frame = on_frame
        self.frames_sent = 0

    def run(self) -> dict[str, Any]:
        """Acquire and send (blocking); returns the link summary."""
        from livesr.sim import Microscope
        from livesr.stream import SourceLink

        scope = Microscope(self.sim_config)
        cam = self.sim_config.camera
        shape = (int(scope.shape[0]), int(scope.shape[1]))
        interval = max(cam.interval_ms, scope.exposure_ms) / 1e3
        bank = self._render_bank(scope, shape)
        # the pipeline's "stop" message (run ended, disk full...) sets stop_event
        link = SourceLink(
            self._link_config(shape), context=self._ctx, stop_event=self.stop_event
        ).start()
        try:
            self._acquire(link, scope, shape, interval, bank)
        finally:
            self.summary = link.close(timeout=30.0)
        if self.stop_event.is_set():
            logger.warning(
                "simulated source stopped on request after %d frame(s)",
                self.frames_sent,
            )
        logger.info(
            "simulated source done: %d frames acquired",
            self.summary.get("frames_acquired", 0),
        )
        return self.summary

    def _link_config(self, shape: tuple[int, int]) -> Any:
        from livesr.stream import SourceLinkConfig

        cam = self.sim_config.camera
        return SourceLinkConfig(
            endpoint=self.endpoint,
            stream=self.stream,
            shape=shape,
            dtype="uint16",
            pixel_size_um=float(cam.pixel_size_um),
            ring_frames=self.ring_frames or _ring_frames(shape, cam.interval_ms),
            overflow="stop",
            curve=self.curve,
        )

    def _render_bank(
        self, scope: Any, shape: tuple[int, int]
    ) -> tuple[np.ndarray, list[Any]] | None:
        """The pre-rendered frames and their truth (``bank=N``), None without a bank."""
        if not self.bank:
            return None
        t_bank = time.monotonic()
        frames = np.empty((self.bank, *shape), dtype=np.uint16)
        truth = [scope.render_into(frames[k]) for k in range(self.bank)]
        logger.info(
            "simulated source: %d frames rendered into the bank in %.1f s",
            self.bank,
            time.monotonic() - t_bank,
        )
        return frames, truth

    def _acquire(
        self,
        link: Any,
        scope: Any,
        shape: tuple[int, int],
        interval: float,
        bank: tuple[np.ndarray, list[Any]] | None,
    ) -> None:
        """The acquisition loop: pace, render (or copy from the bank), send."""
        from livesr.stream import RingOverflowError

        meta_base = {
            "camera": "livesr-sim",
            "exposure_ms": float(scope.exposure_ms),
            "interval_ms": float(self.sim_config.camera.interval_ms),
        }
        buf = np.empty(shape, dtype=np.uint16)
        t0 = time.monotonic()
        i = 0
        while (self.frames == 0 or i < self.frames) and not self.stop_event.is_set():
            if self.pace:
                delay = t0 + i * interval - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    break
            timeout = 0.0 if self.pace else self._send_timeout
            try:
                slot = link.reserve(timeout=timeout)  # render straight into the ring
                target = buf if slot is None else slot
                if bank is None:
                    truth = scope.render_into(target)
                else:
                    np.copyto(target, bank[0][i % self.bank])
                    truth = bank[1][i % self.bank]
                t_acq = time.time()
                meta = {
                    **meta_base,
                    "ImageNumber": i if bank is not None else truth.index,
                    "displacement_px": [
                        float(truth.displacement_px[0]),
                        float(truth.displacement_px[1]),
                    ],
                }
                if self._on_frame is not None:
                    self._on_frame(truth.index, target, {**meta, "t_acq": t_acq})
                if slot is None:  # ring full: send() reports the overflow per the policy
                    link.send(buf, t_acq=t_acq, meta=meta, timeout=0.0)
                else:
                    link.commit(slot, t_acq=t_acq, meta=meta)
            except RingOverflowError as exc:
                logger.error("simulated source: %s", exc)
                break
            i += 1
            self.frames_sent = i
