"""Raw stores after ``kill -9``: exactly the frames written, readable, replayable.

A child process writes frames through a raw store (OME-Zarr or OME-TIFF) and reports
every frame whose ``append`` returned; the test kills it with SIGKILL in the middle of
a chunk, then checks the recovered store (count, pixels, per-frame metadata, no
leftover reserve) and ``livesr replay`` of it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from livesr.stream._rawread import open_recording
from livesr.stream._rawstore import (
    OmeTiffRawStore,
    OmeZarrRawStore,
    RawStoreBusyError,
    needs_recovery,
    open_raw_store,
    recover_raw_store,
)
from livesr.stream.cli import main

SHAPE = (32, 64)  # 4 KiB frames: the zarr store writes them with O_DIRECT
CHUNK = 8  # zarr frames per chunk: small, so that a kill lands mid-chunk

CHILD = r"""
import sys, time
import numpy as np
from livesr.stream._rawstore import OmeZarrRawStore, OmeTiffRawStore

fmt, path, n_pause, shape0, shape1, chunk = sys.argv[1:7]
n_pause, shape, chunk = int(n_pause), (int(shape0), int(shape1)), int(chunk)
store = (OmeZarrRawStore(path, chunk_frames=chunk) if fmt == "ome-zarr"
         else OmeTiffRawStore(path))
store.open(shape, "uint16", pixel_size_um=0.13, interval_s=0.02,
           meta={"stream": "cam7"})

def frame(seq):
    f = np.random.default_rng(seq).integers(0, 65535, shape, dtype=np.uint16)
    f[0, 0] = seq
    return f

seq = 0
while True:
    store.append(seq, frame(seq), t_acq=1000.0 + 0.02 * seq, t_recv=2000.0 + seq)
    sys.stdout.write(f"{seq}\n"); sys.stdout.flush()
    seq += 1
    if seq == n_pause:          # deterministic case: stop mid-chunk and wait
        time.sleep(600)
"""


def frame(seq: int) -> np.ndarray:
    f = np.random.default_rng(seq).integers(0, 65535, SHAPE, dtype=np.uint16)
    f[0, 0] = seq
    return f


STORE_NAME = {"ome-zarr": "raw.ome.zarr", "ome-tiff": "raw.ome.tif"}


def _write_and_kill(fmt: str, folder: Path, *, pause_at: int, kill_after: int) -> int:
    """Run the writer child; SIGKILL it once ``kill_after`` frames are acknowledged.

    Returns the number of frames acknowledged (append returned and reported) before
    the kill, counting the reports still in the pipe.
    """
    path = folder / STORE_NAME[fmt]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, fmt, str(path), str(pause_at), *map(str, SHAPE)]
        + [str(CHUNK)],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked = -1
    watchdog = threading.Timer(120.0, child.kill)  # never hang on a silent child
    watchdog.start()
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acked = int(line)
            if acked + 1 >= kill_after:
                break
        os.kill(child.pid, signal.SIGKILL)
        # lines still in the pipe: frames acknowledged before the kill landed
        for line in child.stdout:
            acked = int(line)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return acked + 1


def _read_raw(fmt: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(frames, seq) straight from the file with zarr-python / tifffile."""
    if fmt == "ome-zarr":
        g = zarr.open_group(str(path), mode="r")
        return g["0"][:, 0, 0], g["frames/seq"][:]
    with tifffile.TiffFile(path) as tf:
        frames = tf.series[0].asarray().reshape(-1, *SHAPE)
    with tifffile.TiffFile(path, is_ome=False) as tf:
        tf.pages.useframes = False
        seqs = [json.loads(p.description)["seq"] for p in list(tf.pages)[1:]]
    return frames, np.array([0, *seqs]) if len(frames) else np.array([])


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
def test_kill9_mid_chunk_recovers_exactly_the_frames_written(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 13  # 1 full chunk of 8 + 5 frames of the next
    acked = _write_and_kill(fmt, tmp_path, pause_at=n, kill_after=n)
    assert acked == n
    path = tmp_path / STORE_NAME[fmt]
    assert (tmp_path / (path.name + ".reserve")).exists()  # the crash left it
    assert needs_recovery(path)
    info = recover_raw_store(tmp_path)  # a run folder works too
    assert info == {"path": str(path), "format": fmt, "frames": n, "recovered": True}
    assert not (tmp_path / (path.name + ".reserve")).exists()
    assert not needs_recovery(path)
    frames, seq = _read_raw(fmt, path)
    assert frames.shape == (n, *SHAPE)  # nothing unwritten appears as a frame
    for s in range(n):
        np.testing.assert_array_equal(frames[s], frame(s))
    np.testing.assert_array_equal(seq, np.arange(n))
    if fmt == "ome-zarr":
        g = zarr.open_group(str(path), mode="r")
        live = g.attrs["livesr"]
        assert live["frames"] == n and live["recovered"] is True
        assert live["complete"] is False and "not closed cleanly" in live["error"]
        np.testing.assert_allclose(g["frames/t_acq"][:], 1000.0 + 0.02 * np.arange(n))
        np.testing.assert_allclose(g["frames/t_recv"][:], 2000.0 + np.arange(n))
    # a second recovery changes nothing
    assert recover_raw_store(path)["recovered"] is False
    # replay of the crashed store: exactly the frames written, bit-exact (copied)
    out = tmp_path / "rep"
    argv = ["replay", str(path), "--output", str(out), "--rate", "asap", "--no-status"]
    argv += ["--window", "4", "--stride", "4", "--drift", "off", "--copy-raw"]
    argv += ["--raw-format", "ome-zarr"]
    assert main(argv) == 0, capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_acquired"] == n == s["frames_persisted"]
    copy = zarr.open_group(str(out / "raw.ome.zarr"), mode="r")["0"][:, 0, 0]
    np.testing.assert_array_equal(copy, np.stack([frame(i) for i in range(n)]))


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
def test_kill9_while_writing_then_replay_uses_exactly_the_frames_on_disk(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed at full speed (maybe inside a write): every acknowledged frame is
    there, at most the one in flight more, nothing torn or invented."""
    acked = _write_and_kill(fmt, tmp_path, pause_at=-1, kill_after=37)
    path = tmp_path / STORE_NAME[fmt]
    out = tmp_path / "rep"
    # no explicit recovery: open_recording (inside replay) recovers the store
    argv = ["replay", str(path), "--output", str(out), "--rate", "asap", "--no-status"]
    argv += ["--window", "4", "--stride", "4", "--drift", "off"]
    assert main(argv) == 0, capsys.readouterr().err
    frames, seq = _read_raw(fmt, path)
    n = len(frames)
    assert acked <= n <= acked + 1  # + the frame appended but not yet reported
    for s in range(n):
        np.testing.assert_array_equal(frames[s], frame(s))
    np.testing.assert_array_equal(seq, np.arange(n))
    assert not (tmp_path / (path.name + ".reserve")).exists()
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_acquired"] == n == s["frames_persisted"]
    ref = json.loads((out / "raw.json").read_text())
    assert ref["source"] == str(path) and ref["range"] == [0, n]


def test_recovery_refuses_a_store_still_being_written(tmp_path: Path) -> None:
    store = OmeZarrRawStore(tmp_path / "raw.ome.zarr", chunk_frames=4)
    store.open(SHAPE, "uint16", pixel_size_um=0.1, interval_s=0.01)
    for s in range(6):
        store.append(s, frame(s), t_acq=float(s), t_recv=float(s))
    with pytest.raises(RawStoreBusyError, match="being written by a running process"):
        recover_raw_store(store.path)
    # a reader meanwhile sees the completed chunk (4 frames), never a partial one
    with open_recording(store.path) as rec:
        assert rec.shape == (4, *SHAPE)
        np.testing.assert_array_equal(rec.read(3), frame(3))
    store.append(6, frame(6), t_acq=6.0, t_recv=6.0)
    store.close()
    g = zarr.open_group(str(store.path), mode="r")
    assert g["0"].shape[0] == 7 and g.attrs["livesr"]["complete"] is True


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
def test_a_frame_is_never_persisted_twice(fmt: str, tmp_path: Path) -> None:
    store = open_raw_store(fmt, tmp_path)
    store.open(SHAPE, "uint16", pixel_size_um=0.1, interval_s=0.01)
    written = [
        store.append(s, frame(s), t_acq=float(s), t_recv=float(s))
        for s in (0, 1, 1, 0, 2)  # retries of seq 1 and 0
    ]
    assert written == [True, True, False, False, True]
    store.close()
    assert store.frames_written == 3 and store.duplicates == 2
    with open_recording(store.path) as rec:
        assert rec.shape == (3, *SHAPE)
        for s in range(3):
            np.testing.assert_array_equal(rec.read(s), frame(s))


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
def test_non_finite_metadata_keeps_the_files_valid(fmt: str, tmp_path: Path) -> None:
    store = open_raw_store(fmt, tmp_path)
    meta = {"exposure_ms": math.nan, "gain": math.inf, "nested": [-math.inf, 1.5]}
    store.open(SHAPE, "uint16", pixel_size_um=0.1, interval_s=0.01, meta=meta)
    store.append(0, frame(0), t_acq=math.nan, t_recv=1.0)
    store.append(1, frame(1), t_acq=2.0, t_recv=math.inf)
    store.close()

    def strict(text: str) -> object:
        def refuse(name: str) -> object:
            raise ValueError(f"bare {name} in JSON")

        return json.loads(text, parse_constant=refuse)

    if fmt == "ome-zarr":
        doc = strict((store.path / "zarr.json").read_text())
        assert isinstance(doc, dict)
        got = doc["attributes"]["livesr"]["meta"]
        assert got == {
            "exposure_ms": "NaN",
            "gain": "Infinity",
            "nested": ["-Infinity", 1.5],
        }
        g = zarr.open_group(str(store.path), mode="r")
        assert math.isnan(g["frames/t_acq"][0]) and math.isinf(g["frames/t_recv"][1])
    else:
        with tifffile.TiffFile(store.path, is_ome=False) as tf:
            tf.pages.useframes = False
            strict(tf.pages[1].description)
    with open_recording(store.path) as rec:
        np.testing.assert_array_equal(rec.read(1), frame(1))


def test_zarr_store_reads_back_with_zarr_python_across_chunks(tmp_path: Path) -> None:
    store = OmeZarrRawStore(tmp_path / "raw.ome.zarr", chunk_frames=5)
    store.open(SHAPE, "uint16", pixel_size_um=0.1, interval_s=0.01)
    n = 23
    for s in range(n):
        store.append(100 + s, frame(s), t_acq=float(s), t_recv=float(s))
    store.close()
    assert store.direct  # 4 KiB frames on a disk filesystem: O_DIRECT
    g = zarr.open_group(str(store.path), mode="r")
    assert g["0"].chunks == (5, 1, 1, *SHAPE)
    np.testing.assert_array_equal(
        g["0"][:, 0, 0], np.stack([frame(s) for s in range(n)])
    )
    np.testing.assert_array_equal(g["frames/seq"][:], 100 + np.arange(n))
    with open_recording(store.path) as rec:  # whole chunks from the files
        assert type(rec._source).__name__ == "_ChunkFiles" and rec.block_frames == 5
        buf = np.empty(SHAPE, np.uint16)
        for s in range(n):
            np.testing.assert_array_equal(rec.read_into(s, buf), frame(s))


def test_tiff_store_is_recovered_when_killed_before_the_first_page(
    tmp_path: Path,
) -> None:
    store = OmeTiffRawStore(tmp_path / "raw.ome.tif")
    store.open(SHAPE, "uint16", pixel_size_um=0.1, interval_s=0.01)
    # simulate the crash: drop the writer without closing (the reserve stays)
    os.close(store._reserve._fd)  # the process is gone: its lock is released
    store._reserve._fd = None
    store._tw = None
    store._file.close()
    info = recover_raw_store(store.path)
    assert info["frames"] == 0 and info["recovered"] is True
    assert not (tmp_path / "raw.ome.tif.reserve").exists()


def test_zarr_store_buffered_and_direct_write_the_same_bytes(tmp_path: Path) -> None:
    stores = {}
    for direct in (False, True):
        st = OmeZarrRawStore(
            tmp_path / f"{direct}.ome.zarr", chunk_frames=4, direct=direct
        )
        st.open(SHAPE, "uint16", pixel_size_um=0.1, interval_s=0.01)
        for s in range(10):
            st.append(s, frame(s), t_acq=float(s), t_recv=float(s))
        st.close()
        assert st.direct is direct
        stores[direct] = st.path
    for j in range(3):  # chunk files byte for byte (the last one padded whole)
        rel = Path("0", "c", str(j), "0", "0", "0", "0")
        a = (stores[False] / rel).read_bytes()
        assert a == (stores[True] / rel).read_bytes() and len(a) == 4 * 2 * 32 * 64
    with pytest.raises(ValueError, match="multiple of 4096 bytes"):
        OmeZarrRawStore(tmp_path / "odd.ome.zarr", direct=True).open(
            (3, 5), "uint16", pixel_size_um=0.1, interval_s=0.01
        )
