"""Config validation messages and TOML loading."""

from __future__ import annotations

import pytest

from livesr.sim import CameraConfig, DriftConfig, OpticsConfig, SampleConfig, SimConfig
from livesr.sim._toml import config_from_mapping, load_config


@pytest.mark.parametrize(
    ("cls", "kw", "pattern"),
    [
        (OpticsConfig, {"na": 2.0}, r"OpticsConfig\.na=2\.0 .*0 < na <= 1\.7"),
        (
            OpticsConfig,
            {"wavelength_um": 5.0},
            r"wavelength_um=5\.0 .*0\.2 <= wavelength_um <= 2\.0",
        ),
        (OpticsConfig, {"defocus_range_um": 0.0}, r"defocus_range_um=0\.0 .*> 0"),
        (
            CameraConfig,
            {"shape": (1, 10)},
            r"CameraConfig\.shape=\(1, 10\) .*\[2, 16384\]",
        ),
        (CameraConfig, {"qe": 1.5}, r"qe=1\.5 .*0 < qe <= 1"),
        (CameraConfig, {"gain": -1.0}, r"gain=-1\.0 .*> 0"),
        (CameraConfig, {"read_noise_e": float("nan")}, r"read_noise_e=nan .*>= 0"),
        (
            CameraConfig,
            {"exposure_ms": 20.0, "interval_ms": 10.0},
            r"interval_ms=10\.0 .*>= exposure_ms \(20\.0\)",
        ),
        (
            CameraConfig,
            {"shape": (64, 64), "roi": (60, 0, 10, 10)},
            r"roi=\(60, 0, 10, 10\) .*inside the sensor \(64, 64\)",
        ),
        (CameraConfig, {"stamp_index": 1}, r"stamp_index=1 .*True or False"),
        (
            SampleConfig,
            {"n_filaments": -1},
            r"SampleConfig\.n_filaments=-1 .*integer >= 0",
        ),
        (SampleConfig, {"n_rings": 2.5}, r"n_rings=2\.5 .*integer >= 0"),
        (SampleConfig, {"off_rate_hz": -3.0}, r"off_rate_hz=-3\.0 .*>= 0"),
        (SampleConfig, {"points_um": ((1.0,),)}, r"points_um=.*\(y, x\) tuples"),
        (SampleConfig, {"ring_radius_um": 0}, r"ring_radius_um=0 .*> 0"),
        (
            DriftConfig,
            {"velocity_um_per_s": (1.0,)},
            r"velocity_um_per_s=\(1\.0,\) .*\(y, x\) pair",
        ),
        (DriftConfig, {"random_walk_um": -0.1}, r"random_walk_um=-0\.1 .*>= 0"),
        (
            DriftConfig,
            {"oscillation_period_s": 0.0},
            r"oscillation_period_s=0\.0 .*> 0",
        ),
        (SimConfig, {"seed": -1}, r"SimConfig\.seed=-1 .*integer >= 0"),
        (
            SimConfig,
            {"camera": OpticsConfig()},
            r"SimConfig\.camera='OpticsConfig' .*a CameraConfig",
        ),
    ],
)
def test_validation_names_field_value_and_range(cls, kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        cls(**kw)


def test_configs_are_frozen():
    cfg = SimConfig()
    with pytest.raises(AttributeError):
        cfg.seed = 3  # type: ignore[misc]


def test_toml_round_trip(tmp_path):
    p = tmp_path / "sim.toml"
    p.write_text(
        """
seed = 4
[sample]
n_filaments = 2
points_um = [[1.0, 2.0], [3.0, 4.0]]
[optics]
na = 1.3
[camera]
shape = [64, 48]
roi = [0, 0, 32, 32]
[drift]
velocity_um_per_s = [0.01, -0.02]
""",
        encoding="utf-8",
    )
    cfg = load_config(p)
    assert cfg.seed == 4
    assert cfg.sample.n_filaments == 2 and cfg.sample.points_um == (
        (1.0, 2.0),
        (3.0, 4.0),
    )
    assert (
        cfg.sample.n_rings == SampleConfig().n_rings
    )  # untouched fields keep defaults
    assert cfg.optics.na == 1.3
    assert cfg.camera.shape == (64, 48) and cfg.camera.roi == (0, 0, 32, 32)
    assert cfg.drift.velocity_um_per_s == (0.01, -0.02)


def test_toml_partial_section_merges_with_base():
    base = SimConfig(camera=CameraConfig(exposure_ms=5.0, interval_ms=5.0))
    cfg = config_from_mapping({"camera": {"interval_ms": 6.0}}, base)
    assert (cfg.camera.exposure_ms, cfg.camera.interval_ms) == (5.0, 6.0)


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (
            {"sede": 1},
            r"unknown key sede; valid top-level keys: "
            r"seed, sample, optics, camera, drift",
        ),
        (
            {"optics": {"NA": 1.2}},
            r"unknown key optics\.NA; valid keys of \[optics\]: na, wavelength_um",
        ),
        ({"camera": 3}, r"\[camera\] must be a table"),
        ({"optics": {"na": 9.0}}, r"OpticsConfig\.na=9\.0"),
    ],
)
def test_toml_errors_name_the_key(data, pattern):
    with pytest.raises(ValueError, match=pattern):
        config_from_mapping(data)


def test_bad_toml_file_names_the_file(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("seed = = 3", encoding="utf-8")
    with pytest.raises(ValueError, match=r"x\.toml: not valid TOML"):
        load_config(p)


def test_json_config_and_errors(tmp_path):
    good = tmp_path / "c.json"
    good.write_text('{"seed": 2, "camera": {"shape": [16, 24]}}', encoding="utf-8")
    cfg = load_config(good)
    assert cfg.seed == 2 and cfg.camera.shape == (16, 24)
    bad = tmp_path / "b.json"
    bad.write_text("{seed: 2", encoding="utf-8")
    with pytest.raises(ValueError, match=r"b\.json: not valid JSON"):
        load_config(bad)
    listy = tmp_path / "l.json"
    listy.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a table of settings, got list"):
        load_config(listy)
