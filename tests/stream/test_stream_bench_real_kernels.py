"""``livesr bench`` over the real kernels (not only the engine's toy kernels)."""

from __future__ import annotations

import json

from livesr.stream.cli import main


def test_bench_runs_every_available_implementation_of_real_kernels(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIVESR_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "defaults.json"
    argv = ["bench", "--kernel", "xcorr", "--kernel", "roberts_cross", "--repeats", "1",
            "--impl", "numpy", "--impl", "numba", "--write-defaults", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert set(data["kernels"]) == {"xcorr", "roberts_cross"}
    for kernel in data["kernels"].values():
        assert set(kernel) == {"numpy", "numba"}


def test_shipped_factory_defaults_cover_every_kernel():
    from importlib import resources

    import livesr.kernels as kernels

    data = json.loads(resources.files("livesr.engine").joinpath("factory_defaults.json").read_text())
    names = {pkg.rsplit(".", 1)[1] for pkg in kernels.KERNEL_PACKAGES}
    assert names <= set(data["kernels"]), names - set(data["kernels"])
