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
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from livesr.stream._replay_chunks import compute_chunk, drift_pass
from livesr.stream._replay_job import FileJob, FileResult, ReplayInput

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
    dcfg = dask_config or DaskReplayConfig()
    out = stream if stream is not None else sys.stderr
    e = config.esrrf
    chunk_frames = dcfg.chunk_frames or auto_chunk_frames(e.window, e.stride)
    jobs = [FileJob(i, inp, config, chunk_frames) for i, inp in enumerate(inputs)]
    run = _DaskRun(client, config, dcfg, out, on_result)
    n_workers = len(client.scheduler_info().get("workers", {}))
    _say(
        out,
        f"livesr replay: {len(jobs)} recording(s), "
        f"{sum(len(j.chunks) for j in jobs)} chunk(s) of {chunk_frames} frames on the "
        f"Dask scheduler {run.scheduler} ({n_workers} worker(s)); dashboard: "
        f"{_dashboard(client)}",
    )
    return run.run(jobs)


class _DaskRun:
    """The client's loop of one :func:`replay_on_dask`: submits each recording's
    tasks (the drift pass first, its chunks once it is done), writes every result as
    it completes, finishes a recording when its last chunk is written or a task of
    it failed, and cancels what is left on an interrupt."""

    def __init__(
        self,
        client: Any,
        config: Any,
        dcfg: DaskReplayConfig,
        out: TextIO,
        on_result: Callable[[int, str, Any], None] | None,
    ) -> None:
        from distributed import as_completed

        self.client = client
        self.config = config
        self.dcfg = dcfg
        self.out = out
        self.on_result = on_result
        self.scheduler = str(client.scheduler.address)
        self.results: dict[int, FileResult] = {}
        self.futures: dict[str, tuple[Any, FileJob, str]] = {}
        self.ac = as_completed()
        self.token = f"{time.time_ns():x}"

    def run(self, jobs: list[FileJob]) -> list[FileResult]:
        """Submit every recording, handle results until all are written."""
        from tqdm import tqdm

        bar = tqdm(
            total=sum(j.n_tasks for j in jobs),
            desc="livesr replay",
            unit="task",
            file=self.out,
            disable=True if self.dcfg.progress is False else None,
            leave=False,
        )
        try:
            for job in jobs:
                self.start(job)
            for fut in self.ac:
                self.on_done(fut, bar)
        except BaseException:
            for fut, _, _ in self.futures.values():
                fut.cancel()
            for job in jobs:
                if job.index not in self.results:
                    job.fail("interrupted")
                    self.results[job.index] = job.finish(self.scheduler)
            raise
        finally:
            bar.close()
        return [self.results[j.index] for j in jobs]

    def submit(
        self, job: FileJob, kind: str, fn: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        key = f"livesr-{kind}-{job.index}-{kw.pop('_n', 0)}-{self.token}"
        fut = self.client.submit(
            fn, *args, key=key, retries=self.dcfg.retries, pure=False, **kw
        )
        self.futures[key] = (fut, job, kind)
        self.ac.add(fut)

    def start(self, job: FileJob) -> None:
        """Open the recording's result files and submit its first tasks."""
        drift = self.config.drift
        job.open()
        if job.total == 0 and not drift.enabled:
            self.finish(job)
        elif drift.enabled:
            self.submit(
                job,
                "drift",
                drift_pass,
                job.input.path,
                job.input.start,
                job.input.stop,
                # the live pipeline's block at the recording's frame interval
                block=drift.block_frames(job.input.interval_s),
                max_drift_px=drift.max_drift_px,
                pixel_size_um=job.input.pixel_size_um,
                region_px=drift.region_px,
                priority=10,  # drift passes first: they gate their chunks
            )
        else:
            self.submit_chunks(job)

    def submit_chunks(self, job: FileJob) -> None:
        for spec in job.chunks:
            self.submit(
                job,
                "chunk",
                compute_chunk,
                job.input.path,
                job.input.start,
                spec,
                self.config.esrrf,
                job.shifts_for(spec),
                pixel_size_um=job.input.pixel_size_um,
                _n=spec.index,
            )

    def on_done(self, fut: Any, bar: Any) -> None:
        """Write one completed task's result (a failed task fails its recording)."""
        entry = self.futures.pop(fut.key, None)
        if entry is None:  # cancelled with its recording
            return
        _, job, kind = entry
        if job.done:
            return
        try:
            res = fut.result()
        except Exception as exc:  # noqa: BLE001 - reported per recording
            logger.error("%s: %s task failed: %s", job.input.path, kind, exc)
            job.fail(f"{kind} task failed: {type(exc).__name__}: {exc}")
            self.finish(job)
            return
        finally:
            bar.update(1)
            fut.release()  # the client holds the result now; free the worker's
        try:
            if kind == "drift":
                job.set_drift(res)
                self.submit_chunks(job)
            else:
                job.add_chunk(res)
        except (OSError, RuntimeError, ValueError) as exc:
            job.fail(f"writing results: {type(exc).__name__}: {exc}")
        if self.on_result is not None:
            self.on_result(job.index, kind, res)
        if job.done:
            self.finish(job)

    def finish(self, job: FileJob) -> None:
        """Cancel the recording's remaining tasks, close its files, say so."""
        for key in [k for k, v in self.futures.items() if v[1] is job]:
            self.futures.pop(key)[0].cancel()
        res = job.finish(self.scheduler)
        self.results[job.index] = res
        if res.ok:
            _say(
                self.out,
                f"livesr replay: {job.input.path}: frames {job.input.start}.."
                f"{job.input.stop - 1}: {res.windows} images ({len(job.chunks)} "
                f"chunk(s) on {len(job.workers)} worker(s)); results in "
                f"{job.input.output}/ (summary.json)",
            )
        else:
            _say(self.out, f"livesr replay: {job.input.path}: error: {res.error}")


def _dashboard(client: Any) -> str:
    try:
        link = client.dashboard_link
    except Exception:  # noqa: BLE001 - no dashboard service
        link = None
    return str(link) if link else "not running (pip install bokeh for the dashboard)"


def _say(stream: TextIO, line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=stream)
