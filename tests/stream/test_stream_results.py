"""The SR series writer, in the background mode the pipeline uses."""

from __future__ import annotations

import numpy as np
import pytest

from livesr.stream._results import SrSeriesWriter


@pytest.mark.parametrize("background", [False, True])
def test_sr_writer_keeps_every_image_in_order(tmp_path, background):
    import zarr

    rng = np.random.default_rng(0)
    images = [rng.random((40, 30), dtype=np.float32) for _ in range(37)]
    w = SrSeriesWriter(
        tmp_path / "sr.ome.zarr",
        (40, 30),
        pixel_size_um=0.02,
        interval_s=0.1,
        params={"magnification": 5},
        background=background,
        queue_images=2,
    )
    assert [w.append(img) for img in images] == list(range(37))
    w.close(param_changes=[])
    g = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")
    got = np.asarray(g["0"])[:, 0, 0]
    assert got.shape == (37, 40, 30)
    np.testing.assert_array_equal(got, np.stack(images))
    assert g.attrs["livesr"]["complete"] is True
    assert g.attrs["livesr"]["images"] == 37


def test_sr_writer_background_error_is_reported_not_lost(tmp_path, monkeypatch):
    import zarr

    w = SrSeriesWriter(
        tmp_path / "sr.ome.zarr",
        (8, 8),
        pixel_size_um=0.02,
        interval_s=0.1,
        params={},
        background=True,
    )
    good = np.ones((8, 8), np.float32)
    w.append(good)
    real = w._write

    def disk_full(i, image):
        if i == 1:
            raise OSError(28, "No space left on device")
        real(i, image)

    monkeypatch.setattr(w, "_write", disk_full)
    w.append(good)  # the writer thread fails on this one
    w._drain()  # let the thread reach it
    with pytest.raises(OSError, match="writing .*sr.ome.zarr failed"):
        w.append(good)
    w.close(param_changes=[])
    g = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")
    assert g.attrs["livesr"]["complete"] is False
    assert g.attrs["livesr"]["images"] == 1
    assert "writing SR images failed" in g.attrs["livesr"]["error"]
    np.testing.assert_array_equal(np.asarray(g["0"])[:, 0, 0], good[None])
