"""Ground truth and photon count of a simulated acquisition, recorded as it runs.

:class:`SimTruthRecorder` is an ``on_frame(seq, frame, meta)`` callback for the
simulated sources (:class:`~livesr.adapters.sources.mmcore_push.MMCorePushSource`
over :func:`livesr.sim.make_core`, and
:class:`~livesr.adapters.sources.simulated.SimulatedSource`). It keeps, per frame,
the simulator's ground truth -- the true displacement of the sample in the image
(``drift - stage``, what a drift lock must hold at zero), the uncorrected drift
and the stage position -- and the detected photons
(``(ADU - offset) / gain / qe`` summed over the frame), and writes them to
``sim_truth.csv``::

    seq,t_acq,disp_dy_px,disp_dx_px,drift_dy_px,drift_dx_px,stage_x_um,stage_y_um,photons

(NaN where the source does not report a quantity: the stage-less
``SimulatedSource`` has no stage and no separate drift.)
"""

from __future__ import annotations

import csv
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TRUTH_COLUMNS", "SimTruthRecorder", "read_truth"]

TRUTH_COLUMNS = (
    "seq",
    "t_acq",
    "disp_dy_px",
    "disp_dx_px",
    "drift_dy_px",
    "drift_dx_px",
    "stage_x_um",
    "stage_y_um",
    "photons",
)


class SimTruthRecorder:
    """Per-frame ground truth and photons of a simulated source (see the module).

    Parameters
    ----------
    camera : livesr.sim.CameraConfig
        The simulated camera (offset, gain, qe, pixel size) for the photon count.
    """

    def __init__(self, camera: Any) -> None:
        self._offset = float(camera.offset)
        self._scale = 1.0 / (float(camera.gain) * float(camera.qe))
        self._px = float(camera.pixel_size_um)
        self._rows: list[tuple[float, ...]] = []
        self._lock = threading.Lock()
        self.photons = 0.0

    def __call__(self, seq: int, frame: np.ndarray, meta: dict[str, Any]) -> None:
        nan = math.nan
        photons = float(
            (frame.astype(np.float64).sum() - self._offset * frame.size) * self._scale
        )
        mm = meta.get("mm")
        if mm is not None:
            from livesr.sim import truth_from_metadata

            t = truth_from_metadata(mm)
            disp = t.displacement_px
            drift = (t.drift_um[0] / self._px, t.drift_um[1] / self._px)
            stage = t.stage_xy_um
        else:
            disp = tuple(meta.get("displacement_px", (nan, nan)))
            drift, stage = (nan, nan), (nan, nan)
        row = (
            float(seq),
            float(meta.get("t_acq", nan)),
            float(disp[0]),
            float(disp[1]),
            float(drift[0]),
            float(drift[1]),
            float(stage[0]),
            float(stage[1]),
            photons,
        )
        with self._lock:
            self._rows.append(row)
            self.photons += photons

    @property
    def frames(self) -> int:
        """Frames recorded."""
        return len(self._rows)

    @property
    def photons_per_frame(self) -> float:
        """Mean detected photons per recorded frame (NaN before the first)."""
        n = len(self._rows)
        return self.photons / n if n else math.nan

    def write(self, path: str | Path) -> Path:
        """Write ``sim_truth.csv`` (the columns of :data:`TRUTH_COLUMNS`)."""
        p = Path(path)
        with self._lock:
            rows = list(self._rows)
        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(TRUTH_COLUMNS)
            for r in rows:
                w.writerow([int(r[0]), *(repr(v) for v in r[1:])])
        return p


def read_truth(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``sim_truth.csv`` into float64 columns by name."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0]) != TRUTH_COLUMNS:
        raise ValueError(
            f"{path}: not a livesr sim_truth.csv (expected the header "
            f"{','.join(TRUTH_COLUMNS)})"
        )
    data = np.array(rows[1:], dtype=np.float64).reshape(-1, len(TRUTH_COLUMNS))
    return {name: data[:, i] for i, name in enumerate(TRUTH_COLUMNS)}
