"""Dispatch through ``Kernel`` with an injectable clock and synthetic timings (no sleeps)."""

from __future__ import annotations

import importlib
import logging
import random

import numpy as np
import pytest

from livesr.engine import AgentConfig, BenchmarkStore, DelayAgent, implementation

MS = 1e-3


@pytest.fixture
def toy(toy_package, fake_clock):
    """A kernel with two implementations whose run time is set by the test."""
    name = toy_package()
    kernel = importlib.import_module(name).kernel
    cost = {"numba": 1 * MS, "numpy": 2 * MS}
    first = {"numba": 0.5, "numpy": 0.0}  # a JIT compile on the first call

    def make(impl: str):
        def run(x, factor=2.0):
            fake_clock.advance(cost[impl] + first[impl])
            first[impl] = 0.0
            return x * factor

        return run

    for impl in cost:
        implementation(name, backend=impl)(make(impl))
    agent = DelayAgent(name, rng=random.Random(0), clock=fake_clock)
    kernel.configure(agent=agent, store=None, clock=fake_clock)
    return kernel, cost


def test_first_call_is_never_a_sample(toy, tmp_path):
    kernel, _ = toy
    store = BenchmarkStore(tmp_path / "b.sqlite", fingerprint="m")
    kernel.configure(store=store)
    x = np.ones((4, 4), np.float32)
    for _ in range(10):
        np.testing.assert_array_equal(kernel(x, factor=3.0), 3.0 * x)
    sig = kernel.signature(x, factor=3.0)
    # numba explored first: its 0.5 s compile call is not recorded anywhere
    assert kernel.stats.warmup_calls == 2
    runs = store.runs(kernel.name)
    assert max(runs[("numba", sig.key)]) == pytest.approx(1 * MS)
    assert runs[("numpy", sig.key)] == pytest.approx([2 * MS])
    assert (
        kernel.stats.by_impl["numba"] == 8
    )  # explore numba ×2, numpy ×2, then numba ×6
    store.close()
    assert sum(store.stored_counts().values()) == 8


def test_burst_switches_and_recovers_through_the_kernel(toy):
    kernel, cost = toy
    x = np.ones((4, 4), np.float32)
    for _ in range(30):
        kernel(x)
    chosen = []
    for call in range(60):
        cost["numba"] = 10 * MS if call < 30 else 1 * MS
        kernel(x)
        chosen.append(kernel.last_decision.impl)
    assert "numpy" in chosen[:3]
    assert chosen[:30].count("numpy") >= 20
    back = next(i for i in range(30, 60) if chosen[i] == "numba")
    assert back - 30 < 10
    assert chosen[back:] == ["numba"] * (60 - back)


def test_sync_hook_runs_before_the_clock_stops(toy_package, fake_clock):
    name = toy_package()
    kernel = importlib.import_module(name).kernel
    events = []

    def wait_for_device():
        events.append("sync")
        fake_clock.advance(5 * MS)  # the device finishes 5 ms after the call returned

    @implementation(name, backend="numpy", sync=wait_for_device)
    def launch(x):
        events.append("launch")
        fake_clock.advance(0.1 * MS)
        return x

    kernel.configure(store=None, clock=fake_clock)
    x = np.ones(4, np.float32)
    for _ in range(3):
        kernel(x)
    assert events[:2] == ["launch", "sync"]
    assert kernel.agent.stats(
        kernel.signature(x).key, "numpy"
    ).fast_avg == pytest.approx(5.1 * MS)


def test_deadline_miss_is_recorded_not_raised(toy, caplog):
    kernel, cost = toy
    x = np.ones((4, 4), np.float32)
    for _ in range(10):
        kernel(x)
    with caplog.at_level(logging.WARNING, logger="livesr.engine._kernel"):
        for _ in range(5):
            out = kernel(x, deadline_s=0.5 * MS)
    np.testing.assert_array_equal(out, 2 * x)
    assert kernel.deadline_misses == 5
    assert kernel.stats.predicted_misses == 5
    miss = kernel.last_deadline_miss
    assert (miss.impl, miss.predicted) == ("numba", True)
    assert miss.measured_s == pytest.approx(1 * MS) and miss.deadline_s == 0.5 * MS
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # logged once when it starts, counted every time
    assert (
        "over the 0.5 ms deadline (no implementation was expected to meet it"
        in warnings[0]
    )
    kernel(x, deadline_s=3 * MS)
    assert kernel.deadline_misses == 5
    with pytest.raises(ValueError, match=r"deadline_s=-1: expected a finite value > 0"):
        kernel(x, deadline_s=-1)


def test_failing_implementation_is_disabled_and_another_runs(
    toy_package, fake_clock, caplog
):
    name = toy_package()
    kernel = importlib.import_module(name).kernel

    @implementation(name, backend="numba")
    def broken(x):
        raise FloatingPointError("boom")

    @implementation(name, backend="numpy")
    def ok(x):
        fake_clock.advance(MS)
        return x + 1

    kernel.configure(store=None, clock=fake_clock)
    with caplog.at_level(logging.ERROR):
        out = kernel(np.zeros(3, np.float32))
    np.testing.assert_array_equal(out, np.ones(3))
    info = {i.id: i for i in kernel.implementations()}["numba"]
    assert not info.available
    assert "FloatingPointError: boom" in info.reason
    assert kernel.stats.failures == 1
    assert "numba raised FloatingPointError: boom where numpy succeeded; disabled" in (
        caplog.text
    )


def test_input_every_implementation_rejects_disables_nothing(toy_package, fake_clock):
    name = toy_package()
    kernel = importlib.import_module(name).kernel
    for backend in ("numba", "numpy"):

        @implementation(name, backend=backend)
        def picky(x, backend=backend):
            if x.ndim != 2:
                raise ValueError(f"{backend}: expected a 2-D frame, got {x.ndim}-D")
            return x

    kernel.configure(store=None, clock=fake_clock)
    with pytest.raises(ValueError, match="numba: expected a 2-D frame, got 1-D"):
        kernel(np.zeros(3, np.float32))
    assert all(i.available for i in kernel.implementations())
    assert kernel.stats.failures == 0
    kernel(np.zeros((2, 2), np.float32))  # still dispatches to either


def test_factory_defaults_until_three_local_runs(toy, fake_clock):
    kernel, cost = toy
    x = np.ones((4, 4), np.float32)
    key = kernel.signature(x).key
    defaults = {("numba", key): [5 * MS] * 10, ("numpy", key): [4 * MS] * 10}
    kernel.configure(factory_defaults=lambda name: defaults)
    kernel(x)  # chooses by defaults: numpy (4 ms) - no exploration needed
    assert kernel.last_decision.impl == "numpy"
    assert kernel.last_decision.expected_s == pytest.approx(4 * MS)
    for _ in range(2):  # first call unrecorded, then 2 local runs: defaults still rule
        kernel(x)
    assert kernel.agent.stats(key, "numpy").fast_avg == pytest.approx(4 * MS)
    kernel(x)  # third local run
    assert kernel.agent.stats(key, "numpy").fast_avg == pytest.approx(2 * MS)


def test_store_seeds_a_new_process_and_unseen_shapes(toy, tmp_path):
    kernel, cost = toy
    path = tmp_path / "b.sqlite"
    store = BenchmarkStore(path, fingerprint="m")
    kernel.configure(store=store)
    x = np.ones((50, 64, 64), np.float32)
    kernel.benchmark(x, repeats=4)
    store.close()
    assert store.stored_counts() == {
        (kernel.name, impl, kernel.signature(x).key): 4 for impl in ("numba", "numpy")
    }
    # a fresh agent and store (another process): no exploration needed for a new shape
    fresh = BenchmarkStore(path, fingerprint="m")
    kernel.configure(agent=DelayAgent(kernel.name, rng=random.Random(0)), store=fresh)
    y = np.ones((100, 64, 64), np.float32)
    kernel(y)
    d = kernel.last_decision
    assert (d.impl, d.reason) == ("numba", "fastest")
    assert d.expected["numpy"] == pytest.approx(
        2 * MS * 100 / 48
    )  # scaled from 48×64×64


def test_warmup_marks_first_calls(toy, fake_clock):
    kernel, _ = toy
    x = np.ones(8, np.float32)
    times = kernel.warmup(x)
    assert times == pytest.approx({"numba": 0.5 + MS, "numpy": 2 * MS})
    kernel(x)
    kernel(x)
    assert kernel.stats.recorded == 2 and kernel.stats.warmup_calls == 2


def test_agent_config_is_per_kernel():
    a, b = DelayAgent("a"), DelayAgent("b", AgentConfig(window=10))
    a.seed("s", "numba", runs=[MS] * 20)
    a.inform("s", "numba", 100 * MS)
    assert a.delayed("s", "numba") and not b.delayed("s", "numba")


def test_concurrent_dispatch_from_threads(toy_package, tmp_path):
    import threading

    name = toy_package()
    kernel = importlib.import_module(name).kernel
    for backend in ("numba", "numpy"):
        implementation(name, backend=backend)(lambda x, b=backend: x + len(b))
    store = BenchmarkStore(
        tmp_path / "b.sqlite", fingerprint="m", flush_interval_s=0.01, keep=10_000
    )
    kernel.configure(store=store)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(200):
                x = np.full((4, 4 + (seed + i) % 3), seed, np.float32)
                out = kernel(x)
                assert out[0, 0] == seed + 5  # "numba" and "numpy" both add 5
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    store.close()
    assert errors == []
    assert kernel.stats.calls == 800
    assert sum(store.stored_counts().values()) == kernel.stats.recorded


def test_adapt_swaps_the_inputs_of_the_chosen_backend_only(toy):
    kernel, _ = toy
    x = np.ones((4, 4), np.float32)
    seen = []

    def adapt(backend, args, kwargs):
        seen.append(backend)
        if backend == "numba":  # e.g. hand the device copy to the GPU backend
            return (args[0] + 1.0,), kwargs
        return args, kwargs

    results = {}
    for _ in range(6):
        out = kernel(x, factor=2.0, adapt=adapt)
        results[kernel.last_decision.impl] = out
    assert set(seen) == {"numba", "numpy"}
    np.testing.assert_array_equal(results["numba"], 4.0 * x)  # (1 + 1) * 2
    np.testing.assert_array_equal(results["numpy"], 2.0 * x)
    # the agent's timings are filed under the un-adapted input's signature
    assert kernel.agent.stats(kernel.signature(x, factor=2.0).key, "numba").n >= 1


def test_untimed_lists_implementations_without_runs_or_priors(toy, fake_clock):
    kernel, _ = toy
    kernel.configure(factory_defaults=lambda name: {})
    x = np.ones((4, 4), np.float32)
    assert sorted(kernel.untimed(x, factor=2.0)) == ["numba", "numpy"]
    kernel.benchmark(x, factor=2.0, repeats=2, impls=["numba"])
    assert kernel.untimed(x, factor=2.0) == ["numpy"]
    kernel.benchmark(x, factor=2.0, repeats=2)
    assert kernel.untimed(x, factor=2.0) == []
