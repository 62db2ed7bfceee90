"""Load a :class:`SimConfig` from TOML (or JSON) or a plain mapping; dump it back.

The file mirrors the dataclasses::

    seed = 3
    [sample]
    n_filaments = 4
    points_um = [[1.0, 2.0]]
    [optics]
    na = 1.3
    [camera]
    shape = [128, 128]
    [drift]
    velocity_um_per_s = [0.02, 0.0]

Unknown keys are errors naming the key and the valid keys; lists become tuples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from livesr.sim._config import (
    CameraConfig,
    DriftConfig,
    OpticsConfig,
    SampleConfig,
    SimConfig,
)

__all__ = ["config_from_mapping", "config_to_dict", "load_config"]

_SECTIONS: dict[str, type] = {
    "sample": SampleConfig,
    "optics": OpticsConfig,
    "camera": CameraConfig,
    "drift": DriftConfig,
}


def _tuplify(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v


def _check_keys(cls: type, data: Any, where: str) -> None:
    if not isinstance(data, Mapping):
        raise ValueError(f"[{where}] must be a table, got {type(data).__name__}")
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in valid:
            raise ValueError(
                f"unknown key {where}.{key!s}; "
                f"valid keys of [{where}]: {', '.join(valid)}"
            )


def config_from_mapping(
    data: Mapping[str, Any], base: SimConfig | None = None
) -> SimConfig:
    """Build a config from nested mappings on top of ``base`` (default ``SimConfig()``).

    Fields not given keep ``base``'s values (per section).
    """
    base = base if base is not None else SimConfig()
    valid = ["seed", *_SECTIONS]
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in valid:
            raise ValueError(
                f"unknown key {key!s}; valid top-level keys: {', '.join(valid)}"
            )
        if key == "seed":
            changes["seed"] = value
            continue
        cls = _SECTIONS[key]
        current = dataclasses.asdict(getattr(base, key))
        _check_keys(cls, value, key)
        current.update({k: _tuplify(v) for k, v in value.items()})
        changes[key] = cls(**{k: _tuplify(v) for k, v in current.items()})
    return dataclasses.replace(base, **changes)


def load_config(path: str | Path, base: SimConfig | None = None) -> SimConfig:
    """Read a TOML file (or a ``.json`` file, e.g. a written ``config.json``).

    See the module docstring for the layout; fields not given keep ``base``'s.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        import json

        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: not valid JSON: {exc}") from exc
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # pragma: no cover - Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{p}: not valid TOML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{p}: expected a table of settings, got {type(data).__name__}"
        )
    try:
        return config_from_mapping(data, base)
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from exc


def config_to_dict(cfg: SimConfig) -> dict[str, Any]:
    """Plain nested dict (JSON-serialisable) of a config."""
    return dataclasses.asdict(cfg)
