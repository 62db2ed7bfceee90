"""R9: the raw store's disk fills up for real (a 1 MiB tmpfs) while frames stream in.

A source (:class:`SourceLink`, as a remote acquisition would be: only the ``stop``
message tells it to stop) pushes 32x32 uint16 noise frames through a
:class:`Pipeline` whose raw store lies on a small tmpfs.  Checked: the writer reports
``ENOSPC`` on the frame that did not fit (the gap starts exactly there), every frame
written before is on disk, readable and equal to what was sent, the store is not
marked complete, acquisition stopped (the source got ``stop`` with the reason), the
gap is in the run summary and ``frames_acquired == frames_persisted + frames_in_gaps``.

Needs ``mount -t tmpfs`` (root); skipped with the reason when mounting fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from livesr.stream._config import LivesrConfig
from livesr.stream._pipeline import Pipeline
from livesr.stream._rawstore import (
    OmeTiffRawStore,
    OmeZarrRawStore,
    RawStoreError,
)
from livesr.stream._transport import SourceLink, SourceLinkConfig

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="tmpfs mounts are Linux-only"
)

SHAPE = (32, 32)
MAX_FRAMES = 3000  # 6 MiB of noise: far more than the 1 MiB filesystem holds


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs for the disk-full test: "
            f"{(res.stderr or res.stdout).strip()} (needs root / CAP_SYS_ADMIN)"
        )
    try:
        yield mnt
    finally:
        res = subprocess.run(["umount", str(mnt)], capture_output=True, text=True)
        if res.returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def noise(seq: int) -> np.ndarray:
    rng = np.random.default_rng(seq)
    f = rng.integers(0, 65535, SHAPE, dtype=np.uint16)  # incompressible
    f[0, 0] = seq & 0xFFFF
    return f


def _stream_until_stopped(
    tmp_path: Path, store, pipeline_config: Callable[..., LivesrConfig]
) -> tuple[dict, dict, Path]:
    out = tmp_path / "out"  # results elsewhere: only the raw frames fill the disk
    cfg = pipeline_config(out, window=4, stride=4, radius=1.0, ring_mb=1.0)
    pipe = Pipeline(cfg, endpoint=f"ipc://{tmp_path}/in.ipc", raw_store=store).start()
    link = SourceLink(
        SourceLinkConfig(
            endpoint=pipe.endpoint, stream="cam", shape=SHAPE, ring_frames=64
        )
    ).start()
    try:
        assert pipe.ready.wait(60)
        for seq in range(MAX_FRAMES):
            if link.stop_requested.is_set():  # the pipeline's stop message
                break
            link.send(noise(seq), timeout=30.0)
            if seq % 16 == 15:
                time.sleep(0.001)
        source = link.close(timeout=30.0)
        assert pipe.wait(60), "pipeline did not finish"
    finally:
        link.close(timeout=0)
        summary = pipe.close()
    return source, summary, out


def _check_accounting(source: dict, summary: dict) -> int:
    """Common R9 checks; returns the number of frames persisted."""
    n_acq = source["frames_acquired"]
    assert n_acq < MAX_FRAMES, "acquisition did not stop"
    assert source["stop_reason"] is not None
    assert "raw store failed" in source["stop_reason"]
    assert "No space left on device" in source["stop_reason"]
    assert source["frames_acked"] == n_acq and source["end_acked"] is True
    persisted = summary["frames_persisted"]
    # acknowledged is not persisted: the pipeline's answer to "end" says which of
    # the acknowledged frames it could not write
    remote = source["ingest"]
    assert remote["frames_persisted"] == persisted
    assert remote["frames_lost_at_pipeline"] == summary["frames_in_gaps"] > 0
    assert remote["accounting_ok"] is True
    assert summary["stopped"] is True and "ENOSPC" in summary["error"]
    assert summary["frames_acquired"] == n_acq
    assert summary["accounting_ok"] is True
    assert n_acq == persisted + summary["frames_in_gaps"]
    # ENOSPC within one frame: the gap starts at the first frame that did not fit
    assert summary["gaps"] == [[persisted, n_acq - 1, "raw store failed"]]
    assert 50 < persisted < 500  # 1 MiB holds some hundreds of 2 KiB frames
    on_disk = json.loads((Path(summary["output"]) / "summary.json").read_text())
    assert on_disk["gaps"] == summary["gaps"] and on_disk["accounting_ok"] is True
    return persisted


def test_disk_full_ome_zarr(
    tmp_path: Path, small_fs: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    store = OmeZarrRawStore(small_fs / "raw.ome.zarr")
    source, summary, _ = _stream_until_stopped(tmp_path, store, pipeline_config)
    n = _check_accounting(source, summary)
    g = zarr.open_group(str(small_fs / "raw.ome.zarr"), mode="r")
    live = g.attrs["livesr"]
    assert live["complete"] is False and "ENOSPC" in live["error"]
    assert live["frames"] == n and live["gaps"] == summary["gaps"]
    raw = g["0"][:, 0, 0]  # every frame written is readable...
    assert raw.shape == (n, *SHAPE)  # ...and nothing beyond them
    for seq in range(n):
        np.testing.assert_array_equal(raw[seq], noise(seq))
    np.testing.assert_array_equal(g["frames/seq"][:], np.arange(n))
    assert [p.name for p in small_fs.iterdir()] == ["raw.ome.zarr"]  # reserve freed


def test_disk_full_ome_tiff(
    tmp_path: Path, small_fs: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    store = OmeTiffRawStore(small_fs / "raw.ome.tif")
    source, summary, _ = _stream_until_stopped(tmp_path, store, pipeline_config)
    n = _check_accounting(source, summary)
    with tifffile.TiffFile(small_fs / "raw.ome.tif") as tf:
        pages = [p.asarray() for p in tf.pages]
        descriptions = [json.loads(p.description)["seq"] for p in tf.pages[1:]]
        ome = tf.pages[0].description
    assert len(pages) == n  # no torn page passes as a frame
    for seq in range(n):
        np.testing.assert_array_equal(pages[seq], noise(seq))
    assert descriptions == list(range(1, n))
    # marked incomplete: no OME-XML (written only at a clean close), an error note
    assert "<OME" not in ome
    note = (small_fs / "raw.ome.error.txt").read_text()
    assert f"incomplete: {n} frame(s) written" in note and "ENOSPC" in note
    assert sorted(p.name for p in small_fs.iterdir()) == [
        "raw.ome.error.txt",
        "raw.ome.tif",
    ]  # the space reserve is gone


def test_disk_full_ome_zarr_direct_writes(small_fs: Path) -> None:
    """O_DIRECT frames (4 KiB) on a full disk: the prefix stays complete, the store
    is cut back, the error recorded and the reserve freed, as with buffered writes."""
    shape = (32, 64)
    store = OmeZarrRawStore(small_fs / "raw.ome.zarr", chunk_frames=64)
    store.open(shape, "uint16", pixel_size_um=0.1, interval_s=0.01)

    def frame(seq: int) -> np.ndarray:
        return np.random.default_rng(seq).integers(0, 65535, shape, dtype=np.uint16)

    n = 0
    with pytest.raises(RawStoreError, match="ENOSPC"):
        for seq in range(1000):  # 4 MiB: more than the 1 MiB filesystem
            store.append(seq, frame(seq), t_acq=float(seq), t_recv=float(seq))
            n += 1
    assert store.direct and 50 < n < 250
    store.close(gaps=[[n, n, "raw store failed"]])
    g = zarr.open_group(str(small_fs / "raw.ome.zarr"), mode="r")
    assert g.attrs["livesr"]["frames"] == n and "ENOSPC" in g.attrs["livesr"]["error"]
    raw = g["0"][:, 0, 0]
    assert raw.shape == (n, *shape)
    for seq in range(n):
        np.testing.assert_array_equal(raw[seq], frame(seq))
    np.testing.assert_array_equal(g["frames/seq"][:], np.arange(n))
    assert [p.name for p in small_fs.iterdir()] == ["raw.ome.zarr"]


def test_disk_full_on_the_listening_side_fails_the_remote_acquisition(
    tmp_path: Path, small_fs: Path
) -> None:
    """Issue 14: `livesr run --connect` into a `--listen` pipeline whose disk fills:
    the acquisition stops, says how many acknowledged frames the pipeline could not
    write, and exits 1 (it used to print "N acknowledged, 0 in gaps" and exit 0)."""
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        "[esrrf]\nwindow = 4\nstride = 4\nmagnification = 2\n[drift]\nenabled = false\n"
        "[stream]\nresolution_interval_s = 0\nsr_budget_mb_s = 0.001\n"
        "[sim]\nseed = 1\n[sim.camera]\nshape = [32, 32]\ninterval_ms = 2.0\n"
        "exposure_ms = 2.0\n"
    )
    ep = f"ipc://{tmp_path}/in.ipc"
    out = small_fs / "run"
    env = {**__import__("os").environ, "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, "-m", "livesr.stream", "run", "--config", str(cfg), "--no-status"]
    with open(tmp_path / "listen.log", "wb") as log:
        listen = subprocess.Popen(
            [*base, "--listen", ep, "--output", str(out)], stdout=log,
            stderr=subprocess.STDOUT, env=env,
        )
    connect = None
    try:
        deadline = time.monotonic() + 90
        while "listening on" not in (tmp_path / "listen.log").read_text():
            assert listen.poll() is None and time.monotonic() < deadline, (
                tmp_path / "listen.log"
            ).read_text()
            time.sleep(0.05)
        connect = subprocess.run(
            [*base, "--connect", ep, "--frames", str(MAX_FRAMES)],
            capture_output=True, text=True, env=env, timeout=240,
        )
        listen.wait(120)
    finally:
        for p in (listen,):
            if p.poll() is None:
                p.kill()
                p.wait(10)
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_in_gaps"] > 0 and "ENOSPC" in (s["error"] or "")
    assert connect is not None and connect.returncode == 1, connect.stderr
    lost = s["frames_in_gaps"]
    assert (
        f"error: {lost} acknowledged frame(s) could not be written by the pipeline "
        f"({s['frames_persisted']} persisted there)"
    ) in connect.stderr
