"""The run's simulated microscope from a run configuration's ``[sim]`` table.

Shared by ``livesr run`` (:mod:`livesr.stream.cli._cmd_run`) and the napari demo
widget (:mod:`livesr.adapters.sinks._napari_widget`), so the widget does not
import the command line.
"""

from __future__ import annotations

from typing import Any

#: simulated sensor when the configuration's [sim.camera] gives no shape
DEFAULT_SIM_SHAPE = (64, 64)

__all__ = ["DEFAULT_SIM_SHAPE", "sim_config_from"]


def sim_config_from(cfg: Any) -> Any:
    """The run's simulated microscope: blinking preset at the [sim] shape + [sim].

    ``cfg`` is a :class:`~livesr.stream._config.LivesrConfig`; returns a
    :class:`~livesr.sim.SimConfig`.  Raises ``ValueError`` when ``[sim.camera]
    shape`` is not ``[rows, cols]``.
    """
    from livesr.sim import SimConfig
    from livesr.sim._toml import config_from_mapping

    table = dict(cfg.sim)
    shape = tuple(table.get("camera", {}).get("shape", DEFAULT_SIM_SHAPE))
    if len(shape) != 2:
        raise ValueError(
            f"[sim.camera] shape={list(shape)!r} is not valid; expected [rows, cols]"
        )
    base = SimConfig.blinking(shape=(int(shape[0]), int(shape[1])))
    return config_from_mapping(table, base=base)
