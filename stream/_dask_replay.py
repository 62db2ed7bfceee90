"""Replay many recordings on a Dask cluster: ``livesr replay A B C --scheduler ...``.

::

    client, cluster = connect("local", workers=4)       # or "tcp://host:8786"
    inputs = [ReplayInput.open(p, out / stem, start=0, stop=None) for ...]
    results = replay_on_dask(client, inputs, config, DaskReplayConfig())

Each recording is cut into chunks (:mod:`livesr.stream._replay_chunks`): a chunk owns
the windows whose last frame lies in its ``chunk_frames`` frames and reads
``window - 1`` frames more before them, so every window is computed whole.  With drift
correction on, one task per recording first runs the pipeline's causal drift estimate
over the whole range (one reference, one chain of key frames) and the client hands
each chunk task the per-frame shifts of its frames; the images and ``drift.csv`` are
then the single-process replay's (``livesr replay FILE`` with ``--rate asap``, which
never skips a window), up to the float32 rounding of the per-frame map implementation
the engine picks on each worker (<= 2e-7 of the image maximum, measured).

Workers run the per-frame map through the engine (``esrrf_map``): a worker with a GPU
uses the GPU implementations when they are fastest there, and each worker process
records its timings in the benchmark store of its own machine (``$LIVESR_CACHE_DIR``
or the user cache dir; SQLite WAL, shared safely by the workers of one host).

The client writes the results in window order as chunks complete: ``sr.ome.zarr``,
``windows.csv``, ``drift.csv``, ``summary.json``, ``config.toml`` and ``replay.json``
in each recording's output folder (the raw frames are not copied: the input is the
raw data).  ``windows.csv`` timestamps: ``t_acquired``/``t_received`` = when the chunk
task started reading, ``t_processed`` = when it finished, ``t_published`` = when the
client wrote the image.

Failures: a task that raises is retried (``retries``); a worker that dies is replaced
(a ``LocalCluster``'s nanny restarts it) and the scheduler recomputes what it held,
so the results are complete and identical.  A recording whose task still fails is
reported with its error (its ``summary.json`` says so) and the others finish.

Progress: the scheduler's address and dashboard link, a progress bar over the tasks
(stderr, when it is a terminal and ``progress`` is on) and one line per recording as
it completes.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from livesr.stream._replay_chunks import (
    ChunkResult,
    ChunkSpec,
    DriftPass,
    compute_chunk,
    drift_pass,
    n_windows,
    plan_chunks,
    window_end,
)

__all__ = [
    "DaskReplayConfig",
    "FileResult",
    "ReplayInput",
    "SchedulerError",
    "auto_chunk_frames",
    "connect",
    "parse_scheduler",
    "replay_on_dask",
]

logger = logging.getLogger(__name__)

#: ``--scheduler`` value that starts a ``LocalCluster`` on this machine.
LOCAL = "local"

#: How long :func:`connect` tries to reach a running scheduler by default, s.
CONNECT_TIMEOUT_S = 10.0

_ADDRESS_RE = re.compile(
    r"^(?:(?P<proto>[a-z][a-z0-9+]*)://)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)"
    r":(?P<port>\d{1,5})/?$"
)
_PROTOCOLS = ("tcp", "tls", "ws", "wss", "ucx")


class SchedulerError(ValueError):
    """A ``--scheduler`` value that is not valid, or a scheduler out of reach."""


def parse_scheduler(text: str) -> str:
    """Check a ``--scheduler`` value: ``"local"`` or ``[PROTOCOL://]HOST:PORT``.

    Returns the value (``local`` lower-cased); raises :class:`SchedulerError` naming
    the expected forms.
    """
    t = (text or "").strip()
    if t.lower() == LOCAL:
        return LOCAL
    m = _ADDRESS_RE.match(t)
    ok = m is not None and 0 < int(m.group("port")) < 65536
    if ok and m is not None and m.group("proto") and m.group("proto") not in _PROTOCOLS:
        ok = False
    if not ok:
        raise SchedulerError(
            f"scheduler {text!r} is not valid; expected 'local' (start a LocalCluster "
            "here) or the address of a running dask.distributed scheduler, "
            f"[PROTOCOL://]HOST:PORT with PROTOCOL one of {', '.join(_PROTOCOLS)} "
            "(e.g. tcp://10.0.0.5:8786)"
        )
    return t


def auto_chunk_frames(window: int, stride: int) -> int:
    """Default chunk length: ``max(8 * window, 16 * stride)`` frames (the overlap of
    ``window - 1`` frames then costs at most 1/8 more map computations)."""
    return max(8 * window, 16 * stride)


@dataclass(frozen=True, slots=True, kw_only=True)
class DaskReplayConfig:
    """How to run a replay on Dask.

    Attributes
    ----------
    chunk_frames : int
        Frames per chunk, >= 1 (0: :func:`auto_chunk_frames`).
    retries : int
        Extra attempts of a task that raised, >= 0 (a worker that died is handled by
        the scheduler, not counted here).
    progress : bool or None
        Progress bar on stderr: None = when stderr is a terminal.
    """

    chunk_frames: int = 0
    retries: int = 2
    progress: bool | None = None

    def __post_init__(self) -> None:
        for name in ("chunk_frames", "retries"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(
                    f"DaskReplayConfig {name}={v!r}; expected an integer >= 0"
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayInput:
    """One recording to replay (checked on the client before anything runs).

    Attributes
    ----------
    path : str
        The recording (must be readable at this path by every worker).
    output : Path
        Its output folder.
    start, stop : int
        Frames ``[start, stop)`` of the file.
    shape : (int, int)
        Frame rows, cols.
    pixel_size_um : float
        Effective pixel size, um.
    interval_s : float or None
        Recorded frame interval, s.
    recording : dict
        :meth:`Recording.describe` of the file.
    """

    path: str
    output: Path
    start: int
    stop: int
    shape: tuple[int, int]
    pixel_size_um: float
    interval_s: float | None
    recording: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Frames replayed."""
        return self.stop - self.start

    @classmethod
    def of(cls, rec: Any, output: Path, start: int, stop: int) -> ReplayInput:
        """From an open :class:`~livesr.adapters.sources._readers.Recording`."""
        return cls(
            path=str(rec.path),
            output=Path(output),
            start=int(start),
            stop=int(stop),
            shape=(int(rec.shape[1]), int(rec.shape[2])),
            pixel_size_um=float(rec.pixel_size_um),
            interval_s=rec.interval_s,
            recording=rec.describe(),
        )


@dataclass(slots=True)
class FileResult:
    """What happened to one recording (also its ``summary.json``)."""

    input: ReplayInput
    windows: int = 0
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def connect(
    scheduler: str, *, workers: int | None = None, timeout_s: float | None = None
) -> tuple[Any, Any]:
    """A ``distributed.Client`` for ``scheduler`` (and the ``LocalCluster`` it started).

    Parameters
    ----------
    scheduler : str
        ``"local"`` or a scheduler address (:func:`parse_scheduler`).
    workers : int, optional
        ``LocalCluster`` worker processes (one thread each); default: the CPU count.
    timeout_s : float, optional
        How long to try to reach a remote scheduler, s (default
        :data:`CONNECT_TIMEOUT_S`).

    Returns
    -------
    (client, cluster)
        ``cluster`` is None for a remote scheduler; close both when done.

    Raises
    ------
    SchedulerError
        Bad value, or the scheduler cannot be reached.
    ImportError
        ``dask.distributed`` is not installed (``pip install livesr[dask]``).
    """
    scheduler = parse_scheduler(scheduler)
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ImportError(
            f"--scheduler needs dask.distributed: pip install 'livesr[dask]' ({exc})"
        ) from None
    if scheduler == LOCAL:
        if workers is not None and workers < 1:
            raise SchedulerError(f"workers={workers}; expected an integer >= 1")
        import os

        n = workers or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            # loopback only: the dashboard and scheduler have no authentication
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
        try:
            return Client(cluster), cluster
        except BaseException:
            cluster.close()
            raise
    if workers is not None:
        raise SchedulerError(
            "--workers applies to --scheduler local only (a running scheduler has "
            "its own workers)"
        )
    if timeout_s is None:
        timeout_s = CONNECT_TIMEOUT_S
    try:
        client = Client(scheduler, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {scheduler} within {timeout_s:g} s: "
            f"{type(exc).__name__}: {exc}; expected a running dask.distributed "
            "scheduler (dask scheduler) or --scheduler local"
        ) from None
    except ValueError as exc:
        raise SchedulerError(f"scheduler {scheduler!r}: {exc}") from None
    return client, None


# --------------------------------------------------------------------------- writing
class _FileJob:
    """Client-side state of one recording: plan, pending chunks, result files."""

    def __init__(self, index: int, inp: ReplayInput, config: Any, chunk_frames: int):
        self.index = index
        self.input = inp
        self.config = config
        e = config.esrrf
        self.chunks: list[ChunkSpec] = plan_chunks(
            inp.n_frames, e.window, e.stride, chunk_frames
        )
        self.total = n_windows(inp.n_frames, e.window, e.stride)
        self.drift: DriftPass | None = None
        self.pending: dict[int, ChunkResult] = {}
        self.next_chunk = 0
        self.written = 0
        self.error: str | None = None
        self.done = False
        self.workers: set[str] = set()
        self.implementations: dict[str, int] = {}
        self.t0 = time.time()
        self._out: Any = None  # the ResultWriter (shared with the live pipeline)

    @property
    def n_tasks(self) -> int:
        return len(self.chunks) + (1 if self.config.drift.enabled else 0)

    def open(self) -> None:
        from livesr.stream._resultwriter import ResultWriter

        out = self.input.output
        out.mkdir(parents=True, exist_ok=True)
        e = self.config.esrrf
        self._out = ResultWriter(
            out,
            pixel_size_um=self.input.pixel_size_um,
            magnification=e.magnification,
            interval_s=self.input.interval_s or 1.0,
            stride=e.stride,
            params=asdict(e),
        )

    def shifts_for(self, spec: ChunkSpec) -> np.ndarray | None:
        if self.drift is None:
            return None
        return np.ascontiguousarray(self.drift.shifts[spec.read_start : spec.read_stop])

    def set_drift(self, dp: DriftPass) -> None:
        self.drift = dp
        for row in dp.rows:
            self._out.add_drift(*row)
        self._out.flush()
        if not self.chunks:  # fewer frames than a window: the drift table only
            self.done = True

    def add_chunk(self, res: ChunkResult) -> None:
        self.pending[res.index] = res
        self.workers.add(res.worker)
        self.implementations[res.implementation] = (
            self.implementations.get(res.implementation, 0) + 1
        )
        while self.next_chunk in self.pending:
            self._write(self.pending.pop(self.next_chunk))
            self.next_chunk += 1
        if self.next_chunk == len(self.chunks):
            self.done = True

    def _write(self, res: ChunkResult) -> None:
        e = self.config.esrrf
        for j, image in enumerate(res.images):
            k = res.first_window + j
            if k != self.written:  # the plan guarantees order; never write a hole
                raise RuntimeError(
                    f"{self.input.path}: window {k} arrived, {self.written} was due"
                )
            last = window_end(k, e.window, e.stride)
            shift: tuple[float, float] = (0.0, 0.0)
            sigma = math.nan
            if self.drift is not None:
                shift = (
                    float(self.drift.shifts[last, 0]),
                    float(self.drift.shifts[last, 1]),
                )
                sigma = float(self.drift.last_sigma[last])
            stamps = {
                "acquired": res.t_read,
                "received": res.t_read,
                "processed": res.t_done,
                "published": time.time(),
            }
            self._out.add_window(
                k,
                last - e.window + 1,
                last,
                image,
                stamps,
                shift,
                sigma,
                float(res.quality[j]),
            )
            self.written += 1
        self._out.flush()

    def fail(self, error: str) -> None:
        if self.error is None:
            self.error = error
        self.done = True

    def finish(self, scheduler: str) -> FileResult:
        """Close the result files and write the summary; the file's result."""
        from livesr.stream._pipeline import QUALITY_METRIC
        from livesr.stream._results import write_config, write_summary

        if self.error is None and self.written != self.total:
            self.error = f"{self.written} of {self.total} images written"
        if self._out is not None:
            self._out.close(param_changes=[], error=self.error)
        duration = max(1e-9, time.time() - self.t0)
        inp, e = self.input, self.config.esrrf
        impl = max(
            self.implementations, key=self.implementations.__getitem__, default=None
        )
        summary: dict[str, Any] = {
            "mode": "dask",
            "scheduler": scheduler,
            "recording": inp.path,
            "range": [inp.start, inp.stop],
            "frames_acquired": inp.n_frames,
            "frames_processed": inp.n_frames if self.error is None else None,
            "windows_published": self.written,
            "windows_expected": self.total,
            "windows_skipped": 0,
            "chunks": len(self.chunks),
            "chunk_frames": self.chunks[0].read_stop - self.chunks[0].read_start
            if self.chunks
            else 0,
            "workers": sorted(self.workers),
            "implementations": dict(self.implementations),
            "implementation": {
                **({"drift": "numpy"} if self.config.drift.enabled else {}),
                "esrrf": impl,
            },
            "drift_pass_s": self.drift.seconds if self.drift is not None else None,
            "params": {
                "esrrf": asdict(e),
                "drift": asdict(self.config.drift),
            },
            "params_final": asdict(e),
            "param_changes": [],
            "quality_metric": QUALITY_METRIC,
            "pixel_size_um": inp.pixel_size_um,
            "sr_pixel_size_um": inp.pixel_size_um / e.magnification,
            "frame_interval_s": inp.interval_s or 1.0,
            "duration_s": duration,
            "frames_per_s": inp.n_frames / duration,
            "error": self.error,
            "processing_error": self.error,
            "files": {
                "raw": None,
                "sr": str(self._out.sr_path)
                if self._out is not None and self._out.sr_path is not None
                else None,
                "windows": "windows.csv",
                "drift": "drift.csv",
                "config": "config.toml",
            },
            "output": str(inp.output),
        }
        out = inp.output
        try:
            write_summary(out / "summary.json", summary)
            write_config(out / "config.toml", self.config)
            write_summary(
                out / "replay.json",
                {
                    "recording": dict(inp.recording),
                    "range": [inp.start, inp.stop],
                    "rate": "asap",
                    "scheduler": scheduler,
                    "error": self.error,
                },
            )
        except OSError as exc:
            logger.error("could not write the summary into %s: %s", out, exc)
            self.error = self.error or f"cannot write {out}: {exc}"
        return FileResult(inp, self.written, self.error, summary)


# --------------------------------------------------------------------------- running
def replay_on_dask(
    client: Any,
    inputs: Sequence[ReplayInput],
    config: Any,
    dask_config: DaskReplayConfig | None = None,
    *,
    stream: TextIO | None = None,
    on_result: Callable[[int, str, Any], None] | None = None,
) -> list[FileResult]:
    """Replay ``inputs`` on the cluster behind ``client``; write each one's results.

    Parameters
    ----------
    client : distributed.Client
        Connected client (:func:`connect`).
    inputs : sequence of ReplayInput
        The recordings, each with its own (unused) output folder.
    config : LivesrConfig
        ``esrrf`` and ``drift`` settings (``stream`` settings of a live run do not
        apply: nothing is skipped, nothing is paced).
    dask_config : DaskReplayConfig, optional
        Chunking, retries, progress bar.
    stream : file, optional
        Where progress and per-recording lines go (default ``sys.stderr``).
    on_result : callable, optional
        ``on_result(file_index, kind, result)`` after each task result is written
        (``kind`` ``"drift"`` or ``"chunk"``); for monitoring and tests.

    Returns
    -------
    list of FileResult
        In input order.
    """
    from distributed import as_completed
    from tqdm import tqdm

    dcfg = dask_config or DaskReplayConfig()
    out = stream if stream is not None else sys.stderr
    e = config.esrrf
    chunk_frames = dcfg.chunk_frames or auto_chunk_frames(e.window, e.stride)
    jobs = [_FileJob(i, inp, config, chunk_frames) for i, inp in enumerate(inputs)]
    scheduler = str(client.scheduler.address)
    n_workers = len(client.scheduler_info().get("workers", {}))
    dash = _dashboard(client)
    _say(
        out,
        f"livesr replay: {len(jobs)} recording(s), "
        f"{sum(len(j.chunks) for j in jobs)} chunk(s) of {chunk_frames} frames on the "
        f"Dask scheduler {scheduler} ({n_workers} worker(s)); dashboard: {dash}",
    )
    results: dict[int, FileResult] = {}
    futures: dict[str, tuple[Any, _FileJob, str]] = {}
    ac = as_completed()
    token = f"{time.time_ns():x}"

    def submit(
        job: _FileJob, kind: str, fn: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        key = f"livesr-{kind}-{job.index}-{kw.pop('_n', 0)}-{token}"
        fut = client.submit(fn, *args, key=key, retries=dcfg.retries, pure=False, **kw)
        futures[key] = (fut, job, kind)
        ac.add(fut)

    def submit_chunks(job: _FileJob) -> None:
        for spec in job.chunks:
            submit(
                job,
                "chunk",
                compute_chunk,
                job.input.path,
                job.input.start,
                spec,
                config.esrrf,
                job.shifts_for(spec),
                pixel_size_um=job.input.pixel_size_um,
                _n=spec.index,
            )

    def finish(job: _FileJob) -> None:
        for key in [k for k, v in futures.items() if v[1] is job]:
            futures.pop(key)[0].cancel()
        res = job.finish(scheduler)
        results[job.index] = res
        if res.ok:
            _say(
                out,
                f"livesr replay: {job.input.path}: frames {job.input.start}.."
                f"{job.input.stop - 1}: {res.windows} images ({len(job.chunks)} "
                f"chunk(s) on {len(job.workers)} worker(s)); results in "
                f"{job.input.output}/ (summary.json)",
            )
        else:
            _say(out, f"livesr replay: {job.input.path}: error: {res.error}")

    bar = tqdm(
        total=sum(j.n_tasks for j in jobs),
        desc="livesr replay",
        unit="task",
        file=out,
        disable=True if dcfg.progress is False else None,
        leave=False,
    )
    try:
        for job in jobs:
            job.open()
            if job.total == 0 and not config.drift.enabled:
                finish(job)
                continue
            if config.drift.enabled:
                submit(
                    job,
                    "drift",
                    drift_pass,
                    job.input.path,
                    job.input.start,
                    job.input.stop,
                    # the live pipeline's block at the recording's frame interval
                    block=config.drift.block_frames(job.input.interval_s),
                    max_drift_px=config.drift.max_drift_px,
                    pixel_size_um=job.input.pixel_size_um,
                    priority=10,  # drift passes first: they gate their chunks
                )
            else:
                submit_chunks(job)
        for fut in ac:
            entry = futures.pop(fut.key, None)
            if entry is None:  # cancelled with its recording
                continue
            _, job, kind = entry
            if job.done:
                continue
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - reported per recording
                logger.error("%s: %s task failed: %s", job.input.path, kind, exc)
                job.fail(f"{kind} task failed: {type(exc).__name__}: {exc}")
                finish(job)
                continue
            finally:
                bar.update(1)
                fut.release()  # the client holds the result now; free the worker's
            try:
                if kind == "drift":
                    job.set_drift(res)
                    submit_chunks(job)
                else:
                    job.add_chunk(res)
            except (OSError, RuntimeError, ValueError) as exc:
                job.fail(f"writing results: {type(exc).__name__}: {exc}")
            if on_result is not None:
                on_result(job.index, kind, res)
            if job.done:
                finish(job)
    except BaseException:
        for fut, _, _ in futures.values():
            fut.cancel()
        for job in jobs:
            if job.index not in results:
                job.fail("interrupted")
                results[job.index] = job.finish(scheduler)
        raise
    finally:
        bar.close()
    return [results[j.index] for j in jobs]


def _dashboard(client: Any) -> str:
    try:
        link = client.dashboard_link
    except Exception:  # noqa: BLE001 - no dashboard service
        link = None
    return str(link) if link else "not running (pip install bokeh for the dashboard)"


def _say(stream: TextIO, line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=stream)
