"""``livesr run`` / ``replay`` ask for passive OpenMP waiting before any kernel loads
OpenMP on a small machine (stream/_openmp.py); a policy the user set is kept; a
runtime loaded earlier is left alone; a many-core host keeps OpenMP's default.  Each case runs in a fresh interpreter: libgomp reads the variable
once, when it loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip(
    "livesr.kernels.esrrf_map._cython", reason="the Cython kernels are not built"
)

_PROBE = r"""
import json, os, sys
import livesr.stream._openmp as omp
from livesr.stream._openmp import openmp_loaded, prefer_passive_openmp
if len(sys.argv) > 2:  # the machine's usable CPUs, as the probe's caller says
    omp.usable_cpus = lambda: int(sys.argv[2])
if sys.argv[1] == "load-first":
    import livesr.kernels.esrrf_map._cython  # noqa: F401  (OpenMP loads here)
before = openmp_loaded()
took = prefer_passive_openmp()
import livesr.kernels.esrrf_map._cython  # noqa: F401,F811
print(json.dumps({"before": before, "took": took,
                  "policy": os.environ.get("OMP_WAIT_POLICY"),
                  "loaded": openmp_loaded()}))
"""


def _probe(mode: str, policy: str | None, cpus: int = 2) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, str(cpus)],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_passive_is_set_before_openmp_loads(cpus: int) -> None:
    r = _probe("fresh", None, cpus)
    assert r == {"before": False, "took": True, "policy": "PASSIVE", "loaded": True}


@pytest.mark.parametrize("cpus", [5, 16, 128])
def test_a_many_core_host_keeps_the_default(cpus: int) -> None:
    r = _probe("fresh", None, cpus)
    assert r == {"before": False, "took": False, "policy": None, "loaded": True}


def test_usable_cpus_is_the_affinity_mask() -> None:
    from livesr.stream._openmp import usable_cpus

    want = (
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count()
    )
    assert usable_cpus() == want >= 1


@pytest.mark.parametrize("policy,passive", [("active", False), ("passive", True)])
def test_a_policy_the_user_set_is_kept(policy: str, passive: bool) -> None:
    r = _probe("fresh", policy)
    assert r["policy"] == policy and r["took"] is passive


def test_a_runtime_loaded_before_is_left_alone() -> None:
    r = _probe("load-first", None)
    assert r == {"before": True, "took": False, "policy": None, "loaded": True}


@pytest.mark.parametrize(
    "argv,passive",
    [(["run"], True), (["replay", "rec.npy"], True), (["keys", "keys-dir"], False)],
)
def test_the_cli_asks_for_it_for_the_live_commands(
    argv: list[str], passive: bool
) -> None:
    """Through ``livesr.stream.cli.main``, before the command runs (the command
    itself is replaced by a no-op here: only the order matters)."""
    module = {"run": "_cmd_run", "replay": "_cmd_replay", "keys": "_cmd_keys"}[argv[0]]
    probe = (
        "import importlib, os\n"
        "from livesr.stream import cli\n"
        "import livesr.stream._openmp as o\n"
        "o.usable_cpus = lambda: 2  # a laptop's, whatever runs the test\n"
        f"cmd = importlib.import_module('livesr.stream.cli.{module}')\n"
        "seen = []\n"
        "real = o.prefer_passive_openmp\n"
        "o.prefer_passive_openmp = lambda: seen.append(real()) or seen[-1]\n"
        "cmd.run = lambda args: print('ran with', os.environ.get('OMP_WAIT_POLICY')) or 0\n"
        f"assert cli.main({argv!r}) == 0\n"
        "print(seen)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()[-2:]
    if passive:
        assert lines == ["ran with PASSIVE", "[True]"], done.stdout[-500:]
    else:
        assert lines == ["ran with None", "[]"], done.stdout[-500:]
