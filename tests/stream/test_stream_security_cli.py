"""CURVE from the command line (issue 14): `livesr keys` + `--keys DIR` on both sides
give an authenticated pipeline on a non-loopback address; without keys the same
command is refused with a one-line error naming the flag."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livesr.stream.cli import main

FRAMES = 60
CONFIG = """
[esrrf]
window = 10
stride = 10
magnification = 2
[drift]
enabled = false
[stream]
resolution_interval_s = 0
[sim]
seed = 2
[sim.camera]
shape = [24, 24]
interval_ms = 5.0
exposure_ms = 5.0
"""


def _non_loopback_ipv4() -> str | None:
    """An address of this host that other machines could reach (not 127.x)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.254.254.254", 1))  # no packet is sent: picks the route's address
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def _free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def _livesr(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "livesr.stream", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )


def test_keys_flag_gives_an_authenticated_remote_pipeline(tmp_path: Path) -> None:
    ip = _non_loopback_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to bind")
    keys = tmp_path / "keys"
    assert main(["keys", str(keys)]) == 0
    assert (keys / "server.key_secret").is_file() and (keys / "client.key_secret").is_file()
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG)
    ep = f"tcp://{ip}:{_free_port(ip)}"
    common = ["run", "--config", str(cfg), "--no-status"]
    # without keys: refused at once, naming the flag, nothing left behind
    no_keys = subprocess.run(
        [sys.executable, "-m", "livesr.stream", *common, "--listen", ep,
         "--output", str(tmp_path / "refused")],
        capture_output=True, text=True, timeout=120,
    )
    assert no_keys.returncode != 0
    assert "without CURVE keys" in no_keys.stderr and "--keys DIR" in no_keys.stderr
    assert "Traceback" not in no_keys.stderr
    assert not (tmp_path / "refused" / "summary.json").exists()
    out = tmp_path / "out"
    listen = _livesr(*common, "--listen", ep, "--keys", str(keys), "--output", str(out),
                     log=tmp_path / "listen.log")
    try:
        deadline = time.monotonic() + 90
        while "listening on" not in (tmp_path / "listen.log").read_text():
            assert listen.poll() is None and time.monotonic() < deadline, (
                tmp_path / "listen.log"
            ).read_text()
            time.sleep(0.05)
        connect = subprocess.run(
            [sys.executable, "-m", "livesr.stream", *common, "--connect", ep,
             "--keys", str(keys), "--frames", str(FRAMES)],
            capture_output=True, text=True, timeout=180,
        )
        assert connect.returncode == 0, connect.stderr
        assert f"{FRAMES} acknowledged, 0 in gaps, 0 unacknowledged" in connect.stderr
        assert listen.wait(120) == 0, (tmp_path / "listen.log").read_text()
    finally:
        if listen.poll() is None:
            listen.kill()
            listen.wait(10)
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_persisted"] == FRAMES and s["accounting_ok"] is True
    assert s["endpoints"]["ingest"] == ep
    assert s["ingest"]["rejected"] == 0


def test_security_section_is_checked(tmp_path: Path) -> None:
    from livesr.stream._config import config_from_mapping, load_config, to_toml

    with pytest.raises(ValueError, match=r"\[security\] keys=.*livesr keys DIR"):
        config_from_mapping({"security": {"keys": str(tmp_path / "none")}})
    with pytest.raises(ValueError, match=r"unknown key security.key;"):
        config_from_mapping({"security": {"key": "x"}})
    keys = tmp_path / "k"
    assert main(["keys", str(keys)]) == 0
    cfg = config_from_mapping({"security": {"keys": str(keys), "client": "client"}})
    assert cfg.security.keys == str(keys)
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path).security == cfg.security
