"""livesr's simulated microscope as Python devices a Micro-Manager ``.cfg`` can name.

A configuration file loaded into a pymmcore-plus ``UniMMCore`` creates Python
devices from ``#py pyDevice,<label>,<module>,<class>`` lines with no constructor
arguments. These classes wrap the simulator's devices
(:mod:`livesr.sim._devices`) for that path: a :class:`LivesrSimHub` owns the
simulated :class:`~livesr.sim.Microscope` (its pre-initialisation properties
``Rows``, ``Cols``, ``Seed`` give the blinking preset,
``SimConfig.blinking``) and the camera, XY stage and focus drive declared as its
peripherals (``#py Parent,<device>,<hub>``) share it. ``livesr_sim.cfg``, shipped
beside this module, is the complete configuration::

    #py pyDevice,LivesrHub,livesr.adapters.sources.mm_devices,LivesrSimHub
    #py pyDevice,SimCamera,livesr.adapters.sources.mm_devices,LivesrSimCamera
    #py Parent,SimCamera,LivesrHub
    #py Property,LivesrHub,Rows,64
    #py Property,Core,Initialize,1
    ...

>>> from pymmcore_plus.experimental.unicore import UniMMCore   # doctest: +SKIP
>>> core = UniMMCore(); core.loadSystemConfiguration(SIM_CFG)   # doctest: +SKIP

Python devices only see ``self.core.events`` (ECOSYSTEM.md §1.2), so a
peripheral finds its hub through a registry keyed by the core (its
``events.propertyChanged`` signal, shared by all devices of one core) and the
hub's label; two cores loading the same file get two independent microscopes.
"""

from __future__ import annotations

import threading
import weakref
from importlib.resources import files
from pathlib import Path
from typing import Any

from pymmcore_plus.experimental.unicore import HubDevice, pymm_property

from livesr.sim._config import SimConfig
from livesr.sim._devices import SimCamera, SimFocusStage, SimXYStage
from livesr.sim._microscope import Microscope

__all__ = [
    "SIM_CFG",
    "LivesrSimCamera",
    "LivesrSimFocus",
    "LivesrSimHub",
    "LivesrSimXYStage",
    "sim_cfg_path",
]


def sim_cfg_path() -> Path:
    """Path of the shipped ``livesr_sim.cfg`` (the simulated microscope)."""
    return Path(str(files("livesr.adapters.sources").joinpath("livesr_sim.cfg")))


#: The shipped configuration of the simulated microscope (a path).
SIM_CFG = sim_cfg_path()

_HUBS: weakref.WeakValueDictionary[tuple[Any, str], LivesrSimHub] = (
    weakref.WeakValueDictionary()
)
_HUBS_LOCK = threading.Lock()


def _core_key(device: Any) -> Any:
    """A key equal for every device of one core (the hub and its peripherals).

    Each device's core proxy holds the core's ``propertyChanged`` signal: with
    psygnal the core's own ``SignalInstance`` (compared by identity); with the Qt
    signal backend (a ``QApplication`` exists, e.g. in napari) a new
    ``pyqtBoundSignal`` per proxy, which compares and hashes equal for one core.
    The key holds the signal, so it stays valid while the hub lives.
    """
    return device.core.events.propertyChanged


class LivesrSimHub(HubDevice):
    """The simulated microscope; its peripherals share it.

    Pre-initialisation properties: ``Rows`` and ``Cols`` (sensor shape, px,
    16..4096), ``Seed`` (simulation seed, >= 0). The microscope
    (``SimConfig.blinking(seed, shape)``: blinking emitters, 0.1 um pixels,
    10 ms frames, seeded drift) is built on ``initialize``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rows = 64
        self._cols = 64
        self._seed = 0
        self._scope: Microscope | None = None

    def get_installed_peripherals(self) -> list[tuple[str, str]]:
        """The camera, XY stage and focus drive classes of this module."""
        return [
            ("LivesrSimCamera", "simulated sCMOS camera"),
            ("LivesrSimXYStage", "simulated XY stage"),
            ("LivesrSimFocus", "simulated focus drive"),
        ]

    @pymm_property(limits=(16, 4096), is_pre_init=True)
    def Rows(self) -> int:  # noqa: N802 (Micro-Manager property name)
        """Sensor rows, px."""
        return self._rows

    @Rows.setter  # type: ignore[no-redef]  # pymm_property setter
    def Rows(self, value: int) -> None:  # noqa: N802
        self._rows = int(value)

    @pymm_property(limits=(16, 4096), is_pre_init=True)
    def Cols(self) -> int:  # noqa: N802
        """Sensor columns, px."""
        return self._cols

    @Cols.setter  # type: ignore[no-redef]  # pymm_property setter
    def Cols(self, value: int) -> None:  # noqa: N802
        self._cols = int(value)

    @pymm_property(limits=(0, 2**31 - 1), is_pre_init=True)
    def Seed(self) -> int:  # noqa: N802
        """Simulation seed."""
        return self._seed

    @Seed.setter  # type: ignore[no-redef]  # pymm_property setter
    def Seed(self, value: int) -> None:  # noqa: N802
        self._seed = int(value)

    def initialize(self) -> None:
        """Build the microscope and make it reachable by the peripherals."""
        cfg = SimConfig.blinking(seed=self._seed, shape=(self._rows, self._cols))
        self._scope = Microscope(cfg)
        with _HUBS_LOCK:
            _HUBS[(_core_key(self), self.get_label())] = self

    def shutdown(self) -> None:
        """Forget the microscope."""
        with _HUBS_LOCK:
            key = (_core_key(self), self.get_label())
            if _HUBS.get(key) is self:
                del _HUBS[key]
        self._scope = None

    @property
    def microscope(self) -> Microscope:
        """The simulated microscope (after ``initialize``)."""
        if self._scope is None:
            raise RuntimeError(
                f"hub {self.get_label()!r} is not initialised; load the configuration "
                "with 'Property,Core,Initialize,1'"
            )
        return self._scope


def _hub_scope(device: Any) -> Microscope:
    parent = device.get_parent_label()
    if not parent:
        raise RuntimeError(
            f"{type(device).__name__} {device.get_label()!r} has no parent hub; the "
            f"configuration needs '#py Parent,{device.get_label()},<hub label>' with "
            "a LivesrSimHub"
        )
    with _HUBS_LOCK:
        hub = _HUBS.get((_core_key(device), parent))
    if hub is None:
        raise RuntimeError(
            f"{type(device).__name__} {device.get_label()!r}: parent {parent!r} is "
            "not an initialised LivesrSimHub of this core"
        )
    return hub.microscope


class _OnHub:
    """``_scope`` resolved from the parent hub (the base constructors assign None)."""

    @property
    def _scope(self) -> Microscope:
        return _hub_scope(self)

    @_scope.setter
    def _scope(self, value: Any) -> None:
        if value is not None:
            raise AttributeError("the microscope comes from the parent hub")


class LivesrSimCamera(_OnHub, SimCamera):
    """:class:`~livesr.sim._devices.SimCamera` on the parent hub's microscope."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]


class LivesrSimXYStage(_OnHub, SimXYStage):
    """:class:`~livesr.sim._devices.SimXYStage` on the parent hub's microscope."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]


class LivesrSimFocus(_OnHub, SimFocusStage):
    """:class:`~livesr.sim._devices.SimFocusStage` on the parent hub's microscope."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]
