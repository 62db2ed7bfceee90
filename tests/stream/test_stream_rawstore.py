"""Raw stores: OME-Zarr / OME-TIFF round trip; ENOSPC keeps the prefix complete."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from livesr.stream._rawstore import (
    OmeTiffRawStore,
    OmeZarrRawStore,
    RawStoreError,
    open_raw_store,
)


def _frames(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    f = rng.integers(0, 4000, size=(n, 8, 12), dtype=np.uint16)
    f[:, 0, 0] = np.arange(n)
    return f


def _fill(store, frames: np.ndarray, seq0: int = 100) -> None:
    store.open(
        frames.shape[1:],
        "uint16",
        pixel_size_um=0.13,
        interval_s=0.02,
        meta={"camera": "x"},
    )
    for i, f in enumerate(frames):
        store.append(seq0 + i, f, t_acq=1000.0 + i * 0.02, t_recv=1000.001 + i * 0.02)


def test_zarr_round_trip_with_metadata(tmp_path: Path) -> None:
    frames = _frames(70)  # crosses the initial capacity (64)
    store = open_raw_store("ome-zarr", tmp_path)
    _fill(store, frames)
    store.close(gaps=[[170, 172, "source ring overflow"]])
    g = zarr.open_group(str(tmp_path / "raw.ome.zarr"), mode="r")
    arr = g["0"]
    assert arr.shape == (70, 1, 1, 8, 12)
    np.testing.assert_array_equal(arr[:, 0, 0], frames)
    ms = g.attrs["ome"]["multiscales"][0]
    assert g.attrs["ome"]["version"] == "0.5"
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "z", "y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [
        0.02,
        1.0,
        1.0,
        0.13,
        0.13,
    ]
    live = g.attrs["livesr"]
    assert live["complete"] is True and live["frames"] == 70 and live["error"] is None
    assert live["gaps"] == [[170, 172, "source ring overflow"]]
    np.testing.assert_array_equal(g["frames/seq"][:], np.arange(100, 170))
    np.testing.assert_allclose(g["frames/t_acq"][:], 1000.0 + np.arange(70) * 0.02)


def test_zarr_enospc_keeps_prefix_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = _frames(12)
    store = OmeZarrRawStore(tmp_path / "raw.ome.zarr")
    real = OmeZarrRawStore._write_frame

    def failing(self, index: int, frame: np.ndarray) -> None:
        if index >= 9:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, index, frame)

    monkeypatch.setattr(OmeZarrRawStore, "_write_frame", failing)
    store.open((8, 12), "uint16", pixel_size_um=0.1, interval_s=0.01)
    for i in range(9):
        store.append(i, frames[i], t_acq=float(i), t_recv=float(i))
    with pytest.raises(
        RawStoreError,
        match=r"seq 9 .*No space left on device \[ENOSPC\].*9 frame\(s\) before it",
    ) as ei:
        store.append(9, frames[9], t_acq=9.0, t_recv=9.0)
    assert ei.value.errno == errno.ENOSPC
    with pytest.raises(RawStoreError, match="failed earlier"):
        store.append(10, frames[10], t_acq=10.0, t_recv=10.0)
    store.close(gaps=[[9, 11, "raw store failed"]])
    g = zarr.open_group(str(tmp_path / "raw.ome.zarr"), mode="r")
    assert g["0"].shape[0] == 9
    np.testing.assert_array_equal(g["0"][:, 0, 0], frames[:9])
    live = g.attrs["livesr"]
    assert (
        live["complete"] is False and live["frames"] == 9 and "ENOSPC" in live["error"]
    )
    np.testing.assert_array_equal(g["frames/seq"][:], np.arange(9))


def test_tiff_round_trip_ome_metadata(tmp_path: Path) -> None:
    frames = _frames(15)
    store = open_raw_store("ome-tiff", tmp_path)
    _fill(store, frames)
    store.close()
    with tifffile.TiffFile(tmp_path / "raw.ome.tif") as tf:
        assert tf.is_ome
        s = tf.series[0]
        assert s.shape == (15, 8, 12) and s.axes == "TYX"
        np.testing.assert_array_equal(s.asarray(), frames)
        assert 'PhysicalSizeX="0.13"' in tf.ome_metadata
        assert 'TimeIncrement="0.02"' in tf.ome_metadata
    with tifffile.TiffFile(tmp_path / "raw.ome.tif", is_ome=False) as tf:
        tf.pages.useframes = False
        assert json.loads(tf.pages[3].description)["seq"] == 103


def test_tiff_enospc_prefix_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = _frames(10)
    real = OmeTiffRawStore._write_frame
    calls = {"n": 0}

    def failing(self, frame: np.ndarray, description: str) -> None:
        calls["n"] += 1
        if calls["n"] > 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, frame, description)

    monkeypatch.setattr(OmeTiffRawStore, "_write_frame", failing)
    store = OmeTiffRawStore(tmp_path / "raw.ome.tif")
    store.open((8, 12), "uint16", pixel_size_um=0.1, interval_s=0.01)
    for i in range(6):
        store.append(i, frames[i], t_acq=float(i), t_recv=float(i))
    with pytest.raises(RawStoreError, match="ENOSPC"):
        store.append(6, frames[6], t_acq=6.0, t_recv=6.0)
    store.close()
    with tifffile.TiffFile(tmp_path / "raw.ome.tif") as tf:
        assert tf.series[0].shape == (6, 8, 12)
        np.testing.assert_array_equal(tf.series[0].asarray(), frames[:6])
    assert "incomplete: 6 frame(s)" in (tmp_path / "raw.ome.error.txt").read_text()


def test_existing_store_and_bad_format_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "raw.ome.zarr").mkdir()
    with pytest.raises(
        FileExistsError, match="already exists; choose an empty --output"
    ):
        open_raw_store("ome-zarr", tmp_path).open(
            (8, 8), "uint16", pixel_size_um=0.1, interval_s=0.01
        )
    with pytest.raises(ValueError, match="expected one of ome-zarr, ome-tiff"):
        open_raw_store("hdf5", tmp_path)
