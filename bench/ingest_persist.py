"""Ingest + raw persistence alone (processing idle), source in its own process.

::

    python bench/ingest_persist.py                        # the default cases
    python bench/ingest_persist.py --case 256:3000:4 --case 512:1500:3
    python bench/ingest_persist.py --out bench/results/ingest_persist_vm.json

Each case ``SIZE:RATE:SECONDS`` (RATE ``asap``: as fast as the link goes):

1. writes a recording of ``RATE x SECONDS`` frames of SIZE x SIZE uint16 noise (each
   frame's seq stamped into its first pixels) as a livesr ``raw.ome.zarr``;
2. starts an :class:`~livesr.stream._ingest.Ingest` in this process whose
   ``on_frame`` is :meth:`OmeZarrRawStore.append` and nothing else (the frame is
   acknowledged once ``append`` returns: the frame is in the OS);
3. runs ``livesr replay RECORDING --rate RATE --connect ENDPOINT`` as a separate
   process (the replay source reads whole chunks of the recording), and waits for
   its end;
4. reports frames offered (the source's schedule) vs persisted per second, lost
   (acquired - persisted - in gaps), the source's own counters, the CPU time of the
   ingest process per frame, and checks every persisted frame against the recording
   (bit-exact) and the per-frame ``seq``.

Rates are frames per second; ``persisted_fps`` = frames persisted / (last persist -
first persist); ``offered_fps`` = the replay rate asked; ``source_fps`` = frames sent
/ the source process's run time from first to last frame (when the link holds the
source back by credit, ``source_fps`` < ``offered_fps``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CASES = ("256:3000:4", "256:asap:4", "512:1000:4", "512:asap:3")


def make_recording(path: Path, size: int, n: int) -> None:
    """A livesr raw store of ``n`` noise frames with the seq in pixels [0, 0..3]."""
    from livesr.stream._rawstore import OmeZarrRawStore

    rng = np.random.default_rng(0)
    bank = rng.integers(0, 4000, size=(16, size, size), dtype=np.uint16)
    store = OmeZarrRawStore(path)
    store.open(
        (size, size),
        "uint16",
        pixel_size_um=0.1,
        interval_s=1e-3,
        meta={"stream": "bench"},
    )
    for s in range(n):
        f = bank[s % 16]
        f[0, :4] = [(s >> (16 * k)) & 0xFFFF for k in range(4)]
        store.append(s, f, t_acq=s * 1e-3, t_recv=s * 1e-3)
    store.close()


class ZarrPythonBaseline:
    """The writer livesr had before: zarr-python, one chunk per frame (baseline)."""

    def __init__(self, path: Path, n: int) -> None:
        self.path, self.n, self.duplicates, self.chunk_frames = path, n, 0, 1
        self._arr: Any = None
        self._seq: list[int] = []

    def open(self, shape: tuple[int, int], dtype: str, **_: Any) -> None:
        import zarr

        g = zarr.open_group(str(self.path), mode="w-", zarr_format=3)
        self._g = g
        self._arr = g.create_array(
            "0",
            shape=(self.n, 1, 1, *shape),
            chunks=(1, 1, 1, *shape),
            dtype=dtype,
            fill_value=0,
        )

    def append(self, seq: int, frame: np.ndarray, **_: Any) -> None:
        self._arr[len(self._seq), 0, 0] = frame
        self._seq.append(seq)

    def close(self) -> None:
        if self._arr is None:
            return
        self._arr.resize((len(self._seq), *self._arr.shape[1:]))
        self._g.create_array("frames/seq", data=np.asarray(self._seq, np.int64))


class NoStore:
    """Persist nothing: what the source and the link alone reach."""

    duplicates = 0
    chunk_frames = 0

    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self, *a: Any, **k: Any) -> None:
        pass

    def append(self, *a: Any, **k: Any) -> None:
        pass

    def close(self) -> None:
        pass


def run_case(
    size: int, rate: str, seconds: float, folder: Path, writer: str = "append"
) -> dict[str, Any]:
    from livesr.stream._ingest import Ingest, IngestConfig
    from livesr.stream._rawread import open_recording
    from livesr.stream._rawstore import OmeZarrRawStore

    fps = None if rate == "asap" else float(rate)
    n = int((fps or 3000.0) * seconds)
    rec_path = folder / f"rec-{size}-{rate}.ome.zarr"
    make_recording(rec_path, size, n)
    os.sync()  # the recording's pages are clean: only the persisted frames are dirty
    out_path = folder / f"persist-{size}-{rate}.ome.zarr"
    out: Any = {
        "append": lambda: OmeZarrRawStore(out_path),
        "zarr-python": lambda: ZarrPythonBaseline(out_path, n),
        "none": lambda: NoStore(out_path),
    }[writer]()
    endpoint = f"ipc://{folder}/ingest-{size}-{rate}.ipc"
    state: dict[str, Any] = {"n": 0, "t0": None, "t1": None, "append_s": 0.0}
    done = threading.Event()

    def on_frame(header: Any, frame: np.ndarray) -> None:
        now = time.time()
        if state["n"] == 0:
            out.open(
                header.shape,
                header.dtype,
                pixel_size_um=header.pixel_size_um,
                interval_s=1e-3,
                meta={"stream": header.stream},
            )
            state["t0"] = now
        t = time.perf_counter()
        out.append(header.seq, frame, t_acq=header.t_acq, t_recv=now)
        state["append_s"] += time.perf_counter() - t
        state["n"] += 1
        state["t1"] = now

    ingest = Ingest(
        IngestConfig(endpoint=endpoint, window=16, max_frame_bytes=size * size * 2),
        on_frame,
        on_end=lambda stream, summary: done.set(),
    ).start()
    cpu0 = time.process_time()
    self_ru0 = resource.getrusage(resource.RUSAGE_SELF)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_start = time.perf_counter()
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "livesr.stream",
            "replay",
            str(rec_path),
            "--rate",
            rate,
            "--connect",
            endpoint,
            "--no-status",
        ],
        capture_output=True,
        text=True,
        timeout=seconds * 20 + 120,
    )
    wall = time.perf_counter() - t_start
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    src_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    done.wait(30)
    cpu = time.process_time() - cpu0
    self_ru1 = resource.getrusage(resource.RUSAGE_SELF)
    sys_s = self_ru1.ru_stime - self_ru0.ru_stime
    summary = ingest.summary()
    ingest.close()
    out.close()
    line = next((ln for ln in child.stderr.splitlines() if "acknowledged" in ln), "")
    m = re.search(
        r"sent (\d+) of (\d+).*: (\d+) acknowledged, (\d+) in gaps, "
        r"(\d+) unacknowledged",
        line,
    )
    if child.returncode != 0 or m is None:
        raise RuntimeError(
            f"replay source failed (rc {child.returncode}):\n{child.stderr}"
        )
    sent, _, acked, gaps, unacked = (int(v) for v in m.groups())
    persisted = state["n"]
    # every persisted frame bit-exact against the recording, seq in order
    mismatches, seq_ok = 0, None
    if writer != "none":
        import zarr

        g = zarr.open_group(str(out.path), mode="r")
        stored = g["0"]
        with open_recording(rec_path) as a:
            if stored.shape[0] != persisted:
                mismatches = -1
            else:
                for lo in range(0, persisted, 512):
                    hi = min(persisted, lo + 512)
                    got = stored[lo:hi, 0, 0]
                    for i in range(lo, hi):
                        if not np.array_equal(a.read(i), got[i - lo]):
                            mismatches += 1
        seq = g["frames/seq"][:]
        seq_ok = bool(np.array_equal(seq, np.arange(persisted)))
    dt = max(1e-9, (state["t1"] or 0) - (state["t0"] or 0))
    return {
        "writer": writer,
        "shape": [size, size],
        "dtype": "uint16",
        "frame_bytes": size * size * 2,
        "offered_fps": fps if fps is not None else "asap",
        "frames": n,
        "sent": sent,
        "persisted": persisted,
        "acknowledged": acked,
        "in_gaps": gaps,
        "unacknowledged": unacked,
        "lost": sent - persisted - gaps,
        "duplicates": out.duplicates,
        "bit_exact": (mismatches == 0) if writer != "none" else None,
        "seq_in_order": seq_ok,
        "persisted_fps": round(persisted / dt, 1),
        "persisted_MB_per_s": round(persisted * size * size * 2 / dt / 1e6, 1),
        "wall_s": round(wall, 2),
        "ingest_process_cpu_us_per_frame": round(cpu / max(1, persisted) * 1e6, 1),
        "ingest_process_sys_us_per_frame": round(sys_s / max(1, persisted) * 1e6, 1),
        # wall time inside RawStore.append (the persistence share of on_frame)
        "append_us_per_frame": round(state["append_s"] / max(1, persisted) * 1e6, 1),
        # the whole source process, start-up (imports, opening the file) included
        "source_process_cpu_s": round(src_cpu, 2),
        "source_process_cpu_us_per_frame": round(src_cpu / max(1, sent) * 1e6, 1),
        "ingest_rejected": {k: v for k, v in summary.items() if k == "rejected"},
        "chunk_frames": out.chunk_frames,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--case",
        action="append",
        default=[],
        help="SIZE:RATE:SECONDS (RATE: frames/s or asap); repeatable",
    )
    ap.add_argument(
        "--writer",
        action="append",
        default=[],
        choices=["append", "zarr-python", "none"],
        help="raw writer(s) to measure, each case in turn (default: append)",
    )
    ap.add_argument("--out", default="", help="write the results here (JSON)")
    ap.add_argument("--dir", default="", help="work folder (default: a temporary one)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cases = args.case or list(DEFAULT_CASES)
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir or None) as tmp:
        for c in cases:
            size, rate, secs = c.split(":")
            for writer in args.writer or ["append"]:
                folder = Path(tmp) / f"{c.replace(':', '_')}-{writer}"
                folder.mkdir()
                r = run_case(int(size), rate, float(secs), folder, writer)
                results.append(r)
                sys.stdout.write(json.dumps(r) + "\n")
                sys.stdout.flush()
                for p in folder.glob("*.ome.zarr"):  # free the disk between cases
                    subprocess.run(["rm", "-rf", str(p)], check=False)
                os.sync()  # start the next case with no dirty pages
    doc = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python bench/ingest_persist.py " + " ".join(sys.argv[1:]),
        "results": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
