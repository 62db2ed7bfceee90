"""livesr.sim: a simulated fluctuation / single-molecule microscope with ground truth.

Structures (filaments, rings, clusters) placed in um and labelled with blinking
fluorophores, a Gaussian PSF from NA and wavelength (exact pixel integration,
defocus blur), an sCMOS camera (offset, gain, read noise, QE, uint16), and an
XYZ stage with seeded drift (linear, random walk, oscillation). Every frame
comes with its ground truth (:class:`FrameTruth`).

>>> from livesr.sim import Microscope, SimConfig
>>> scope = Microscope(SimConfig(seed=1))
>>> frame, truth = scope.next_frame()

Speed (measured, see ``tests/benchmarks/test_bench_sim.py``): filled in below.
"""

from __future__ import annotations

from livesr.sim._blinking import steady_state_on_fraction
from livesr.sim._config import CameraConfig, DriftConfig, OpticsConfig, SampleConfig, SimConfig
from livesr.sim._microscope import FrameTruth, Microscope, simulate_stack

# Micro-Manager (UniMMCore) devices: imported on first use, they need pymmcore_plus
_LAZY = {
    "make_core": "_core",
    "shutdown_core": "_core",
    "SimCore": "_core",
    "StageLimits": "_devices",
    "truth_from_metadata": "_devices",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"livesr.sim.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'livesr.sim' has no attribute {name!r}")

__all__ = [
    "CameraConfig",
    "DriftConfig",
    "FrameTruth",
    "Microscope",
    "OpticsConfig",
    "SampleConfig",
    "SimConfig",
    "simulate_stack",
    "steady_state_on_fraction",
]
