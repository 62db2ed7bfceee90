"""Replay: recording readers (content, pixel size, timing, chunk-wise access, bad files)
and the ReplaySource (range, rates via header timestamps, lossless delivery)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr

from livesr.adapters.sources.replay import (
    ReplayConfig,
    ReplaySource,
    parse_rate,
    processing_throttle,
)
from livesr.stream._ingest import Ingest, IngestConfig
from livesr.stream._rawread import (
    DEFAULT_PIXEL_SIZE_UM,
    CorruptRecordingError,
    RecordingError,
    open_recording,
    parse_range,
    resolve_range,
)
from livesr.stream._rawstore import OmeTiffRawStore, OmeZarrRawStore


def _stack(n: int = 12, h: int = 10, w: int = 8, dtype: Any = np.uint16) -> np.ndarray:
    rng = np.random.default_rng(n * 1000 + h)
    return rng.integers(0, 4000, size=(n, h, w)).astype(dtype)


def _ome_zarr(
    path: Path,
    data: np.ndarray,
    *,
    scale: list[float],
    units: tuple[str, str] = ("second", "micrometer"),
    chunk_t: int = 4,
    zarr_format: int = 3,
) -> Path:
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    ms = {
        "axes": [
            {"name": "t", "type": "time", "unit": units[0]},
            {"name": "y", "type": "space", "unit": units[1]},
            {"name": "x", "type": "space", "unit": units[1]},
        ],
        "datasets": [
            {
                "path": "0",
                "coordinateTransformations": [{"type": "scale", "scale": scale}],
            }
        ],
    }
    if zarr_format == 3:
        root.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    else:
        root.attrs["multiscales"] = [{"version": "0.4", **ms}]
    arr = root.create_array(
        "0",
        shape=data.shape,
        chunks=(chunk_t, *data.shape[1:]),
        dtype=data.dtype,
        fill_value=0,
    )
    arr[:] = data
    return path


class _Counting:
    """Wraps a reader's source array and records every index it is asked for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.shape = inner.shape
        self.dtype = inner.dtype
        self.keys: list[Any] = []

    def __getitem__(self, key: Any) -> Any:
        self.keys.append(key)
        return self.inner[key]


def _t_slices(keys: list[Any], t_axis: int = 0) -> list[tuple[int, int]]:
    return [(k[t_axis].start, k[t_axis].stop) for k in keys]


# ---------------------------------------------------------------------- readers
def test_npy_content_default_and_override_pixel_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _stack()
    np.save(tmp_path / "s.npy", data)
    with caplog.at_level("WARNING"), open_recording(tmp_path / "s.npy") as rec:
        assert (
            rec.format == "npy" and rec.shape == data.shape and rec.dtype == np.uint16
        )
        assert (
            rec.pixel_size_um == DEFAULT_PIXEL_SIZE_UM
            and rec.pixel_size_origin == "default"
        )
        assert (
            rec.interval_s is None and rec.timestamps_s is None and not rec.has_timing
        )
        assert isinstance(rec._source, np.memmap)  # memory-mapped, not loaded
        np.testing.assert_array_equal(np.stack(list(rec.iter_frames())), data)
    assert "gives no pixel size; using 0.1 um" in caplog.text
    with open_recording(tmp_path / "s.npy", pixel_size_um=0.065) as rec:
        assert rec.pixel_size_um == 0.065 and rec.pixel_size_origin == "override"


def test_npy_signed_samples_are_streamed_as_float32(tmp_path: Path) -> None:
    data = (_stack().astype(np.int32) - 2000).astype(np.int16)
    np.save(tmp_path / "s.npy", data)
    with open_recording(tmp_path / "s.npy") as rec:
        assert rec.source_dtype == np.int16 and rec.dtype == np.float32
        np.testing.assert_array_equal(rec.read(3), data[3].astype(np.float32))
        buf = np.empty(data.shape[1:], np.float32)
        np.testing.assert_array_equal(rec.read_into(4, buf), data[4])


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_plain_tiff_content_memmap_or_chunked(
    tmp_path: Path, compression: str | None
) -> None:
    data = _stack()
    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, data, compression=compression)
    with open_recording(p) as rec:
        assert rec.format == "tiff" and rec.shape == data.shape
        assert rec.pixel_size_origin == "default" and not rec.has_timing
        assert isinstance(rec._source, np.memmap) is (compression is None)
        np.testing.assert_array_equal(np.stack(list(rec.iter_frames())), data)


def test_imagej_tiff_pixel_size_and_interval(tmp_path: Path) -> None:
    data = _stack()
    p = tmp_path / "ij.tif"
    tifffile.imwrite(
        p,
        data,
        imagej=True,
        resolution=(1 / 0.16, 1 / 0.16),
        metadata={"axes": "TYX", "unit": "um", "finterval": 0.05},
    )
    with open_recording(p) as rec:
        assert rec.format == "tiff"
        assert (
            rec.pixel_size_um == pytest.approx(0.16)
            and rec.pixel_size_origin == "metadata"
        )
        assert rec.interval_s == pytest.approx(0.05)
        np.testing.assert_array_equal(rec.read(7), data[7])


def test_ome_tiff_pixel_size_interval_and_nm_units(tmp_path: Path) -> None:
    data = _stack()
    p = tmp_path / "s.ome.tif"
    tifffile.imwrite(
        p,
        data,
        ome=True,
        metadata={
            "axes": "TYX",
            "PhysicalSizeX": 107.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 107.0,
            "PhysicalSizeYUnit": "nm",
            "TimeIncrement": 20.0,
            "TimeIncrementUnit": "ms",
        },
    )
    with open_recording(p) as rec:
        assert rec.format == "ome-tiff" and rec.shape == data.shape
        assert rec.pixel_size_um == pytest.approx(
            0.107
        ) and rec.interval_s == pytest.approx(0.02)
        assert rec.frame_time(5) == pytest.approx(0.1)
        np.testing.assert_array_equal(rec.read(11), data[11])


def test_ome_tiff_raw_store_per_frame_timestamps(tmp_path: Path) -> None:
    data = _stack(6)
    store = OmeTiffRawStore(tmp_path / "raw.ome.tif")
    store.open(data.shape[1:], "uint16", pixel_size_um=0.13, interval_s=0.02)
    times = [100.0, 100.021, 100.04, 100.07, 100.08, 100.1]
    for i, f in enumerate(data):
        store.append(i, f, t_acq=times[i], t_recv=0.0)
    store.close()
    with open_recording(tmp_path / "raw.ome.tif") as rec:
        assert rec.format == "ome-tiff" and rec.pixel_size_um == pytest.approx(0.13)
        assert rec.interval_s == pytest.approx(0.02)
        np.testing.assert_allclose(rec.timestamps_s, np.array(times) - 100.0, atol=1e-9)
        assert not isinstance(
            rec._source, np.memmap
        )  # pages with descriptions: read via aszarr
        np.testing.assert_array_equal(np.stack(list(rec.iter_frames())), data)


def test_ome_zarr_v05_and_v04(tmp_path: Path) -> None:
    data = _stack()
    for fmt, name in ((3, "a.ome.zarr"), (2, "b.zarr")):
        p = _ome_zarr(
            tmp_path / name,
            data,
            scale=[5.0, 65.0, 65.0],
            units=("millisecond", "nanometer"),
            zarr_format=fmt,
        )
        with open_recording(p) as rec:
            assert (
                rec.format == "ome-zarr"
                and rec.shape == data.shape
                and rec.block_frames == 4
            )
            assert rec.pixel_size_um == pytest.approx(
                0.065
            ) and rec.interval_s == pytest.approx(0.005)
            np.testing.assert_array_equal(
                np.stack(list(rec.iter_frames(2, 9))), data[2:9]
            )


def test_livesr_raw_zarr_5d_with_timestamps(tmp_path: Path) -> None:
    data = _stack(7)
    store = OmeZarrRawStore(tmp_path / "raw.ome.zarr")
    store.open(data.shape[1:], "uint16", pixel_size_um=0.11, interval_s=0.004)
    for i, f in enumerate(data):
        store.append(
            i, f, t_acq=50.0 + 0.004 * i + (0.001 if i == 3 else 0.0), t_recv=0.0
        )
    store.close()
    with open_recording(tmp_path / "raw.ome.zarr") as rec:
        assert rec.axes == "tczyx" and rec.shape == data.shape
        assert rec.pixel_size_um == pytest.approx(
            0.11
        ) and rec.interval_s == pytest.approx(0.004)
        assert rec.timestamps_s is not None and rec.timestamps_s[3] == pytest.approx(
            0.013
        )
        np.testing.assert_array_equal(np.stack(list(rec.iter_frames())), data)


def test_bare_zarr_array(tmp_path: Path) -> None:
    data = _stack()
    arr = zarr.create_array(
        str(tmp_path / "bare.zarr"),
        shape=data.shape,
        chunks=(3, *data.shape[1:]),
        dtype="float32",
        fill_value=0,
    )
    arr[:] = data.astype(np.float32)
    with open_recording(tmp_path / "bare.zarr") as rec:
        assert (
            rec.dtype == np.float32
            and rec.block_frames == 3
            and rec.pixel_size_origin == "default"
        )
        np.testing.assert_array_equal(rec.read(10), data[10])


def test_sim_written_recordings(tmp_path: Path) -> None:
    from livesr.stream.cli import main

    for fmt in ("ome-tiff", "ome-zarr"):
        out = tmp_path / fmt
        assert (
            main(
                [
                    "sim",
                    "--output",
                    str(out),
                    "--frames",
                    "8",
                    "--shape",
                    "16",
                    "16",
                    "--format",
                    fmt,
                    "--no-progress",
                    "--chunk",
                    "4",
                ]
            )
            == 0
        )
        name = "frames.ome.tif" if fmt == "ome-tiff" else "frames.ome.zarr"
        cfg = json.loads((out / "config.json").read_text())
        with open_recording(out / name) as rec:
            assert rec.shape == (8, 16, 16) and rec.pixel_size_origin == "metadata"
            assert rec.pixel_size_um == pytest.approx(cfg["camera"]["pixel_size_um"])
            assert rec.interval_s == pytest.approx(
                max(cfg["camera"]["interval_ms"], cfg["camera"]["exposure_ms"]) / 1e3
            )


# ------------------------------------------------------------ chunk-wise reading
def test_frame_range_from_memmap_reads_only_those_frames(tmp_path: Path) -> None:
    data = _stack(100, 16, 16)
    np.save(tmp_path / "big.npy", data)
    with open_recording(tmp_path / "big.npy") as rec:
        rec._source = counting = _Counting(rec._source)
        got = np.stack(list(rec.iter_frames(40, 50)))
        np.testing.assert_array_equal(got, data[40:50])
        assert _t_slices(counting.keys) == [(i, i + 1) for i in range(40, 50)]
        assert rec.frames_fetched == 10
        assert rec._block is None  # no frame block held for a memory map


def _rss_file_mib() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssFile:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@pytest.mark.parametrize("kind", ["npy", "tif"])
def test_memmap_pages_of_read_frames_are_given_back(tmp_path: Path, kind: str) -> None:
    data = np.random.default_rng(0).integers(
        0, 60000, size=(96, 256, 512), dtype=np.uint16
    )  # 24 MiB
    p = tmp_path / f"big.{kind}"
    if kind == "npy":
        np.save(p, data)
    else:
        tifffile.imwrite(p, data)
    with open_recording(p) as rec:
        assert rec._mm is not None
        before = _rss_file_mib()
        for i in range(len(rec)):
            np.testing.assert_array_equal(rec.read(i), data[i])
        after = _rss_file_mib()
        for i in (0, 5, 40):  # released pages are mapped again on demand
            np.testing.assert_array_equal(rec.read(i), data[i])
    if before is not None and after is not None:
        assert after - before < 16.0  # not the 24 MiB read


def test_frame_range_from_zarr_reads_only_covering_chunks(tmp_path: Path) -> None:
    data = _stack(100, 16, 16)
    p = _ome_zarr(tmp_path / "big.ome.zarr", data, scale=[0.01, 0.1, 0.1], chunk_t=8)
    with open_recording(p) as rec:
        rec._source = counting = _Counting(rec._source)
        got = np.stack(list(rec.iter_frames(42, 55)))
        np.testing.assert_array_equal(got, data[42:55])
        # one read per chunk along t (40-48, 48-56), never the whole array
        assert _t_slices(counting.keys) == [(40, 48), (48, 56)]
        assert rec.frames_fetched == 16
        assert rec._block is not None and rec._block.nbytes == 8 * 16 * 16 * 2


def test_compressed_tiff_range_reads_pages_one_by_one(tmp_path: Path) -> None:
    data = _stack(30, 16, 16)
    tifffile.imwrite(tmp_path / "c.tif", data, compression="zlib")
    with open_recording(tmp_path / "c.tif") as rec:
        rec._source = counting = _Counting(rec._source)
        np.testing.assert_array_equal(
            np.stack(list(rec.iter_frames(20, 23))), data[20:23]
        )
        assert _t_slices(counting.keys) == [(20, 21), (21, 22), (22, 23)]


# ---------------------------------------------------------------------- bad inputs
def test_missing_file_and_unsupported_type(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_recording(tmp_path / "nope.ome.tif")
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    with pytest.raises(
        RecordingError,
        match=r"file type '\.png' is not supported; supported: OME-TIFF .*\.npy",
    ):
        open_recording(tmp_path / "img.png")


def test_two_d_data_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "img.npy", np.zeros((8, 8), np.uint16))
    with pytest.raises(
        RecordingError, match=r"2-D \(8, 8\).*replay needs a stack of frames"
    ):
        open_recording(tmp_path / "img.npy")
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((8, 8), np.uint16))
    with pytest.raises(RecordingError, match="replay needs a stack of frames"):
        open_recording(tmp_path / "img.tif")


def test_multichannel_refused_naming_axes(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "tc.ome.tif",
        np.zeros((3, 2, 8, 8), np.uint16),
        ome=True,
        metadata={"axes": "TCYX"},
    )
    with pytest.raises(
        RecordingError,
        match=r"more than one non-spatial axis is longer than 1 \(T=3, C=2",
    ):
        open_recording(tmp_path / "tc.ome.tif")


def test_corrupt_files(tmp_path: Path) -> None:
    (tmp_path / "bad.npy").write_bytes(b"not a numpy file at all")
    with pytest.raises(
        CorruptRecordingError, match=r"bad\.npy: not a readable \.npy file"
    ):
        open_recording(tmp_path / "bad.npy")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(
        CorruptRecordingError, match=r"bad\.tif: not a readable TIFF file"
    ):
        open_recording(tmp_path / "bad.tif")
    np.save(tmp_path / "short.npy", _stack())
    raw = (tmp_path / "short.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptRecordingError, match="short.npy"):
        open_recording(tmp_path / "short.npy")


def test_damaged_zarr_chunk_names_file_and_frames(tmp_path: Path) -> None:
    p = _ome_zarr(tmp_path / "d.ome.zarr", _stack(8), scale=[0.01, 0.1, 0.1], chunk_t=4)
    chunk = next(
        q
        for q in (p / "0").rglob("*")
        if q.is_file() and q.name != "zarr.json" and "c" in q.parts
    )
    chunk.write_bytes(b"\x00\x01damaged")
    with (
        open_recording(p) as rec,
        pytest.raises(CorruptRecordingError, match=r"d\.ome\.zarr: cannot read frames"),
    ):
        for i in range(8):
            rec.read(i)


def test_range_and_rate_parsing() -> None:
    assert (
        parse_range("5:20") == (5, 20)
        and parse_range("5:") == (5, None)
        and parse_range(":7") == (0, 7)
    )
    for bad in ("a:b", "5", "-1:3", "7:3", "3:3"):
        with pytest.raises(RecordingError, match="frame range"):
            parse_range(bad)
    assert resolve_range(0, None, 40) == (0, 40)
    with pytest.raises(
        RecordingError,
        match=r"out of bounds for the recording \(40 frames\); "
        r"valid: 0 <= START < STOP <= 40",
    ):
        resolve_range(10, 50, 40)
    with pytest.raises(RecordingError, match="valid: 0 <= START"):
        resolve_range(40, None, 40)
    assert (
        parse_rate("recorded") == "recorded"
        and parse_rate("ASAP") == "asap"
        and parse_rate("250") == 250.0
    )
    for bad in ("fast", "0", "-5", "nan"):
        with pytest.raises(RecordingError, match="rate"):
            parse_rate(bad)
    with pytest.raises(RecordingError, match="frames"):
        ReplayConfig(frames=-1)


# ------------------------------------------------------------ the replay source
class _Collector:
    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.headers: list[Any] = []
        self.ended = threading.Event()

    def on_frame(self, header: Any, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())
        self.headers.append(header)

    def on_end(self, stream: str, summary: dict[str, Any]) -> None:
        self.ended.set()


def _replay(
    tmp_path: Path, rec: Any, cfg: ReplayConfig, **kw: Any
) -> tuple[_Collector, dict[str, Any]]:
    col = _Collector()
    ep = f"ipc://{tmp_path}/in.ipc"
    with Ingest(
        IngestConfig(endpoint=ep, window=8, linger_ms=0),
        col.on_frame,
        on_end=col.on_end,
    ):
        summary = ReplaySource(rec, ep, cfg, **kw).run()
        assert col.ended.wait(10.0)
    return col, summary


def test_replay_asap_range_delivers_exactly_those_frames(tmp_path: Path) -> None:
    data = _stack(30)
    np.save(tmp_path / "s.npy", data)
    with open_recording(tmp_path / "s.npy", pixel_size_um=0.2) as rec:
        col, summary = _replay(
            tmp_path, rec, ReplayConfig(rate="asap", start=5, stop=25, ring_frames=4)
        )
    assert (
        summary["frames_acquired"] == 20 == summary["frames_acked"]
        and summary["frames_in_gaps"] == 0
    )
    assert [h.seq for h in col.headers] == list(range(20))
    assert [h.meta["ImageNumber"] for h in col.headers] == list(range(5, 25))
    assert col.headers[0].pixel_size_um == 0.2 and col.headers[0].dtype == "uint16"
    assert (
        "interval_ms" not in col.headers[0].meta
    )  # asap without timing: no interval announced
    np.testing.assert_array_equal(np.stack(col.frames), data[5:25])


def test_replay_fixed_fps_header_timestamps(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", _stack(10))
    with open_recording(tmp_path / "s.npy") as rec:
        col, _ = _replay(tmp_path, rec, ReplayConfig(rate=500.0, frames=6))
    t = np.array([h.t_acq for h in col.headers])
    assert len(t) == 6
    np.testing.assert_allclose(np.diff(t), 1 / 500.0, atol=1e-5)
    assert col.headers[0].meta["interval_ms"] == pytest.approx(2.0)


def test_replay_recorded_uses_per_frame_timestamps(tmp_path: Path) -> None:
    data = _stack(6)
    store = OmeZarrRawStore(tmp_path / "raw.ome.zarr")
    store.open(data.shape[1:], "uint16", pixel_size_um=0.1, interval_s=0.004)
    times = [10.0, 10.004, 10.010, 10.012, 10.020, 10.021]
    for i, f in enumerate(data):
        store.append(i, f, t_acq=times[i], t_recv=0.0)
    store.close()
    with open_recording(tmp_path / "raw.ome.zarr") as rec:
        col, _ = _replay(tmp_path, rec, ReplayConfig(rate="recorded", start=1))
    t = np.array([h.t_acq for h in col.headers])
    np.testing.assert_allclose(np.diff(t), np.diff(times[1:]), atol=1e-5)
    np.testing.assert_allclose(
        [h.meta["recorded_t_s"] for h in col.headers],
        np.array(times[1:]) - 10.0,
        atol=1e-9,
    )
    assert col.headers[0].meta["interval_ms"] == pytest.approx(4.0)


def test_replay_asap_header_times_are_send_times(tmp_path: Path) -> None:
    _ome_zarr(
        tmp_path / "a.ome.zarr", _stack(8), scale=[10.0, 0.1, 0.1]
    )  # 10 s interval: never waited for
    with open_recording(tmp_path / "a.ome.zarr") as rec:
        col, _ = _replay(tmp_path, rec, ReplayConfig(rate="asap"))
    t = np.array([h.t_acq for h in col.headers])
    assert len(t) == 8 and np.all(np.diff(t) >= 0) and t[-1] - t[0] < 10.0
    assert col.headers[0].meta["interval_ms"] == pytest.approx(
        10_000.0
    )  # the recorded interval


def test_replay_recorded_without_timing_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", _stack(4))
    with open_recording(tmp_path / "s.npy") as rec:
        with pytest.raises(RecordingError, match="no timing metadata.*--rate asap"):
            ReplaySource(rec, "inproc://x", ReplayConfig(rate="recorded"))
        with pytest.raises(
            RecordingError,
            match=r"out of bounds .*\(4 frames\); valid: 0 <= START < STOP <= 4",
        ):
            ReplaySource(rec, "inproc://x", ReplayConfig(start=2, stop=9))


def test_replay_stops_on_request(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", _stack(50))
    stop = threading.Event()
    sent: list[int] = []

    def throttle(k: int) -> None:
        sent.append(k)
        if k == 7:
            stop.set()

    with open_recording(tmp_path / "s.npy") as rec:
        col, summary = _replay(
            tmp_path, rec, ReplayConfig(rate="asap"), stop_event=stop, throttle=throttle
        )
    assert (
        summary["frames_acquired"] == 7 == len(col.frames)
        and summary["frames_unacked"] == 0
    )


def test_processing_throttle_waits_for_processing() -> None:
    state = {
        "frames_processed": 0,
        "frames_dropped_for_processing": 0,
        "frames_not_offered": 0,
    }
    throttle = processing_throttle(lambda: state, max_lag=2, poll_s=0.001)
    throttle(2)  # 0 >= 2 - 2: no wait
    done = threading.Event()
    t = threading.Thread(target=lambda: (throttle(5), done.set()))
    t.start()
    assert not done.wait(0.05)
    state["frames_processed"] = 2
    state["frames_not_offered"] = 1
    assert done.wait(5.0)
    t.join()
    stalled = processing_throttle(lambda: state, max_lag=1, stall_s=0.02, poll_s=0.001)
    stalled(100)  # no progress: gives up instead of hanging
    stalled(200)


def test_raw_store_with_gaps_or_unclean_close_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _stack(5)
    store = OmeZarrRawStore(tmp_path / "raw.ome.zarr")
    store.open(data.shape[1:], "uint16", pixel_size_um=0.1, interval_s=0.01)
    for i, f in enumerate(data):
        store.append(i, f, t_acq=float(i), t_recv=0.0)
    store.close(gaps=[[5, 7, "source ring overflow"]], error="disk full")
    with caplog.at_level("WARNING"), open_recording(tmp_path / "raw.ome.zarr") as rec:
        assert rec.shape == data.shape
    assert "was not closed cleanly (disk full)" in caplog.text
    assert "misses 3 frame(s) in 1 gap(s)" in caplog.text


def test_big_endian_and_singleton_leading_axes(tmp_path: Path) -> None:
    data = _stack(6)
    np.save(tmp_path / "be.npy", data.astype(">u2"))
    np.save(tmp_path / "4d.npy", data[None])  # (1, t, y, x): the long axis is the stack
    with open_recording(tmp_path / "be.npy") as rec:
        assert rec.dtype == np.dtype("uint16") and rec.dtype.isnative
        buf = np.empty(data.shape[1:], np.uint16)
        np.testing.assert_array_equal(rec.read_into(2, buf), data[2])
        np.testing.assert_array_equal(rec.read(5), data[5])
    with open_recording(tmp_path / "4d.npy") as rec:
        assert rec.shape == data.shape
        np.testing.assert_array_equal(np.stack(list(rec.iter_frames())), data)


def test_replay_obeys_the_ingest_stop_message(tmp_path: Path) -> None:
    """The pipeline's "stop" control message (run ended, disk full) stops a replay that
    runs in another process or thread, as it stops the simulated camera."""
    np.save(tmp_path / "s.npy", _stack(400))
    ep = f"ipc://{tmp_path}/in.ipc"
    got: list[int] = []
    ended = threading.Event()
    ingest: Ingest

    def on_frame(header: Any, frame: np.ndarray) -> None:
        got.append(header.seq)
        if header.seq == 9:
            ingest.request_stop("enough frames")

    ingest = Ingest(
        IngestConfig(endpoint=ep, window=8, linger_ms=0),
        on_frame,
        on_end=lambda s, summ: ended.set(),
    ).start()
    try:
        with open_recording(tmp_path / "s.npy") as rec:
            src = ReplaySource(rec, ep, ReplayConfig(rate=200.0))
            summary = src.run()  # 2 s of frames if the stop were ignored
        assert ended.wait(10.0)
    finally:
        ingest.close()
    assert src.stop_event.is_set()
    assert 10 <= summary["frames_acquired"] < 400
    assert summary["frames_acquired"] == len(got) == summary["frames_acked"]
    assert got == list(range(len(got)))
