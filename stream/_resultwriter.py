"""Result files of one run: ``sr.ome.zarr``, ``windows.csv``, ``drift.csv``.

One writer for the live pipeline and the Dask replay::

    out = ResultWriter(folder, pixel_size_um=0.1, magnification=5, interval_s=0.01,
                       stride=10, params=asdict(esrrf), background=True)
    out.add_window(index, first, last, image, stamps, shift, sigma, quality)
    out.add_drift(block, frame, center, dy, dx, sigma, rejected, psr)
    out.close(param_changes=[...], error=None)

Every published window gets its row in ``windows.csv``.  The SR images go to
``sr.ome.zarr`` within a disk budget: an eSRRF image is ``M**2`` times larger than
its frame in float32, so a fast camera produces SR data faster than any disk takes
it (256² at 2 000 frames/s, M=5, stride 10: 1.3 GB/s; 2048² at 100 frames/s: 4.2
GB/s, 126 GB in 30 s).  When the nominal SR data rate (image bytes x frame rate /
stride) exceeds ``sr_budget_mb_s``, every ``k``-th image is saved, ``k`` the smallest
that fits; the images not saved are still published (viewer, hooks, ``windows.csv``)
and can be recomputed from the raw frames, which are always persisted.  ``k`` and
the reason are recorded in ``summary.json`` (``sr_saved``) and in the SR store's
attributes; ``windows.csv`` says per image whether it was saved (``saved``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_SR_BUDGET_MB_S", "ResultWriter", "sr_save_every"]

logger = logging.getLogger(__name__)

#: SR image data written per second at most, MB/s (decimation beyond it)
DEFAULT_SR_BUDGET_MB_S = 200.0


def sr_save_every(
    image_bytes: int, frame_interval_s: float | None, stride: int, budget_mb_s: float
) -> int:
    """Save every ``k``-th SR image so the nominal SR data rate fits the budget.

    Parameters
    ----------
    image_bytes : int
        Bytes of one SR image (float32).
    frame_interval_s : float or None
        Nominal camera frame interval, s (None or <= 0: unknown, save every image).
    stride : int
        Frames between two images.
    budget_mb_s : float
        SR bytes per second the disk is given, MB/s (<= 0 or inf: no limit).

    Returns
    -------
    int
        ``k >= 1``.
    """
    if (
        frame_interval_s is None
        or not frame_interval_s > 0
        or not budget_mb_s > 0
        or math.isinf(budget_mb_s)
    ):
        return 1
    rate = image_bytes / (max(1, stride) * frame_interval_s)  # B/s
    return max(1, math.ceil(rate / (budget_mb_s * 1e6)))


class ResultWriter:
    """The result files of one run (see the module docstring).

    Parameters
    ----------
    output : path-like
        Run folder (exists).
    pixel_size_um : float
        Raw pixel size, um.
    magnification : int
        eSRRF magnification (SR pixel = raw pixel / M).
    interval_s : float
        Camera frame interval, s (the SR store's nominal time step is
        ``stride x interval_s x save_every``).
    stride : int
        Frames between two images.
    params : mapping
        eSRRF parameters to record in the SR store.
    background : bool
        Write SR images on a thread of their own (the live pipeline).
    sr_budget_mb_s : float
        SR disk budget, MB/s (:func:`sr_save_every`); ``inf``: save every image.
    nominal_interval_s : float, optional
        Frame interval to size the budget on (default ``interval_s``); None: unknown.
    """

    def __init__(
        self,
        output: str | Path,
        *,
        pixel_size_um: float,
        magnification: int,
        interval_s: float,
        stride: int,
        params: Mapping[str, Any],
        background: bool = False,
        sr_budget_mb_s: float = math.inf,
        nominal_interval_s: float | None = -1.0,
    ) -> None:
        from livesr.stream._results import DriftTable, WindowTable

        self.output = Path(output)
        self._pixel_size_um = float(pixel_size_um)
        self._m = int(magnification)
        self._interval_s = float(interval_s)
        self._stride = int(stride)
        self._params = dict(params)
        self._background = background
        self._budget = float(sr_budget_mb_s)
        self._nominal = interval_s if nominal_interval_s == -1.0 else nominal_interval_s
        self._sr: Any = None
        self.save_every = 1
        self.images_saved = 0
        self.windows = WindowTable(self.output / "windows.csv")
        self.drift = DriftTable(self.output / "drift.csv")

    @property
    def sr_path(self) -> Path | None:
        """The SR store, once the first image is written."""
        return None if self._sr is None else self._sr.path

    def _open_sr(self, shape: tuple[int, int]) -> None:
        from livesr.stream._results import SrSeriesWriter

        nbytes = int(shape[0]) * int(shape[1]) * 4
        self.save_every = sr_save_every(
            nbytes, self._nominal, self._stride, self._budget
        )
        if self.save_every > 1:
            logger.warning(
                "SR images of %dx%d at %.0f frames/s, stride %d exceed the SR disk "
                "budget of %.0f MB/s: every %d-th image is saved (all are published; "
                "raise [stream] sr_budget_mb_s to keep more)",
                shape[0],
                shape[1],
                1.0 / self._nominal if self._nominal else 0.0,
                self._stride,
                self._budget,
                self.save_every,
            )
        self._sr = SrSeriesWriter(
            self.output / "sr.ome.zarr",
            shape,
            pixel_size_um=self._pixel_size_um / self._m,
            interval_s=self._stride * self._interval_s * self.save_every,
            params=self._params,
            background=self._background,
            frame_interval_s=self._interval_s,
        )

    def add_window(
        self,
        index: int,
        first: int,
        last: int,
        image: np.ndarray,
        stamps: Mapping[str, float],
        shift: tuple[float, float],
        sigma: float,
        quality: float,
        *,
        resolution: Mapping[str, Any] | None = None,
        error_map: Mapping[str, Any] | None = None,
        frc: Mapping[str, Any] | None = None,
        t_first: float | None = None,
        t_last: float | None = None,
    ) -> bool:
        """Record one published image; returns whether it was saved to the SR store.

        ``resolution`` is the header's live resolution (``method, value_px,
        value_nm, resolved, image_index``) or None (no fresh estimate: empty cells);
        ``frc`` the same for the even/odd FRC.
        ``t_first`` / ``t_last``: acquisition times of the first / last frame, s (the
        SR store's ``image_frames``; None: unknown, e.g. a replay).
        """
        if self._sr is None:
            self._open_sr((int(image.shape[0]), int(image.shape[1])))
        save = index % self.save_every == 0
        if save:
            self._sr.append(
                image,
                window=index,
                first_frame=first,
                last_frame=last,
                t_first=t_first,
                t_last=t_last,
            )
            self.images_saved += 1
        self.windows.add(
            index, first, last, stamps, shift, sigma, quality, save,
            resolution=resolution,
            error_map=error_map,
            frc=frc,
        )
        return save

    def add_drift(
        self,
        block: int,
        frame: int,
        center: float,
        dy: float,
        dx: float,
        sigma: float,
        rejected: bool,
        psr: float,
    ) -> None:
        """One rolling drift estimate (``drift.csv``)."""
        self.drift.add(block, frame, center, dy, dx, sigma, rejected, psr)

    def flush(self) -> None:
        """Flush the CSV tables."""
        self.windows.flush()
        self.drift.flush()

    def report(self) -> dict[str, Any]:
        """What reached the SR store (``summary.json`` ``sr_saved``)."""
        return {
            "images": self.images_saved,
            "every": self.save_every,
            "budget_mb_s": self._budget if math.isfinite(self._budget) else None,
        }

    def close(
        self,
        *,
        param_changes: Sequence[Mapping[str, Any]] = (),
        error: str | None = None,
    ) -> None:
        """Finish the SR store (its final attributes) and close the tables."""
        try:
            if self._sr is not None:
                self._sr.close(param_changes=list(param_changes), error=error)
        finally:
            self.windows.close()
            self.drift.close()
