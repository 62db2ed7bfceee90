"""The napari plugin as installed: npe2 finds the ``livesr`` manifest through the
``napari.manifest`` entry point of the installed distribution, its widget and reader
commands resolve to importable callables, and the reader opens a real output folder
written by ``livesr run``. No display needed (nothing is shown)."""

from __future__ import annotations

import json
from importlib.metadata import distribution, entry_points
from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2", reason="npe2 is not installed (livesr[viewer])")

from livesr.stream.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def plugin_manager():
    pm = npe2.PluginManager()
    pm.discover(include_npe1=False)
    pm.activate("livesr")  # as napari does on first use: registers its commands
    return pm


def test_entry_point_is_installed() -> None:
    eps = [e for e in entry_points(group="napari.manifest") if e.name == "livesr"]
    assert len(eps) == 1, (
        "the livesr napari.manifest entry point is not installed; reinstall: "
        "pip install -e . --no-deps --no-build-isolation"
    )
    assert eps[0].value == "livesr.adapters.sinks:napari.yaml"
    assert eps[0].dist is not None and eps[0].dist.name == distribution("livesr").name


def test_npe2_discovers_the_livesr_manifest(plugin_manager) -> None:
    mf = plugin_manager.get_manifest("livesr")
    assert mf.name == "livesr"
    # found through the installed distribution's entry point, not a path
    assert mf.package_metadata is not None and mf.package_metadata.name == "livesr"
    commands = {c.id: c for c in mf.contributions.commands}
    assert set(commands) == {"livesr.live_widget", "livesr.get_reader"}
    (widget,) = mf.contributions.widgets
    assert widget.command == "livesr.live_widget"
    assert widget.display_name == "Live SR stream"
    (reader,) = mf.contributions.readers
    assert reader.command == "livesr.get_reader" and reader.accepts_directories
    # every command resolves to an importable callable (what napari will call)
    from npe2.manifest.utils import import_python_name

    from livesr.adapters.sinks._napari_reader import get_reader
    from livesr.adapters.sinks._napari_widget import LiveStreamWidget

    assert import_python_name(commands["livesr.get_reader"].python_name) is get_reader
    resolved = import_python_name(commands["livesr.live_widget"].python_name)
    assert resolved is LiveStreamWidget and callable(resolved)
    assert plugin_manager.get_command("livesr.get_reader").python_name == (
        "livesr.adapters.sinks._napari_reader:get_reader"
    )


def test_plugin_reader_opens_a_livesr_run(plugin_manager, tmp_path: Path) -> None:
    import zarr

    cfg = tmp_path / "run.toml"
    cfg.write_text(
        "[stream]\nlatency_budget_ms = 60000.0\n"
        "[sim]\nseed = 3\n[sim.camera]\nshape = [32, 32]\n",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    argv = ["run", "--config", str(cfg), "-o", str(out), "--no-status", "--no-pace"]
    argv += ["--frames", "40", "--window", "10", "--stride", "10"]
    assert main([*argv, "--magnification", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["windows_published"] == 4

    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    for path in (out, out / "summary.json"):
        readers = [r.plugin_name for r in plugin_manager.iter_compatible_readers(path)]
        assert "livesr" in readers
        reader_fn = plugin_manager.commands.execute(
            "livesr.get_reader", kwargs={"path": str(path)}
        )
        assert callable(reader_fn)
        layers = reader_fn(str(path))
        by_name = {meta["name"]: (data, meta, kind) for data, meta, kind in layers}
        assert {"raw", "SR", "drift"} <= set(by_name)
        sr_data, sr_meta, sr_kind = by_name["SR"]
        sr = zarr.open_group(str(out / "sr.ome.zarr"), mode="r")["0"]
        assert sr_kind == "image" and tuple(sr_data.shape) == tuple(sr.shape)
        assert sr_data.shape[0] == 4 and sr_data.shape[-2:] == (64, 64)
        np.testing.assert_array_equal(np.asarray(sr_data[-1]), sr[-1])
        assert sr_meta["scale"][-1] == pytest.approx(summary["sr_pixel_size_um"])
        raw_data, _, raw_kind = by_name["raw"]
        assert raw_kind == "image" and raw_data.shape[0] == 40
    # a folder without summary.json is not claimed
    fn = plugin_manager.commands.execute(
        "livesr.get_reader", kwargs={"path": str(not_a_run)}
    )
    assert fn is None
