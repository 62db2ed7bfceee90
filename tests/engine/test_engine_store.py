"""Benchmark store: SQLite, batched off the hot path, safe with several processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from livesr.engine import BenchmarkStore, cache_dir
from livesr.engine._fingerprint import fingerprint, machine_description

SIG = '{"dtype":"float32","params":{},"shape":[4,4]}'


def test_location_from_env(_isolated_cache):
    assert cache_dir() == _isolated_cache
    store = BenchmarkStore()
    assert store.path == _isolated_cache / "benchmarks.sqlite"
    assert not _isolated_cache.exists()  # nothing touched before the first use


def test_record_is_batched_and_flushed_on_close(tmp_path):
    store = BenchmarkStore(
        tmp_path / "b.sqlite", fingerprint="m1", flush_interval_s=3600
    )
    for i in range(100):
        store.record("k", "numba", SIG, 0.001 * (i + 1))
    assert store.pending() == 100
    assert store.flushes == 0  # nothing written per call
    store.close()
    assert store.pending() == 0
    assert store.flushes == 1
    assert store.stored_counts() == {("k", "numba", SIG): 100}
    # a new store (a new process) reads the newest 50 back, oldest first
    again = BenchmarkStore(tmp_path / "b.sqlite", fingerprint="m1")
    runs = again.runs("k")[("numba", SIG)]
    assert runs == pytest.approx([0.001 * (i + 1) for i in range(50, 100)])
    with sqlite3.connect(tmp_path / "b.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_background_thread_flushes(tmp_path):
    def flushers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "livesr-benchmark-flush"}

    others = flushers()  # e.g. the session's default store, used by earlier tests
    store = BenchmarkStore(
        tmp_path / "b.sqlite", fingerprint="m1", flush_interval_s=0.05
    )
    assert flushers() == others  # no thread until something is recorded
    store.record("k", "numpy", SIG, 0.5)
    assert len(flushers() - others) == 1
    for _ in range(200):  # wait for the background flush, at most ~10 s
        if store.flushes:
            break
        threading.Event().wait(0.05)
    assert store.rows_written == 1
    store.close()
    assert flushers() - others == set()


def test_fingerprints_are_separate(tmp_path):
    path = tmp_path / "b.sqlite"
    a = BenchmarkStore(path, fingerprint="machine-a")
    a.record("k", "numpy", SIG, 1.0)
    a.close()
    b = BenchmarkStore(path, fingerprint="machine-b")
    assert b.runs("k") == {}
    assert BenchmarkStore(path, fingerprint="machine-a").runs("k") == {
        ("numpy", SIG): [1.0]
    }


def test_keep_prunes_oldest_rows(tmp_path):
    store = BenchmarkStore(tmp_path / "b.sqlite", fingerprint="m", window=5, keep=10)
    for i in range(25):
        store.record("k", "numpy", SIG, float(i))
    store.close()
    assert store.stored_counts() == {("k", "numpy", SIG): 10}
    assert BenchmarkStore(tmp_path / "b.sqlite", fingerprint="m", window=5).runs(
        "k"
    ) == {("numpy", SIG): [20.0, 21.0, 22.0, 23.0, 24.0]}


def test_fingerprint_reflects_machine():
    desc = machine_description()
    assert {"cpu", "gpus", "nvidia_driver", "livesr"} <= set(desc)
    assert fingerprint() == fingerprint(dict(desc))
    assert fingerprint({**desc, "nvidia_driver": "999.1"}) != fingerprint()


WRITER = textwrap.dedent(
    """
    import sys
    from livesr.engine import BenchmarkStore
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = BenchmarkStore(path, fingerprint="shared", flush_interval_s=0.001, keep=1000)
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()  # start together
    for i in range(n):
        store.record("k", tag, "sig", i * 1e-3)
        if i % 50 == 0:
            store.flush()  # many short transactions interleaving with the other process
    store.close()
    print("done", store.rows_written)
    """
)


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "shared.sqlite"
    n = 400
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), tag, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == f"done {n}", err
    counts = BenchmarkStore(path, fingerprint="shared", keep=1000).stored_counts()
    assert counts == {("k", "a", "sig"): n, ("k", "b", "sig"): n}


def test_atexit_writes_what_is_pending(tmp_path):
    path = tmp_path / "b.sqlite"
    code = textwrap.dedent(
        f"""
        from livesr.engine import BenchmarkStore
        store = BenchmarkStore({str(path)!r}, fingerprint="m", flush_interval_s=3600)
        for i in range(7):
            store.record("k", "numpy", "sig", 0.001)
        assert store.rows_written == 0
        """
    )  # exits without close(): the atexit hook must flush
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert BenchmarkStore(path, fingerprint="m").stored_counts() == {
        ("k", "numpy", "sig"): 7
    }
