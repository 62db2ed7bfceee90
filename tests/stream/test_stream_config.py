"""Pipeline configuration: TOML loading, validation, overrides and round trip."""

from __future__ import annotations

import pytest

from livesr.stream._config import (
    EsrrfConfig,
    LivesrConfig,
    config_from_mapping,
    load_config,
    to_toml,
)


def test_toml_round_trip(tmp_path):
    src = tmp_path / "run.toml"
    src.write_text(
        """
[esrrf]
window = 20
stride = 5
temporal = "tac2"
radius = 2.0
[drift]
enabled = false
[stream]
frames = 300
output = "out dir"
[sim]
seed = 4
[sim.camera]
shape = [64, 48]
""",
        encoding="utf-8",
    )
    cfg = load_config(src)
    assert cfg.esrrf.window == 20 and cfg.esrrf.stride == 5 and cfg.esrrf.temporal == "tac2"
    assert cfg.esrrf.magnification == 5  # default kept
    assert cfg.drift.enabled is False and cfg.stream.frames == 300
    assert cfg.sim == {"seed": 4, "camera": {"shape": [64, 48]}}
    again = tmp_path / "effective.toml"
    again.write_text(to_toml(cfg), encoding="utf-8")
    assert load_config(again) == cfg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"esrrf": {"window": 1}}, r"\[esrrf\] window=1 is out of range; expected an integer >= 2"),
        ({"esrrf": {"temporal": "median"}}, "expected one of avg, var, tac2"),
        ({"esrrf": {"magnification": 2.5}}, "magnification"),
        ({"esrrf": {"radius": float("nan")}}, "radius"),
        ({"esrrf": {"windw": 3}}, "unknown key esrrf.windw; valid keys of"),
        ({"bogus": {}}, r"unknown section \[bogus\]; valid sections: esrrf, drift, stream, sim"),
        ({"stream": {"credit": 0}}, "credit"),
        ({"stream": {"raw_format": "png"}}, "ome-zarr, ome-tiff"),
        ({"drift": {"enabled": "yes"}}, "true or false"),
        ({"esrrf": 3}, "must be a table"),
    ],
)
def test_invalid_values_name_field_and_range(data, message):
    with pytest.raises(ValueError, match=message):
        config_from_mapping(data)


def test_overrides_and_defaults():
    cfg = LivesrConfig().replace("esrrf", window=7).replace("stream", frames=9)
    assert cfg.esrrf == EsrrfConfig(window=7)
    assert cfg.stream.frames == 9
    with pytest.raises(ValueError, match="stride"):
        cfg.replace("esrrf", stride=0)


def test_bad_toml_file_is_reported_with_path(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[esrrf\nwindow=", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.toml: not valid TOML"):
        load_config(bad)
    with pytest.raises(ValueError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
