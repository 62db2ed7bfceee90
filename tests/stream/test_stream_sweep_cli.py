"""``livesr sweep`` end to end: every replay format in, sweep.csv / sweep.png /
error map out, equal to :func:`livesr.kernels.esrrf_sweep` on the same frames;
one-line errors for bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from livesr.kernels import error_map, esrrf_sweep
from livesr.stream.cli import main


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    from livesr.sim import CameraConfig, SimConfig, simulate_stack

    return simulate_stack(14, SimConfig(camera=CameraConfig(shape=(20, 20)), seed=9))[0]


def _write(stack: np.ndarray, path: Path) -> Path:
    if path.suffix == ".npy":
        np.save(path, stack)
    else:
        import tifffile

        tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TYX"})
    return path


@pytest.mark.parametrize("name", ["movie.npy", "movie.tif"])
def test_sweep_cli_writes_the_sweep_of_the_file(
    tmp_path: Path, stack: np.ndarray, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _write(stack, tmp_path / name)
    out = tmp_path / "out"
    argv = ["sweep", str(src), "--radius", "1", "1.5", "2", "--sensitivity", "1", "2"]
    argv += ["--temporal", "var", "--pixel-size", "0.1", "--output", str(out)]
    assert main(argv) == 0
    expected = esrrf_sweep(
        stack, magnification=2, sensitivities=(1, 2), radii=(1, 1.5, 2), temporal="var"
    )
    with open(out / "sweep.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(float(r["sensitivity"]), float(r["radius"])) for r in rows] == [
        (s, r) for s in (1.0, 2.0) for r in (1.0, 1.5, 2.0)
    ]
    qnr = np.array([float(r["qnr"]) for r in rows]).reshape(2, 3)
    np.testing.assert_allclose(qnr, expected.qnr, atol=2e-6)
    res_px = np.array([float(r["resolution_px"]) for r in rows]).reshape(2, 3)
    np.testing.assert_allclose(res_px, expected.resolution, atol=2e-6)
    res_nm = np.array([float(r["resolution_nm"]) for r in rows]).reshape(2, 3)
    np.testing.assert_allclose(res_nm, expected.resolution * 100.0 / 2, atol=1e-3)
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import tifffile

    bi, bj = expected.best_index
    em = tifffile.imread(out / "error_map.tif")
    ref = error_map(expected.raw_mean, expected.images[bi, bj])
    np.testing.assert_allclose(em, ref.error_map, atol=1e-4 * ref.error_map.max())
    meta = json.loads((out / "error_map.json").read_text())
    assert (meta["sensitivity"], meta["radius"]) == expected.best
    assert meta["rsp"] == pytest.approx(ref.rsp, abs=1e-9)
    stdout = capsys.readouterr().out
    s, r = expected.best
    assert f"best: sensitivity {s:g}, radius {r:g}" in stdout
    assert f"livesr run --magnification 2 --radius {r:g} --sensitivity {s:g}" in stdout


@pytest.mark.parametrize(
    "argv,message",
    [
        (["missing.npy"], "no such file"),
        (["one.npy"], "at least 2 frames"),
        (["movie.npy", "--radius", "0"], "expected a number > 0"),
        (["movie.npy", "--temporal", "tac2"], "invalid choice"),
        (["movie.npy", "--decorr"], "use_decorr needs SR images"),
        (["notes.txt"], "notes.txt"),
    ],
)
def test_sweep_cli_bad_input_is_one_line_error(
    tmp_path: Path,
    stack: np.ndarray,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    np.save(tmp_path / "movie.npy", stack[:4])
    np.save(tmp_path / "one.npy", stack[:1])
    (tmp_path / "notes.txt").write_text("not a recording")
    argv = [str(tmp_path / argv[0]), *argv[1:]]
    code = main(["sweep", *argv, "--output", str(tmp_path / "o"), "--no-progress"])
    assert code != 0
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "o" / "sweep.csv").exists()


def test_sweep_cli_refuses_a_used_output(tmp_path: Path, stack: np.ndarray) -> None:
    np.save(tmp_path / "movie.npy", stack[:4])
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "sweep.csv").write_text("old")
    argv = ["sweep", str(tmp_path / "movie.npy"), "--output", str(tmp_path / "o")]
    assert main(argv) == 2
    assert (tmp_path / "o" / "sweep.csv").read_text() == "old"
