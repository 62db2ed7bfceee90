"""Persistent benchmark store: SQLite under the user cache directory, off the hot path.

Where: ``$LIVESR_CACHE_DIR/benchmarks.sqlite`` if the variable is set, else
``platformdirs.user_cache_dir("livesr")/benchmarks.sqlite``.

What: one row per recorded run ``(fingerprint, kernel, impl, signature, seconds,
recorded_at)``; ``fingerprint`` is the machine's (:mod:`._fingerprint`),
``signature`` an :attr:`InputSignature.key`.  Only the newest ``keep`` (200) rows per
key are kept; the agent uses the last 50.

How: :meth:`BenchmarkStore.record` appends to an in-memory table and returns.  A
daemon thread, started on the first record, writes the pending rows every
``flush_interval_s`` in one short transaction; :meth:`close` (also registered with
``atexit`` on the first record) writes the rest.  The database runs in WAL mode
with a busy timeout, so several processes can record at once.  Nothing touches the
disk before the first :meth:`runs` or :meth:`record`.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path

from livesr.engine._fingerprint import fingerprint as machine_fingerprint
from livesr.engine._fingerprint import machine_description

logger = logging.getLogger(__name__)

CACHE_ENV = "LIVESR_CACHE_DIR"
DB_NAME = "benchmarks.sqlite"
_MAX_PENDING = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS machines (
    fingerprint TEXT PRIMARY KEY,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    kernel TEXT NOT NULL,
    impl TEXT NOT NULL,
    signature TEXT NOT NULL,
    seconds REAL NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs (fingerprint, kernel, impl, signature, id);
"""


def cache_dir() -> Path:
    """The livesr cache directory (``$LIVESR_CACHE_DIR`` or the platform's user cache)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("livesr"))


class BenchmarkStore:
    """Run times by machine, kernel, implementation and input signature.

    Parameters
    ----------
    path : path-like, optional
        The SQLite file; default ``cache_dir() / "benchmarks.sqlite"``.
    fingerprint : str, optional
        Machine fingerprint to read and write under (default: this machine's).
    flush_interval_s : float
        Seconds between background flushes (> 0).
    window : int
        Run times per key kept in memory for the agent (the newest).
    keep : int
        Rows per key kept in the database (>= window).
    busy_timeout_s : float
        How long a write waits for another process's transaction.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        fingerprint: str | None = None,
        flush_interval_s: float = 2.0,
        window: int = 50,
        keep: int = 200,
        busy_timeout_s: float = 10.0,
    ) -> None:
        if not flush_interval_s > 0:
            raise ValueError(
                f"BenchmarkStore.flush_interval_s={flush_interval_s!r}: expected > 0"
            )
        if window < 1:
            raise ValueError(f"BenchmarkStore.window={window!r}: expected >= 1")
        if keep < window:
            raise ValueError(
                f"BenchmarkStore.keep={keep!r}: expected >= window ({window})"
            )
        if not busy_timeout_s > 0:
            raise ValueError(
                f"BenchmarkStore.busy_timeout_s={busy_timeout_s!r}: expected > 0"
            )
        self._path = Path(path) if path is not None else None
        self._fingerprint = fingerprint
        self.flush_interval_s = float(flush_interval_s)
        self.window = int(window)
        self.keep = int(keep)
        self.busy_timeout_s = float(busy_timeout_s)
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._pending: list[tuple[str, str, str, float, float]] = []
        self._mem: dict[str, dict[tuple[str, str], deque[float]]] = {}
        self._schema_ready = False
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._atexit = False
        self.flushes = 0
        self.rows_written = 0

    def __repr__(self) -> str:
        return f"BenchmarkStore({str(self.path)!r})"

    @property
    def path(self) -> Path:
        """The SQLite file."""
        if self._path is None:
            self._path = cache_dir() / DB_NAME
        return self._path

    @property
    def fingerprint(self) -> str:
        """The machine fingerprint rows are read and written under."""
        if self._fingerprint is None:
            self._fingerprint = machine_fingerprint()
        return self._fingerprint

    # -- database -----------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None
        )
        con.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        if not self._schema_ready:
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.debug("%s: journal mode %s (WAL unavailable)", self.path, mode)
            con.executescript(_SCHEMA)
            self._schema_ready = True
        return con

    def runs(self, kernel: str) -> dict[tuple[str, str], list[float]]:
        """This machine's newest run times of ``kernel`` by ``(impl, signature key)``.

        Loaded from disk on the first call per kernel (after writing pending rows),
        then kept up to date in memory.  Read errors are logged and give ``{}``.
        """
        with self._lock:
            mem = self._mem.get(kernel)
        if mem is None:
            self.flush()
            loaded: dict[tuple[str, str], deque[float]] = {}
            try:
                with self._io_lock:
                    con = self._connect()
                    try:
                        rows = con.execute(
                            "SELECT impl, signature, seconds FROM runs "
                            "WHERE fingerprint = ? AND kernel = ? ORDER BY id",
                            (self.fingerprint, kernel),
                        ).fetchall()
                    finally:
                        con.close()
            except sqlite3.Error as exc:
                logger.warning(
                    "benchmark store %s unreadable (%s); starting empty", self.path, exc
                )
                rows = []
            for impl, sig, seconds in rows:
                loaded.setdefault((impl, sig), deque(maxlen=self.window)).append(
                    float(seconds)
                )
            with self._lock:
                mem = self._mem.setdefault(kernel, loaded)
        with self._lock:
            return {k: list(v) for k, v in mem.items()}

    def record(self, kernel: str, impl: str, signature: str, seconds: float) -> None:
        """Queue one run time (returns at once; written by the background flush)."""
        row = (kernel, impl, signature, float(seconds), time.time())
        with self._lock:
            self._pending.append(row)
            if len(self._pending) > _MAX_PENDING:
                del self._pending[: len(self._pending) - _MAX_PENDING]
            mem = self._mem.get(kernel)
            if mem is not None:
                mem.setdefault((impl, signature), deque(maxlen=self.window)).append(
                    float(seconds)
                )
            start = self._thread is None and not self._stop.is_set()
            if start:
                self._thread = threading.Thread(
                    target=self._flush_loop, name="livesr-benchmark-flush", daemon=True
                )
        if start:
            if not self._atexit:
                atexit.register(self.close)
                self._atexit = True
            assert self._thread is not None
            self._thread.start()

    def pending(self) -> int:
        """Rows recorded but not yet written."""
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write the pending rows in one transaction now; returns how many were written.

        On a database error the rows stay pending (logged at WARNING) for the next try.
        """
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return 0
        fp = self.fingerprint
        try:
            with self._io_lock:
                con = self._connect()
                try:
                    con.execute("BEGIN IMMEDIATE")
                    con.execute(
                        "INSERT OR IGNORE INTO machines (fingerprint, description) VALUES (?, ?)",
                        (fp, _json(machine_description())),
                    )
                    con.executemany(
                        "INSERT INTO runs (fingerprint, kernel, impl, signature, seconds, "
                        "recorded_at) VALUES (?, ?, ?, ?, ?, ?)",
                        [(fp, *row) for row in rows],
                    )
                    for kernel, impl, sig in {(r[0], r[1], r[2]) for r in rows}:
                        con.execute(
                            "DELETE FROM runs WHERE fingerprint = ? AND kernel = ? AND impl = ? "
                            "AND signature = ? AND id <= (SELECT id FROM runs WHERE "
                            "fingerprint = ? AND kernel = ? AND impl = ? AND signature = ? "
                            "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                            (fp, kernel, impl, sig, fp, kernel, impl, sig, self.keep),
                        )
                    con.execute("COMMIT")
                finally:
                    con.close()
        except sqlite3.Error as exc:
            logger.warning(
                "benchmark store %s: could not write %d run times (%s); will retry",
                self.path,
                len(rows),
                exc,
            )
            with self._lock:
                self._pending[:0] = rows
            return 0
        self.flushes += 1
        self.rows_written += len(rows)
        logger.debug("benchmark store: wrote %d run times to %s", len(rows), self.path)
        return len(rows)

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Stop the background thread and write everything pending (idempotent)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.busy_timeout_s + 5)
        self.flush()
        if self._atexit:
            atexit.unregister(self.close)
            self._atexit = False
        with self._lock:
            self._thread = None
            self._stop.clear()

    def stored_counts(self) -> dict[tuple[str, str, str], int]:
        """Rows on disk for this machine by ``(kernel, impl, signature)`` (reads the file)."""
        with self._io_lock:
            con = self._connect()
            try:
                rows = con.execute(
                    "SELECT kernel, impl, signature, COUNT(*) FROM runs WHERE fingerprint = ? "
                    "GROUP BY kernel, impl, signature",
                    (self.fingerprint,),
                ).fetchall()
            finally:
                con.close()
        return {(k, i, s): int(n) for k, i, s, n in rows}


def _json(obj: object) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


_default: BenchmarkStore | None = None
_default_lock = threading.Lock()


def default_store() -> BenchmarkStore:
    """The process's shared store, created on first use (nothing happens at import)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = BenchmarkStore()
        return _default


def set_default_store(store: BenchmarkStore | None) -> BenchmarkStore | None:
    """Replace the shared store (``None``: create a fresh one on next use); returns the old."""
    global _default
    with _default_lock:
        old, _default = _default, store
    return old
