"""Log lines print above the live status line, never into it (issue 16): the exact
write sequence (erase, log line, status redrawn), no interleaving with a status
thread redrawing concurrently, and a real ``livesr run`` on a pseudo-terminal."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from livesr.stream import _logging
from livesr.stream._status import StatusReporter, active_status

SNAP = {"frames_received": 7, "fps": 10.0, "windows_published": 1}
ERASE = "\x1b[K"


class _Tty(io.StringIO):
    """A terminal stand-in that records every write call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.writes.append(s)
        return super().write(s)


def screen(out: str) -> list[str]:
    """What a terminal shows after ``out``: ``\\r`` to column 0, ``ESC [K`` erases
    to the end of the line, ``\\n`` ends it; other characters overwrite."""
    lines: list[str] = []
    cur: list[str] = []
    col = 0
    i = 0
    while i < len(out):
        if out.startswith(ERASE, i):
            del cur[col:]
            i += len(ERASE)
            continue
        ch = out[i]
        i += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append("".join(cur))
            cur, col = [], 0
        else:
            if col < len(cur):
                cur[col] = ch
            else:
                cur.append(ch)
            col += 1
    lines.append("".join(cur))
    return lines


@contextlib.contextmanager
def fake_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[logging.Logger, _Tty]]:
    """A logger with the command line's stderr handler, stderr a fake terminal (set
    in the test's own phase: pytest's capture resets ``sys.stderr`` between phases)."""
    tty = _Tty()
    log = logging.getLogger("livesr.test_status_logging")
    handler = _logging._StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.propagate = False
    try:
        with monkeypatch.context() as mp:
            mp.setattr(sys, "stderr", tty)
            yield log, tty
    finally:
        log.removeHandler(handler)


def test_a_log_line_erases_the_status_line_and_redraws_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fake_terminal(monkeypatch) as (log, tty):
        _erase_log_redraw(log, tty)


def _erase_log_redraw(log: logging.Logger, tty: _Tty) -> None:
    rep = StatusReporter(lambda: SNAP, stream=tty, interval_s=60.0).start()
    try:
        assert active_status(tty) is rep
        rep.draw()
        line = "frames 7 (10/s) | windows 1 | latency p50 - p99 - ms | skipped 0 | " \
            "gaps 0 | res - | -"
        tty.writes.clear()
        log.warning("disk is slow")
        assert tty.writes == ["\r" + ERASE, "WARNING disk is slow\n", line + ERASE]
        assert screen(tty.getvalue()) == ["WARNING disk is slow", line]
    finally:
        rep.stop()
    assert active_status(tty) is None
    tty.writes.clear()
    log.warning("after the run")  # no status line: written as it is
    assert tty.writes == ["WARNING after the run\n"]
    assert screen(tty.getvalue())[-2:] == ["WARNING after the run", ""]


def test_not_a_tty_log_lines_are_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = io.StringIO()
    rep = StatusReporter(lambda: SNAP, stream=plain).start()
    assert active_status(plain) is None and not rep.enabled
    rep.stop()


def test_concurrent_logs_and_redraws_never_interleave(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fake_terminal(monkeypatch) as (log, tty):
        _interleave(log, tty)


def _interleave(log: logging.Logger, tty: _Tty) -> None:
    n = {"i": 0}

    def snap() -> dict[str, int]:
        n["i"] += 1
        return {**SNAP, "frames_received": n["i"]}

    rep = StatusReporter(snap, stream=tty, interval_s=60.0).start()
    stop = threading.Event()

    def redraw() -> None:
        while not stop.is_set():
            rep.draw()

    t = threading.Thread(target=redraw)
    t.start()
    try:
        for k in range(300):
            log.warning("record %d of the run", k)
    finally:
        stop.set()
        t.join(10)
        rep.stop()
    assert not t.is_alive() and rep.redraws > 0
    shown = screen(tty.getvalue())
    assert shown[:300] == [f"WARNING record {k} of the run" for k in range(300)]
    assert shown[300:] == [""]  # the status line, cleared by stop()


def test_livesr_run_on_a_pty_prints_its_log_above_the_status_line(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    cmd = [
        sys.executable, "-m", "livesr.stream.cli", "--log-level", "info", "run",
        "--output", str(tmp_path / "out"), "--frames", "300", "--window", "20",
        "--stride", "10", "--magnification", "2",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
        cwd=tmp_path,
    )  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 240.0
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert code == 0, out[-3000:]
    assert "\x1b[K" in out and "| windows " in out, "no live status line was drawn"
    lines = screen(out.replace("\r\n", "\n"))
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
    logs = [ln for ln in lines if stamp.match(ln)]
    assert len(logs) >= 5
    mixed = [ln for ln in lines if "| windows " in ln]
    assert not mixed, f"a status line was left or broken into: {mixed[:3]}"
    assert all(ln.count(" INFO ") + ln.count(" WARNING ") <= 1 for ln in logs)
    assert any(ln.startswith("livesr run: 300/300 frames persisted") for ln in lines)
