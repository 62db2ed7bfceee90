"""``livesr sim`` end to end, in process, both formats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from livesr.sim import Microscope
from livesr.sim._cli import build_config
from livesr.sim._toml import load_config
from livesr.stream.cli import build_parser, main


def _run(*argv: str) -> int:
    return main(["sim", *argv])


def _check_truth(out, n_frames, shape):
    truth = np.load(out / "truth.npz")
    assert truth["index"].tolist() == list(range(n_frames))
    assert truth["displacement_px"].shape == (n_frames, 2)
    n_em = int(truth["n_emitters"])
    on = np.unpackbits(truth["on_packed"], axis=1, count=n_em).astype(bool)
    assert on.shape == (n_frames, n_em)
    # the recorded truth is the simulator's truth
    cfg_json = json.loads((out / "config.json").read_text())
    assert tuple(cfg_json["camera"]["shape"]) == shape
    csv = np.loadtxt(out / "truth.csv", delimiter=",", skiprows=1)
    assert csv.shape == (n_frames, 15)
    np.testing.assert_allclose(
        csv[:, 4:6], truth["displacement_px"], rtol=1e-8, atol=1e-12
    )
    assert (csv[:, 14] == on.sum(axis=1)).all()
    return truth, on


def test_ome_tiff_end_to_end(tmp_path, capsys):
    import tifffile

    out = tmp_path / "acq"
    rc = _run(
        "--output",
        str(out),
        "--frames",
        "7",
        "--shape",
        "24",
        "32",
        "--seed",
        "3",
        "--drift",
        "linear",
        "--chunk",
        "3",
        "--no-progress",
        "--stamp-index",
    )
    assert rc == 0
    assert capsys.readouterr().out == ""
    with tifffile.TiffFile(out / "frames.ome.tif") as tif:
        assert tif.is_ome
        data = tif.asarray()
        ome = tif.ome_metadata
    assert data.shape == (7, 24, 32) and data.dtype == np.uint16
    assert 'PhysicalSizeX="0.1"' in ome and 'PhysicalSizeY="0.1"' in ome
    assert 'TimeIncrement="0.01"' in ome and 'TimeIncrementUnit="s"' in ome
    assert data[:, 0, 0].tolist() == list(range(7))  # stamped index
    truth, on = _check_truth(out, 7, (24, 32))
    # same frames and truth as the library with the same config
    args = build_parser().parse_args(
        [
            "sim",
            "--output",
            "x",
            "--shape",
            "24",
            "32",
            "--seed",
            "3",
            "--drift",
            "linear",
            "--stamp-index",
        ]
    )
    stack, truths = Microscope(build_config(args)).acquire(7)
    assert np.array_equal(stack, data)
    np.testing.assert_allclose(
        truth["displacement_px"], [t.displacement_px for t in truths]
    )
    assert np.array_equal(on, np.stack([t.on for t in truths]))
    # the written config.json reads back as the same SimConfig
    assert load_config(out / "config.json") == build_config(args)
    gt = tifffile.imread(out / "ground_truth.tif")
    assert gt.shape == (24 * 8, 32 * 8) and gt.dtype == np.float32


def test_ome_zarr_end_to_end(tmp_path):
    import zarr

    out = tmp_path / "acq"
    rc = _run(
        "--output",
        str(out),
        "--frames",
        "5",
        "--shape",
        "16",
        "20",
        "--format",
        "ome-zarr",
        "--chunk",
        "2",
        "--no-progress",
        "--upsample",
        "2",
    )
    assert rc == 0
    root = zarr.open_group(str(out / "frames.ome.zarr"), mode="r")
    assert root.metadata.zarr_format == 3
    ms = root.attrs["ome"]["multiscales"][0]
    assert root.attrs["ome"]["version"] == "0.5"
    assert [a["name"] for a in ms["axes"]] == ["t", "y", "x"]
    assert [a.get("unit") for a in ms["axes"]] == ["second", "micrometer", "micrometer"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [
        0.01,
        0.1,
        0.1,
    ]
    arr = root[ms["datasets"][0]["path"]]
    assert arr.shape == (5, 16, 20) and arr.dtype == np.uint16
    data = arr[:]
    assert (data > 0).all()  # every chunk was written (offset 100 ADU)
    _check_truth(out, 5, (16, 20))


def test_config_file_and_overrides(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "seed = 9\n[camera]\nshape = [20, 20]\n[optics]\nna = 1.3\n", encoding="utf-8"
    )
    args = build_parser().parse_args(
        ["sim", "--output", "x", "--config", str(cfg), "--seed", "2"]
    )
    c = build_config(args)
    assert c.seed == 2 and c.camera.shape == (20, 20) and c.optics.na == 1.3
    bad = tmp_path / "bad.toml"
    bad.write_text("[optics]\nnumerical_aperture = 1.3\n", encoding="utf-8")
    assert (
        _run("--output", str(tmp_path / "o"), "--config", str(bad), "--no-progress")
        == 1
    )


def test_existing_output_needs_overwrite(tmp_path, capsys):
    argv = (
        "--output",
        str(tmp_path),
        "--frames",
        "2",
        "--shape",
        "8",
        "8",
        "--no-progress",
    )
    assert _run(*argv) == 0
    assert _run(*argv) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert _run(*argv, "--overwrite") == 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--format", "hdf5"], "choose from 'ome-tiff', 'ome-zarr'"),
        (
            ["--drift", "wobble"],
            "choose from 'none', 'linear', 'random', 'oscillation', 'all'",
        ),
        (["--frames", "0"], "expected a positive integer"),
        (["--shape", "8"], "expected 2 arguments"),
    ],
)
def test_bad_flags_return_2_with_valid_choices(tmp_path, capsys, argv, needle):
    assert _run("--output", str(tmp_path), *argv) == 2
    assert needle in capsys.readouterr().err
