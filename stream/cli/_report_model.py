"""What ``livesr bench --report`` is asked (:class:`Options`), the sizes of its
experiments per mode (:class:`Settings`), one section of the report
(:class:`Section`, under one of :data:`HEADINGS`) and the Markdown formatting
helpers the sections share."""

from __future__ import annotations

import dataclasses
import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "HEADINGS",
    "Options",
    "Section",
    "Settings",
    "fmt",
    "machine_line",
    "pct",
    "md_table",
]


#: Section headings, in order (the test checks each is present).
HEADINGS: tuple[str, ...] = (
    "## 1. eSRRF throughput vs frame size",
    "## 2. Transport throughput and latency",
    "## 3. End-to-end latency of the live pipeline",
    "## 4. Delay agent under an induced delay",
    "## 5. GPU streaming figures",
    "## 6. eSRRF parameter sweep: time per pair vs NanoPyx, CPU and GPU",
    "## 7. Drift against ground truth: live, batch and NanoPyx",
    "## 8. Live resolution against ground truth: decorrelation and even/odd FRC",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and durations of every experiment for one mode (quick, default, full)."""

    esrrf_sizes: tuple[int, ...]
    esrrf_rounds: int
    nanopyx_rounds: int
    transport_shape: tuple[int, int]
    transport_fps: float
    transport_s: float
    pipeline_size: int
    pipeline_fps: float
    pipeline_frames: int
    pipeline_window: int
    pipeline_stride: int
    agent_size: int
    agent_calls: int
    agent_delayed: range
    agent_warm_runs: int
    sweep_size: int = 64
    sweep_frames: int = 30
    sweep_rounds: int = 2
    sweep_magnification: int = 2
    sweep_sensitivities: tuple[float, ...] = (1.0, 2.0)
    sweep_radii: tuple[float, ...] = (1.0, 1.5)
    drift_size: int = 256
    drift_frames: int = 2000
    drift_seeds: tuple[int, ...] = (1, 2)
    res_size: int = 96
    res_magnification: int = 4
    res_windows: tuple[int, ...] = (20, 50, 100, 200)

    @classmethod
    def for_mode(cls, mode: str) -> Settings:
        """``"quick"`` (seconds, for tests), ``"default"`` or ``"full"`` (adds 512²).

        The parameter sweep (section 6): 2×2 pairs at M=2 on a 64² stack of 30
        frames, best of 2 sweeps (full: 3); quick: 32², 12 frames, 1 sweep."""
        if mode == "quick":
            return cls(
                (32, 48),
                2,
                1,
                (128, 128),
                200.0,
                0.5,
                32,
                40.0,
                40,
                10,
                5,
                32,
                60,
                range(20, 35),
                10,
                sweep_size=32,
                sweep_frames=12,
                sweep_rounds=1,
                drift_size=48,
                drift_frames=200,
                drift_seeds=(1,),
                res_size=48,
                res_magnification=2,
                res_windows=(10, 20),
            )
        if mode not in ("default", "full"):
            raise ValueError(f"mode={mode!r}: expected quick, default or full")
        sizes = (64, 128, 256, 512) if mode == "full" else (64, 128, 256)
        return cls(
            sizes,
            7,
            3,
            (512, 512),
            1000.0,
            5.0 if mode == "full" else 3.0,
            64,
            20.0,
            300 if mode == "full" else 200,
            20,
            10,
            64,
            200,
            range(50, 100),
            12,
            sweep_rounds=3 if mode == "full" else 2,
            drift_seeds=(1, 2, 3, 4) if mode == "full" else (1, 2),
        )


@dataclasses.dataclass
class Options:
    """What ``livesr bench --report`` was asked to do."""

    out_dir: Path
    mode: str = "default"
    nanopyx: bool = True
    gpu_json: Path | None = None
    sweep_gpu_json: Path | None = None

    def command(self) -> str:
        """The exact command line that reproduces this report."""
        parts = ["livesr", "bench", "--report", str(self.out_dir)]
        if self.mode != "default":
            parts.append(f"--{self.mode}")
        if not self.nanopyx:
            parts.append("--no-nanopyx")
        if self.gpu_json is not None:
            parts += ["--gpu-json", str(self.gpu_json)]
        if self.sweep_gpu_json is not None:
            parts += ["--sweep-gpu-json", str(self.sweep_gpu_json)]
        return shlex.join(parts)


@dataclasses.dataclass
class Section:
    """One section of the report: Markdown lines, its numbers for ``report.json``,
    and the error when it failed."""

    heading: str
    body: list[str]
    data: dict[str, Any]
    failed: str = ""


# ------------------------------------------------------------------ formatting
def fmt(value: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (``-`` for NaN/None)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def machine_line(
    info: dict[str, Any], load0: Sequence[float], load1: Sequence[float]
) -> str:
    gpus = ", ".join(info["gpus"]) or "none"
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {gpus}; load average "
        f"(1/5/15 min) {'/'.join(fmt(x, 2) for x in load0)} before, "
        f"{'/'.join(fmt(x, 2) for x in load1)} after; livesr {info['livesr']}, "
        f"Python {info['python']}, numpy {info['numpy']}."
    )


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan

