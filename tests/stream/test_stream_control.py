"""The control channel (issue 16): ``livesr ctl ENDPOINT set|status|stop`` against a
real pipeline on the simulated camera, over real sockets.

A live change names the frame it took effect at, and the windows published after it
have the new length (``windows.csv``); ``stop`` ends acquisition with every acquired
frame persisted; malformed requests get error replies and the run goes on.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from livesr.adapters.sources.simulated import SimulatedSource
from livesr.sim import SimConfig
from livesr.stream._config import LivesrConfig
from livesr.stream._control import (
    ControlClient,
    ControlError,
    ControlUnreachable,
    coerce_param,
    parse_request,
)
from livesr.stream._endpoints import EndpointError
from livesr.stream._pipeline import Pipeline
from livesr.stream.cli import main

WINDOW, STRIDE, NEW_WINDOW = 10, 5, 20


def _sim() -> SimConfig:
    sim = SimConfig.blinking(shape=(32, 32), seed=5)
    return dataclasses.replace(
        sim,
        camera=dataclasses.replace(sim.camera, interval_ms=4.0, exposure_ms=4.0),
    )


def _ctl(*args: str, timeout: float = 60.0) -> tuple[int, dict[str, Any] | None, str]:
    """``livesr ctl ARGS`` in a subprocess: exit status, JSON reply, stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "livesr.stream.cli", "ctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    reply = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, reply, proc.stderr


def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def idle_pipe(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> Iterator[Pipeline]:
    """A started pipeline that no source feeds (its control channel serves)."""
    ctx = zmq.Context()
    cfg = pipeline_config(tmp_path / "out", window=WINDOW, stride=STRIDE)
    pipe = Pipeline(cfg, endpoint=f"inproc://idle-{tmp_path.name}", context=ctx).start()
    try:
        yield pipe
    finally:
        pipe.close()
        ctx.term()


def test_ctl_round_trip_set_status_stop(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    """set window -> the frame it took effect at; status shows it; windows after it
    have the new length; stop ends the run with every acquired frame persisted."""
    out = tmp_path / "out"
    cfg = pipeline_config(out, window=WINDOW, stride=STRIDE)
    ctx = zmq.Context()
    pipe = Pipeline(cfg, endpoint=f"inproc://ctl-{tmp_path.name}", context=ctx).start()
    src = None
    try:
        ep = pipe.control_endpoint
        assert ep.startswith("ipc://")
        assert pipe.ready.wait(120.0)
        src = SimulatedSource(
            _sim(), pipe.endpoint, frames=0, pace=True,
            stop_event=pipe.stop_requested, context=ctx,
        ).start()
        _until(lambda: pipe.progress()["frames_processed"] >= 2 * WINDOW, 60, "frames")

        rc, reply, err = _ctl(ep, "status")
        assert rc == 0, err
        assert reply is not None and reply["ok"] and reply["params"]["window"] == WINDOW

        rc, reply, err = _ctl(ep, "set", f"window={NEW_WINDOW}")
        assert rc == 0, err
        assert reply is not None and reply["ok"] and reply["params"] == {"window": NEW_WINDOW}
        if reply["applied"]:
            frame = reply["frame_index"]
        else:  # processing was inside a batch: status names the frame once applied
            assert reply["pending"] is True and reply["frame_index"] is None
            _until(lambda: bool(pipe.control_status()["param_changes"]), 30, "the change")
            frame = pipe.control_status()["param_changes"][0]["frame_index"]
        assert isinstance(frame, int) and frame >= 2 * WINDOW

        rc, reply, err = _ctl(ep, "status")
        assert rc == 0, err
        assert reply is not None
        assert reply["params"]["window"] == NEW_WINDOW and reply["pending"] == []
        assert reply["param_changes"] == [
            {"frame_index": frame, "changes": {"window": NEW_WINDOW}}
        ]
        # two new windows' worth of frames processed after the change
        _until(
            lambda: pipe.progress()["frames_processed"] >= frame + NEW_WINDOW + 2 * STRIDE,
            60,
            "windows after the change",
        )
        rc, reply, err = _ctl(ep, "stop")
        assert rc == 0, err
        assert reply is not None and reply["ok"] and reply["stopping"] is True
        assert src.join(30.0) is not None, "the source did not stop"
        assert src.error is None
        assert pipe.wait(60.0), "the pipeline did not finish"
    finally:
        if src is not None and src.join(0) is None:
            src.stop()
            src.join(30.0)
        summary = pipe.close()
        ctx.term()
    acquired = src.summary["frames_acquired"]
    assert acquired > frame + NEW_WINDOW
    assert summary["frames_acquired"] == acquired == summary["frames_persisted"]
    assert summary["frames_in_gaps"] == 0 and summary["accounting_ok"] is True
    assert summary["frames_processed"] == acquired
    assert summary["stopped"] is True and summary["stop_reason"] == "stopped by livesr ctl"
    assert summary["param_changes"] == [
        {"frame_index": frame, "changes": {"window": NEW_WINDOW}}
    ]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["param_changes"] == summary["param_changes"]
    assert on_disk["control_endpoint"] == ep
    assert [c["cmd"] for c in on_disk["control"]["changes"]] == ["set", "stop"]
    with open(out / "windows.csv", newline="") as fh:
        rows = [(int(r["first_frame"]), int(r["last_frame"])) for r in csv.DictReader(fh)]
    before = [b - a + 1 for a, b in rows if b < frame]
    after = [b - a + 1 for a, b in rows if b >= frame]
    assert before and set(before) == {WINDOW}
    assert len(after) >= 2 and set(after) == {NEW_WINDOW}
    # after a stop nobody answers there: livesr ctl says so and exits 2, no hang
    rc, reply, err = _ctl(ep, "status", "--timeout-s", "0.5")
    assert rc == 2 and reply is None and "no reply from the control channel" in err


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2]", "request is a JSON list"),
        (b'{"cmd": "bogus"}', "unknown cmd 'bogus'; expected one of set, status, stop"),
        (b'{"cmd": "set"}', "set: params=None; expected a non-empty object"),
        (b'{"cmd": "set", "params": {}}', "expected a non-empty object"),
        (b'{"cmd": "status", "x": 1}', "unexpected field(s) x; expected only cmd"),
        (b'{"cmd": "stop", "reason": ""}', "expected a non-empty string"),
    ],
)
def test_parse_request_refuses_with_what_was_expected(raw: bytes, expect: str) -> None:
    with pytest.raises(ControlError) as info:
        parse_request(raw)
    assert expect in str(info.value)


def test_bad_requests_get_error_replies_and_the_run_goes_on(idle_pipe: Pipeline) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(idle_pipe.control_endpoint)
    cases: list[tuple[list[bytes], str]] = [
        ([b"nonsense"], "not UTF-8 JSON"),
        ([b'{"cmd": "reboot"}'], "unknown cmd 'reboot'"),
        ([b"{}", b"{}"], "request has 2 parts; expected one JSON message"),
        (
            [b'{"cmd": "set", "params": {"magnification": 3}}'],
            "magnification cannot change while streaming; allowed: window, stride",
        ),
        (
            [b'{"cmd": "set", "params": {"window": "thirty"}}'],
            "window='thirty' is out of range; expected an integer >= 2",
        ),
        ([b'{"cmd": "set", "params": {"radius": 99}}'], "expected a number in 0.5..10"),
    ]
    try:
        for parts, expect in cases:
            sock.send_multipart(parts)
            assert sock.poll(10_000), f"no reply to {parts!r}"
            reply = json.loads(sock.recv())
            assert reply["ok"] is False and expect in reply["error"], reply
        sock.send(b'{"cmd": "status"}')
        assert sock.poll(10_000)
        status = json.loads(sock.recv())
    finally:
        sock.close()
        ctx.term()
    assert status["ok"] is True and status["params"]["window"] == WINDOW
    assert status["pending"] == [] and status["param_changes"] == []
    assert status["stopping"] is False
    report = idle_pipe.control_report()
    assert report is not None
    assert report["requests"] == len(cases) + 1 and report["refused"] == len(cases)
    assert report["changes"] == []


def test_set_before_any_frame_is_pending_and_status_lists_it(idle_pipe: Pipeline) -> None:
    with ControlClient(idle_pipe.control_endpoint, timeout_s=10) as c:
        reply = c.request({"cmd": "set", "params": {"stride": 7}})
        status = c.request({"cmd": "status"})
    assert reply == {
        "ok": True, "cmd": "set", "applied": False, "pending": True,
        "frame_index": None, "params": {"stride": 7},
    }
    assert status["pending"] == [{"stride": 7}] and status["params"]["stride"] == STRIDE


def test_ctl_cli_usage_and_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = f"ipc://{tmp_path}/nobody.ipc"
    t0 = time.monotonic()
    assert main(["ctl", nobody, "status", "--timeout-s", "0.3"]) == 2
    assert time.monotonic() - t0 < 10  # no hang when nobody answers
    assert "no reply from the control channel" in capsys.readouterr().err
    assert main(["ctl", nobody, "set"]) == 2
    assert "set needs at least one NAME=VALUE" in capsys.readouterr().err
    assert main(["ctl", nobody, "status", "window=3"]) == 2
    assert "status takes no NAME=VALUE" in capsys.readouterr().err
    assert main(["ctl", nobody, "set", "window=abc"]) == 2
    assert "window='abc': expected an integer" in capsys.readouterr().err
    assert main(["ctl", nobody, "set", "window"]) == 2
    assert "'window' is not NAME=VALUE" in capsys.readouterr().err
    assert main(["ctl", "http://x", "status"]) == 2
    assert "transport 'http' is not supported" in capsys.readouterr().err
    assert main(["ctl", nobody, "status", "--timeout-s", "0"]) == 2


def test_ctl_cli_refused_exits_1(
    idle_pipe: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ctl", idle_pipe.control_endpoint, "set", "temporal=median"]) == 1
    captured = capsys.readouterr()
    reply = json.loads(captured.out)
    assert reply["ok"] is False and "temporal='median'" in reply["error"]
    assert "livesr ctl: refused:" in captured.err


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("window", "30", 30),
        ("radius", "2", 2.0),
        ("sensitivity", "1.5", 1.5),
        ("temporal", "var", "var"),
        ("intensity_weighting", "false", False),
        ("unknown", "3", 3),
        ("unknown", "x", "x"),
    ],
)
def test_values_parsed_as_the_parameters_type(name: str, text: str, value: Any) -> None:
    got = coerce_param(name, text)
    assert got == value and type(got) is type(value)


def test_non_loopback_control_refused_without_keys(
    tmp_path: Path, pipeline_config: Callable[..., LivesrConfig]
) -> None:
    out = tmp_path / "out"
    cfg = pipeline_config(out, window=WINDOW, stride=STRIDE)
    pipe = Pipeline(cfg, endpoint=f"inproc://nl-{tmp_path.name}", control="tcp://*:*")
    with pytest.raises(EndpointError) as info:
        pipe.start()
    assert "control channel" in str(info.value) and "--keys DIR" in str(info.value)
    assert not out.exists()  # refused before anything was created


def test_non_loopback_control_needs_curve_keys(
    tmp_path: Path,
    pipeline_config: Callable[..., LivesrConfig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from livesr.stream._keys import create_keys, load_client_keys

    keys = tmp_path / "keys"
    create_keys(keys)
    cfg = pipeline_config(tmp_path / "out", window=WINDOW, stride=STRIDE)
    cfg = cfg.replace("security", keys=str(keys))
    ctx = zmq.Context()
    pipe = Pipeline(
        cfg, endpoint=f"inproc://curve-{tmp_path.name}", control="tcp://*:*", context=ctx
    ).start()
    try:
        port = pipe.control_endpoint.rsplit(":", 1)[1]
        ep = f"tcp://127.0.0.1:{port}"
        with ControlClient(ep, curve=load_client_keys(keys), timeout_s=10) as c:
            assert c.request({"cmd": "status"})["ok"] is True
        with ControlClient(ep, timeout_s=0.5) as c, pytest.raises(ControlUnreachable):
            c.request({"cmd": "status"})  # no keys: the CURVE server never answers
        assert main(["ctl", ep, "status", "--keys", str(keys)]) == 0
        assert json.loads(capsys.readouterr().out)["params"]["window"] == WINDOW
    finally:
        pipe.close()
        ctx.term()
