"""The processing thread's set-up: warm-up, window construction, memory and shape checks, the first batch."""

# mypy: disable-error-code="attr-defined,has-type"

from __future__ import annotations

import logging
import os
import time
from dataclasses import fields
from typing import Any, cast

import numpy as np

from livesr.stream._ring import RingBatch

logger = logging.getLogger("livesr.stream._processing")


class _SetupMixin:
    """Part of :class:`Processor` (see its module)."""

    expected: int | None
    _engine_stats0: tuple[Any, ...] | None

    # ------------------------------------------------------------------ warm-up
    def warm_up(self) -> None:
        """Load, time and compile the stages before acquisition (module docstring).

        Without a frame shape hint only the code paths are loaded (16x16); with it,
        the window for the stream is chosen (host or GPU-resident, by the engine's
        fastest batch map), made and warmed up at that shape for every batch size up
        to ``max_batch``, and kept for the stream.
        """
        from livesr.kernels import RollingDrift, SlidingEsrrf

        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        frames = rng.poisson(100.0, size=(2, 16, 16)).astype(np.uint16)
        sl = SlidingEsrrf(
            2, 1, frame_shape=(16, 16), frame_map=self.map, **self.window_kwargs()
        )
        sl.warm_up()  # every numba kernel of the window sums (the 16x16 push: serial)
        sl.push_many(frames, np.zeros((2, 2)))
        if self.config.drift.enabled:
            rd = RollingDrift(block=1)
            for f in frames:
                rd.push(f)
        import zarr  # noqa: F401  (the SR store's first image must not import it)

        from livesr.stream._resolution import warm_worker

        # the live resolution's worker process starts and plans now, not beside
        # the first images
        try:
            if self.resolution.enabled:
                warm_worker()
        except Exception as exc:  # the analysis reports its own failures later
            logger.warning("live resolution worker could not start: %s", exc)
        if self.frc is not None:
            # the FRC's first estimate imports scipy.signal in the FRC thread, holding
            # the GIL: the first windows of the quick start were published 50-570 ms
            # late on the 2-core VM (5 ms with the live analyses off)
            from livesr.stream._frc_live import frc_of_halves

            even, odd = rng.random((2, 64, 64), dtype=np.float32)
            frc_of_halves(even, odd, frames=2)

        shape = self._shape_hint
        if shape is not None:
            try:
                self._prepared = self._make_window(shape)
                self._prepared.warm_up(shape, self.max_batch)
                self._prepared.reset()
            except Exception as exc:  # the first real frame decides again
                logger.warning("the sliding window could not be warmed up: %s", exc)
                self._prepared = None
            if not self._user_map:
                self._time_candidates(shape)
            if self.config.drift.enabled:
                ys, xs = self.config.drift.region(shape)
                region = (ys.stop - ys.start, xs.stop - xs.start)
                synth = rng.poisson(100.0, size=(self.config.drift.block + 1, *region))
                rd = RollingDrift(block=self.config.drift.block)
                xp = self._drift_module(self._prepared, region)
                rd.push_many(
                    synth.astype(np.float32)
                    if xp is None
                    else xp.asarray(synth, dtype=xp.float32)
                )
        logger.info("processing stages warmed up in %.2f s", time.perf_counter() - t0)

    def _params(self) -> Any:
        from livesr.kernels._params import EsrrfParams

        names = {f.name for f in fields(EsrrfParams)}
        return EsrrfParams(
            **{k: v for k, v in self.window_kwargs().items() if k in names}
        )

    def _make_window(self, shape: tuple[int, int]) -> Any:
        """The sliding window for ``shape`` frames (host or GPU-resident)."""
        from livesr.kernels.framemap import new_window

        e = self.esrrf
        if self._user_map:
            prefer = "host"
        elif os.environ.get("LIVESR_DEVICE_WINDOW", "auto").lower() in ("off", "0"):
            prefer = "host"
        else:
            prefer = "auto"
        host_options = {}
        if getattr(self, "_window_budget", None):
            host_options["memory_budget_bytes"] = self._window_budget
        return new_window(
            self._params(),
            e.window,
            e.stride,
            (int(shape[0]), int(shape[1])),
            prefer=cast(Any, prefer),
            temporal=e.temporal,
            macro_pixel_correction=e.macro_pixel_correction,
            max_batch=self.max_batch,
            frame_map=self.map if self._user_map else None,
            **host_options,
        )

    def check_frame_shape(self, shape: tuple[int, int]) -> None:
        """Refuse frames too small to process, naming what to change."""
        rows, cols = (int(v) for v in shape)
        if min(rows, cols) < 3:
            raise ValueError(
                f"frames of {rows}x{cols} px are smaller than eSRRF's 3x3 gradient "
                "footprint; acquire a larger region (ROI)"
            )
        if self.config.drift.enabled and min(rows, cols) < 16:
            raise ValueError(
                f"frames of {rows}x{cols} px are smaller than drift estimation needs "
                "(16x16); acquire a larger region or turn drift correction off "
                "(--drift off, [drift] enabled = false)"
            )

    def check_window_memory(self, shape: tuple[int, int], budget_bytes: int) -> None:
        """Refuse a window whose smallest host state cannot fit the memory budget.

        Raises
        ------
        ValueError
            Naming the window, the frame shape and what to change.
        """
        from livesr.kernels.sliding import estimate_memory

        e = self.esrrf
        need = estimate_memory(
            "raw",
            window=e.window,
            frame_shape=(int(shape[0]), int(shape[1])),
            magnification=e.magnification,
            temporal=e.temporal,
        )
        if need > budget_bytes:
            raise ValueError(
                f"a window of {e.window} frames of {shape[0]}x{shape[1]} at "
                f"magnification {e.magnification} needs {need / 2**20:.0f} MiB even "
                f"storing raw frames; the memory budget is {budget_bytes / 2**20:.0f} "
                "MiB: lower --window or --magnification, or raise [stream] "
                "memory_budget_mb"
            )
        self._window_budget = int(budget_bytes)

    def _time_candidates(self, shape: tuple[int, int]) -> None:
        """Time (and so compile) the batch-map implementations the agent may choose.

        Stored timings come from other runs (other load, other versions); the
        candidates within 10x of the best known one are run at the camera's shape
        now, which also pays their first-call set-up (numba compiles for seconds)
        before acquisition instead of mid-stream.
        """
        from livesr.kernels.framemap import esrrf_map_batch_kernel

        e = self.esrrf
        if e.geometry != "nanopyx":
            return
        kernel = esrrf_map_batch_kernel()
        n = min(4, self.max_batch)
        frames = (
            np.random.default_rng(1).poisson(100.0, size=(n, *shape)).astype(np.float32)
        )
        args = (frames, e.magnification, e.radius, e.sensitivity, e.intensity_weighting)
        try:
            sig = kernel.signature(*args)
            avail = [i.id for i in kernel.implementations(include_unavailable=False)]
            stats = {i: kernel.agent.stats(sig.key, i) for i in avail}
            timed = {i: st.fast_avg for i, st in stats.items() if st is not None}
            if not timed:
                return
            best = min(timed.values())
            cands = [i for i, t in timed.items() if t <= 10 * best]
            t0 = time.perf_counter()
            kernel.benchmark(*args, repeats=2, impls=cands, shifts=np.zeros((n, 2)))
            logger.info(
                "esrrf_map_batch: %s timed at %dx%d before acquisition (%.2f s)",
                ", ".join(cands),
                shape[0],
                shape[1],
                time.perf_counter() - t0,
            )
        except Exception as exc:  # an implementation failing here must not stop us
            logger.warning("could not time esrrf_map_batch implementations: %s", exc)

    # ------------------------------------------------------------------ params
    def window_kwargs(self) -> dict[str, Any]:
        """The eSRRF settings in force, as sliding-window keyword arguments."""
        e = self.esrrf
        return {
            "magnification": e.magnification,
            "radius": e.radius,
            "sensitivity": e.sensitivity,
            "intensity_weighting": e.intensity_weighting,
            "macro_pixel_correction": e.macro_pixel_correction,
            "temporal": e.temporal,
            "geometry": e.geometry,
        }

    # ------------------------------------------------------------------ processing
    def _start(self, batch: RingBatch) -> None:
        kernel = self._map_kernel()
        stats = getattr(kernel, "stats", None)
        if stats is not None:
            self._engine_stats0 = (
                dict(stats.by_impl),
                stats.deadline_misses,
                stats.deadline_calls,
            )
        frame = batch.frames[0]
        self.sliding = self._new_sliding(frame.shape, frame)
        if self.config.drift.enabled:
            from livesr.kernels import RollingDrift

            block = self.config.drift.block_frames(self.interval_s)
            # a feedback loop that moves the stage needs a reference that does not
            # move: the origin re-estimate is for open-loop runs only
            fixed = {"origin_blocks": 0} if self.fixed_origin else {}
            self.drift = RollingDrift(
                block=block, max_drift=self.config.drift.max_drift_px, **fixed
            )
            if block != self.config.drift.block:
                logger.info(
                    "drift: %d frames per estimate (%.0f ms at %.0f frames/s)",
                    block,
                    block * (self.interval_s or 0) * 1e3,
                    1.0 / (self.interval_s or 1.0),
                )
        ys, xs = self.config.drift.region(frame.shape)
        self._drift_region = (ys, xs)
        self._drift_xp = self._drift_module(
            self.sliding, (ys.stop - ys.start, xs.stop - xs.start)
        )
        self.base = int(batch.seqs[0])
        self.expected = self.base

    @classmethod
    def _drift_module(cls, window: Any, region: tuple[int, int]) -> Any:
        """CuPy when the window runs on the GPU and the drift region is large (drift
        registers there too: the region is uploaded once more, a few MB per batch),
        else None (NumPy).  ``region`` is the (rows, cols) drift measures on."""
        if type(window).__name__ != "DeviceSlidingEsrrf":
            return None
        if int(region[0]) * int(region[1]) < cls.DRIFT_ON_DEVICE_MIN_PIXELS:
            return None
        try:
            import cupy
        except ImportError:  # pragma: no cover - a device window implies CuPy
            return None
        return cupy

    def _new_sliding(self, shape: tuple[int, int], frame: Any) -> Any:
        prepared, self._prepared = self._prepared, None
        if prepared is not None and tuple(shape) == tuple(self._shape_hint or ()):
            return prepared
        return self._make_window(shape)
