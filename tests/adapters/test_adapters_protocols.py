"""Adapters implement the seams stream declares: the Source, Sink and Hook protocols,
and the hook configurations registered by name (stream imports no adapter for them)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from livesr.adapters.feedback import (
    ConvergedConfig,
    DriftLock,
    DriftLockConfig,
    FeedbackLimits,
    HookRunner,
)
from livesr.adapters.feedback import Result as FeedbackResult
from livesr.adapters.sources import ThreadedSource
from livesr.adapters.sources._sim_config import sim_config_from
from livesr.adapters.sources.replay import ReplayConfig, ReplaySource
from livesr.adapters.sources.simulated import SimulatedSource
from livesr.stream import (
    Hook,
    LivesrConfig,
    Result,
    Sink,
    Source,
    check_hook_name,
    open_recording,
    register_hook_config,
)
from livesr.stream._hook_registry import hook_config


def test_adapters_protocols_sources_sinks_hooks(tmp_path) -> None:
    sim = SimulatedSource(
        sim_config_from(LivesrConfig()), "ipc:///nonexistent", frames=1
    )
    np.save(tmp_path / "r.npy", np.zeros((4, 8, 8), np.uint16))
    with open_recording(tmp_path / "r.npy", pixel_size_um=0.1) as rec:
        replay = ReplaySource(rec, "ipc:///nonexistent", ReplayConfig(rate="asap"))
        for src in (sim, replay):
            assert isinstance(src, Source) and isinstance(src, ThreadedSource)
            assert src.summary is None and src.error is None and src.join(0) is None
    runner = HookRunner([DriftLock()])
    try:
        assert isinstance(runner, Sink)
    finally:
        runner.close()
    seen: list[int] = []

    def plain(result: Result, controller: object) -> None:
        seen.append(result.index)

    assert isinstance(plain, Hook)
    with HookRunner([plain]) as hooks:
        hooks.submit(Result(index=4))
        assert hooks.wait_idle(10.0)
    assert seen == [4]
    # the feedback package re-exports stream's Result (user hooks keep working)
    assert FeedbackResult is Result


def test_adapters_protocols_hook_configs_registered_by_name() -> None:
    assert hook_config("drift_lock").cls is DriftLockConfig
    assert hook_config("stop_when_converged").cls is ConvergedConfig
    assert hook_config("limits").cls is FeedbackLimits
    # the live pipeline's defaults come with the registration
    hooks = LivesrConfig().hooks
    assert hooks.drift_lock == DriftLockConfig(threshold_px=0.1, gain=0.8, settle_s=0.2)
    assert hooks.limits == FeedbackLimits(max_step_xy_um=1.0, max_moves_per_s=10.0)
    assert check_hook_name("drift-lock") == "drift-lock"
    assert check_hook_name("pkg.mod:hook") == "pkg.mod:hook"
    with pytest.raises(ValueError, match="drift-lock, stop-when-converged"):
        check_hook_name("no-such-hook")
    with pytest.raises(KeyError, match=r"no hook configuration \[hooks.nope\]"):
        hook_config("nope")
    with pytest.raises(ValueError, match="already registered to DriftLockConfig"):
        register_hook_config("drift_lock", ConvergedConfig)


LAZY_SCRIPT = """
import json, sys
import livesr.stream._config as c
import livesr.stream._pipeline
before = sorted(m for m in sys.modules if m.startswith("livesr.adapters"))
cfg = c.LivesrConfig()
after = "livesr.adapters.feedback" in sys.modules
print(json.dumps({"before": before, "after": after,
                  "cls": type(cfg.hooks.drift_lock).__name__}))
"""


def test_adapters_protocols_registry_loads_the_hooks_on_first_lookup(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", LAZY_SCRIPT],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # importing the config and the pipeline imports no adapter; the first
    # configuration built loads the registered provider
    assert report == {"before": [], "after": True, "cls": "DriftLockConfig"}
