"""``livesr sweep``: choose eSRRF radius and sensitivity from a recording (QnR).

    livesr sweep movie.ome.tif --magnification 4 --radius 1 1.5 2 \\
        --sensitivity 1 2 4 --output sweep_out

Reads every format ``livesr replay`` reads (OME-TIFF, TIFF, OME-Zarr, .npy),
frame by frame, runs :func:`livesr.kernels.esrrf_sweep` (NanoPyx's QnR sweep) and
writes into ``--output``:

- ``sweep.csv``: sensitivity, radius, rsp, resolution_px (SR pixels, NanoPyx's
  number), resolution_nm, qnr; one row per pair;
- ``sweep.png``: the QnR heat map;
- ``error_map.tif``: the SQUIRREL error map of the best pair (float32, SR grid),
  with ``error_map.json`` (RSE, RSP, gain, offset, blur);

then prints the best pair and the ``livesr run`` flags that use it.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

NAME = "sweep"
HELP = "choose eSRRF radius and sensitivity from a recording (QnR sweep, as NanoPyx)"

logger = logging.getLogger(__name__)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number > 0, got {text!r}"
        ) from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return v


def _sensitivity(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a sensitivity >= 0, got {text!r}"
        ) from None
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a sensitivity >= 0, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1, got {text!r}"
        ) from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE", help="recording (.ome.tif, .tif, .zarr, .npy)"
    )
    parser.add_argument(
        "--magnification",
        type=_positive_int,
        default=2,
        help="eSRRF magnification (default 2)",
    )
    parser.add_argument(
        "--radius",
        type=_positive_float,
        nargs="+",
        default=[1.0, 1.5],
        help="radii to try, input px (default 1 1.5)",
    )
    parser.add_argument(
        "--sensitivity",
        type=_sensitivity,
        nargs="+",
        default=[1.0, 2.0],
        help="sensitivities to try (default 1 2)",
    )
    parser.add_argument(
        "--temporal",
        choices=("avg", "var"),
        default="avg",
        help="temporal statistic (default avg)",
    )
    parser.add_argument(
        "--decorr",
        action="store_true",
        help="resolution by decorrelation analysis instead of odd/even FRC",
    )
    parser.add_argument(
        "--frames-per-batch",
        type=_positive_int,
        default=None,
        help="score per batch of N frames and average (NanoPyx n_frames)",
    )
    parser.add_argument(
        "--frames", type=_positive_int, default=None, help="use only the first N frames"
    )
    parser.add_argument(
        "--pixel-size",
        type=_positive_float,
        default=None,
        help="camera pixel size in um (default: from the file)",
    )
    parser.add_argument("--output", type=Path, required=True, help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _error(message: str, code: int = 1) -> int:
    sys.stderr.write(f"livesr sweep: error: {message}\n")
    return code


class _Frames:
    """A Recording seen as a (t, H, W) array-like read frame by frame."""

    ndim = 3

    def __init__(self, rec: Any, n: int) -> None:
        self._rec = rec
        self.shape = (n, rec.shape[1], rec.shape[2])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        return self._rec.read(int(i))


def write_csv(path: Path, res: Any, pixel_size_nm: float) -> None:
    """sweep.csv: one row per (sensitivity, radius)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["sensitivity", "radius", "rsp", "resolution_px", "resolution_nm", "qnr"]
        )
        for i, s in enumerate(res.sensitivities):
            for j, r in enumerate(res.radii):
                px = float(res.resolution[i, j])
                nm = px * pixel_size_nm / res.magnification
                w.writerow(
                    [
                        f"{s:g}",
                        f"{r:g}",
                        f"{float(res.rsp[i, j]):.6f}",
                        f"{px:.6f}",
                        f"{nm:.3f}",
                        f"{float(res.qnr[i, j]):.6f}",
                    ]
                )


def write_png(path: Path, res: Any) -> None:
    """sweep.png: QnR heat map, sensitivities down, radii across."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(
        figsize=(1.2 + 0.9 * len(res.radii), 1.2 + 0.7 * len(res.sensitivities))
    )
    try:
        im = ax.imshow(
            res.qnr, cmap="plasma", vmin=0, vmax=max(1e-6, float(res.qnr.max()))
        )
        ax.set_xticks(range(len(res.radii)), labels=[f"{r:g}" for r in res.radii])
        ax.set_yticks(
            range(len(res.sensitivities)), labels=[f"{s:g}" for s in res.sensitivities]
        )
        for i in range(len(res.sensitivities)):
            for j in range(len(res.radii)):
                ax.text(
                    j,
                    i,
                    f"{float(res.qnr[i, j]):.2f}",
                    ha="center",
                    va="center",
                    color="w",
                )
        bi, bj = res.best_index
        ax.add_patch(
            plt.Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, ec="w", lw=2)
        )
        ax.set_xlabel("radius (px)")
        ax.set_ylabel("sensitivity")
        ax.set_title(f"QnR, M={res.magnification}, {res.temporal.upper()}")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def write_error_map(folder: Path, res: Any) -> Path:
    """error_map.tif (+ error_map.json) of the best pair; .npy without tifffile."""
    from livesr.kernels.squirrel import error_map

    bi, bj = res.best_index
    em = error_map(res.raw_mean, res.images[bi, bj], magnification=res.magnification)
    try:
        import tifffile
    except ImportError:
        path = folder / "error_map.npy"
        np.save(path, em.error_map)
    else:
        path = folder / "error_map.tif"
        tifffile.imwrite(path, em.error_map)
    meta = {
        "sensitivity": res.best[0],
        "radius": res.best[1],
        "rse": em.rse,
        "rsp": em.rsp,
        "alpha": em.alpha,
        "beta": em.beta,
        "sigma_sr_px": em.sigma,
    }
    (folder / "error_map.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def run(args: argparse.Namespace) -> int:
    from livesr.kernels.sweep import esrrf_sweep
    from livesr.stream._rawread import (
        CorruptRecordingError,
        RecordingError,
        open_recording,
    )

    out: Path = args.output
    if out.exists() and not out.is_dir():
        return _error(f"--output {out} exists and is not a folder", 2)
    if out.is_dir() and (out / "sweep.csv").exists():
        return _error(
            f"--output {out} already holds a sweep.csv; choose a new folder", 2
        )
    try:
        rec = open_recording(args.file, pixel_size_um=args.pixel_size)
    except FileNotFoundError:
        return _error(f"{args.file}: no such file or folder", 2)
    except (RecordingError, CorruptRecordingError) as err:
        return _error(str(err), 2)
    with rec:
        n = rec.shape[0] if args.frames is None else min(args.frames, rec.shape[0])
        if n < 2:
            return _error(f"{args.file}: the sweep needs at least 2 frames, got {n}", 2)
        bar = None
        if not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(total=n, desc="sweep", unit="frame", file=sys.stderr)
        try:
            res = esrrf_sweep(
                _Frames(rec, n),
                magnification=args.magnification,
                sensitivities=args.sensitivity,
                radii=args.radius,
                temporal=args.temporal,
                use_decorr=args.decorr,
                frames_per_batch=args.frames_per_batch,
                progress=None if bar is None else bar.update,
            )
        except (ValueError, CorruptRecordingError) as err:
            return _error(str(err), 2 if isinstance(err, ValueError) else 1)
        finally:
            if bar is not None:
                bar.close()
        pixel_nm = rec.pixel_size_um * 1000.0
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "sweep.csv", res, pixel_nm)
    write_png(out / "sweep.png", res)
    em_path = write_error_map(out, res)
    s, r = res.best
    n_pairs = len(res.sensitivities) * len(res.radii)
    sys.stdout.write(
        f"best: sensitivity {s:g}, radius {r:g} (QnR {res.best_qnr:.4f}, "
        f"{n_pairs} pairs, {res.n_frames} frames, {res.seconds:.1f} s)\n"
    )
    sys.stdout.write(
        f"use: livesr run --magnification {res.magnification} --radius {r:g} "
        f"--sensitivity {s:g} --temporal {res.temporal}\n"
    )
    sys.stdout.write(f"wrote {out / 'sweep.csv'}, {out / 'sweep.png'}, {em_path}\n")
    return 0
