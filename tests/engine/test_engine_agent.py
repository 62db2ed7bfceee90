"""The delay agent with synthetic timings: no sleeps, seeded randomness."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable

import pytest

from livesr.engine import AgentConfig, DelayAgent, Stats
from livesr.engine._agent import logistic_p_delay, sklearn_p_delay

SIG = "sig"
FAST, SLOW = "fast", "slow"
MS = 1e-3


def normal_time(impl: str, i: int) -> float:
    base = 1.0 * MS if impl == FAST else 2.0 * MS
    return base * (1.0 + 0.01 * math.sin(1.7 * i))  # ±1 % deterministic jitter


def make_agent(seed: int = 0, **config) -> DelayAgent:
    agent = DelayAgent("toy", AgentConfig(**config), rng=random.Random(seed))
    for impl in (FAST, SLOW):
        agent.seed(SIG, impl, runs=[normal_time(impl, i) for i in range(30)])
    return agent


def run(
    agent: DelayAgent,
    n: int,
    slowdown: Callable[[int], float],
    deadline_s: float | None = None,
) -> list[str]:
    """Drive the agent for ``n`` calls; the fast implementation is ×slowdown(call)."""
    chosen = []
    for call in range(n):
        impl = agent.choose(SIG, [FAST, SLOW], deadline_s).impl
        t = normal_time(impl, 100 + call)
        if impl == FAST:
            t *= slowdown(call)
        agent.inform(SIG, impl, t)
        chosen.append(impl)
    return chosen


def burst(start: int, stop: int, factor: float = 10.0) -> Callable[[int], float]:
    return lambda call: factor if start <= call < stop else 1.0


def test_stats_split_fast_and_slow_halves():
    st = Stats.of([5.0, 1.0, 2.0, 4.0, 3.0, 6.0])
    assert (st.fast_avg, st.slow_avg, st.n) == (2.0, 5.0, 6)
    assert st.fast_std == pytest.approx(math.sqrt(2 / 3))
    assert st.slow_std == pytest.approx(math.sqrt(2 / 3))


def test_favourite_without_delay_is_deterministic():
    agent = make_agent()
    assert run(agent, 50, lambda call: 1.0) == [FAST] * 50
    assert not agent.delayed(SIG, FAST)


def test_burst_switches_within_3_calls_and_recovers_within_10():
    agent = make_agent(seed=1)
    chosen = run(agent, 80, burst(0, 40))
    # call 0 cannot know; by call 2 the agent has moved to the alternative
    assert chosen[0] == FAST
    assert SLOW in chosen[:3]
    # during the burst, the favourite is only re-tried (probes / stochastic draws)
    during = chosen[3:40]
    assert during.count(SLOW) >= 0.75 * len(during)
    # the end of the burst is noticed within 10 calls, then the favourite stays
    first_back = next(i for i in range(40, 80) if chosen[i] == FAST)
    assert first_back - 40 < 10
    assert chosen[first_back:] == [FAST] * (80 - first_back)
    assert not agent.delayed(SIG, FAST)


def test_delayed_favourite_is_retried_during_the_burst():
    """The end-of-delay rule needs runs of the favourite: probes guarantee them."""
    agent = make_agent(seed=3)
    chosen = run(agent, 60, burst(0, 60))
    retries = [i for i in range(3, 60) if chosen[i] == FAST]
    assert len(retries) >= 5
    gaps = [b - a for a, b in zip([2, *retries], retries, strict=False)]
    assert max(gaps) <= AgentConfig().max_probe_interval + 1
    assert agent.delayed(SIG, FAST)  # still slow, still flagged


def test_switch_and_recovery_over_many_seeds():
    """Stochastic rule: switch within 3 calls in >= 95 % of seeds; recovery in all."""
    n_seeds = 300
    switched = recovered = 0
    for seed in range(n_seeds):
        chosen = run(make_agent(seed=seed), 55, burst(0, 40))
        switched += SLOW in chosen[:3]
        recovered += FAST in chosen[40:50]
    assert switched / n_seeds >= 0.95
    assert recovered == n_seeds


def test_paper_regularisation_switches_late():
    """With sklearn's default C = 1 (NanoPyx), two delayed runs give P ~ 0.14: slow switch."""
    n_seeds = 200
    late = sum(
        SLOW not in run(make_agent(seed=s, regularization_c=1.0), 3, burst(0, 3))
        for s in range(n_seeds)
    )
    assert late / n_seeds > 0.3


def test_logistic_probability_matches_nanopyx_magnitudes():
    # ESRRF.md §4.4: 30 normal runs then k delayed: P = 0.27 (k=3), 0.48 (k=5) with C = 1
    def p(k: int, c: float) -> float:
        return logistic_p_delay([False] * 30 + [True] * k, c)

    assert p(3, 1.0) == pytest.approx(0.27, abs=0.02)
    assert p(5, 1.0) == pytest.approx(0.48, abs=0.02)
    assert p(2, 100.0) > 0.9
    assert p(1, 100.0) < 0.1  # one delay says nothing about persistence yet
    assert logistic_p_delay([False] * 10) == 0.01
    assert logistic_p_delay([True] * 10) == 0.99


def test_closed_form_regression_equals_sklearn():
    rng = random.Random(0)
    histories = [[False] * 30 + [True] * k for k in (1, 2, 3, 5, 10)]
    histories += [[rng.random() < 0.3 for _ in range(50)] for _ in range(10)]
    for labels in histories:
        for c in (1.0, 100.0):
            assert logistic_p_delay(labels, c) == pytest.approx(
                sklearn_p_delay(labels, c), abs=1e-6
            ), (labels, c)


def test_end_of_delay_rule_eq5():
    agent = make_agent()
    agent.inform(SIG, FAST, 10 * MS)
    assert agent.delayed(SIG, FAST)
    st = agent.stats(SIG, FAST)
    # still above FastAverage + FastStdDev and above SlowAverage - SlowStdDev: delayed
    agent.inform(SIG, FAST, 9 * MS)
    assert agent.delayed(SIG, FAST)
    agent.inform(SIG, FAST, st.fast_avg + 0.5 * st.fast_std)
    assert not agent.delayed(SIG, FAST)


def test_no_delay_detection_before_min_runs():
    agent = DelayAgent("toy", AgentConfig(min_runs_for_delay=10), rng=random.Random(0))
    agent.seed(SIG, FAST, runs=[1 * MS] * 9)
    agent.inform(SIG, FAST, 50 * MS)
    assert not agent.delayed(SIG, FAST)
    agent.inform(SIG, FAST, 50 * MS)  # now 10 runs of history
    assert agent.delayed(SIG, FAST)


def test_jitter_below_floor_is_not_a_delay():
    agent = make_agent()
    agent.inform(SIG, FAST, 1.2 * MS)  # > FA + 4σ (σ ≈ 0.6 %) but < 1.25 × FA
    assert not agent.delayed(SIG, FAST)


def test_deadline_prefers_what_meets_it_and_reports_misses():
    agent = make_agent(seed=0)
    d = agent.choose(SIG, [FAST, SLOW], deadline_s=1.5 * MS)
    assert (d.impl, d.predicted_miss) == (FAST, False)
    assert d.p_meet == pytest.approx(1.0, abs=1e-6)
    agent.inform(SIG, FAST, 10 * MS)
    agent.inform(SIG, FAST, 10 * MS)  # two delayed runs: P(delay) > 0.9
    # 3 ms: only the slow one is expected to make it, chosen deterministically
    picks = run(agent, 6, burst(0, 6), deadline_s=3 * MS)
    assert picks[:2] == [SLOW, SLOW]
    # 1.5 ms: nothing meets it; the most likely one is chosen and the miss predicted
    d = agent.choose(SIG, [FAST, SLOW], deadline_s=1.5 * MS)
    assert d.predicted_miss and d.reason == "deadline"
    assert d.p_meet < 0.5


def test_unknown_implementations_are_explored_first():
    agent = DelayAgent("toy", rng=random.Random(0))
    agent.seed(SIG, FAST, runs=[1 * MS] * 5)
    assert agent.choose(SIG, [FAST, SLOW]).reason == "explore"
    assert agent.choose(SIG, [FAST, SLOW]).impl == SLOW
    # ... unless a deadline is given and a known implementation meets it
    d = agent.choose(SIG, [FAST, SLOW], deadline_s=2 * MS)
    assert (d.impl, d.reason) == (FAST, "fastest")


def test_prior_used_until_min_runs():
    agent = DelayAgent("toy", AgentConfig(min_runs=3), rng=random.Random(0))
    agent.seed(SIG, FAST, prior=[5 * MS] * 10, prior_source="factory")
    agent.inform(SIG, FAST, 1 * MS)
    agent.inform(SIG, FAST, 1 * MS)
    assert agent.stats(SIG, FAST).fast_avg == pytest.approx(5 * MS)
    agent.inform(SIG, FAST, 1 * MS)
    assert agent.stats(SIG, FAST).fast_avg == pytest.approx(1 * MS)


def test_decision_changes_logged_once_at_info(caplog):
    agent = make_agent(seed=5)
    with caplog.at_level(logging.INFO, logger="livesr.engine._agent"):
        run(agent, 60, burst(0, 30))
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    switches = [m for m in infos if "→" in m]
    assert switches[0].startswith("toy: fast → slow (delay p=")
    assert "expected" in switches[0]
    assert len(switches) == 2  # away and back, not once per stochastic draw
    assert any("delay of fast over" in m for m in infos)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window", 2),
        ("min_runs_for_delay", 1),
        ("deadline_confidence", 1.0),
        ("exponent", 0),
    ],
)
def test_config_validation_names_field(field, value):
    with pytest.raises(ValueError, match=f"AgentConfig.{field}={value!r}: expected"):
        AgentConfig(**{field: value})


def test_probes_continue_under_a_deadline_and_are_flagged_as_misses():
    agent = make_agent(seed=0)
    agent.inform(SIG, FAST, 10 * MS)
    agent.inform(SIG, FAST, 10 * MS)
    decisions = []
    for call in range(20):
        d = agent.choose(SIG, [FAST, SLOW], deadline_s=3 * MS)
        decisions.append(d)
        agent.inform(
            SIG, d.impl, 10 * MS if d.impl == FAST else normal_time(SLOW, call)
        )
    probes = [d for d in decisions if d.reason == "probe"]
    assert 2 <= len(probes) <= 4  # after 2, 4, 8, 8 calls
    assert all(d.impl == FAST and d.predicted_miss for d in probes)
    others = [d for d in decisions if d.reason != "probe"]
    assert all(d.impl == SLOW and not d.predicted_miss for d in others)


def test_stochastic_choice_follows_eq3_and_eq4():
    agent = make_agent(seed=11)
    agent.inform(SIG, FAST, 5 * MS)
    agent.inform(SIG, FAST, 5 * MS)
    track = agent._tracks[SIG][FAST]
    fa_fast = agent.stats(SIG, FAST).fast_avg
    fa_slow = agent.stats(SIG, SLOW).fast_avg
    p, factor = track.p_delay, track.delay_factor
    assert factor == pytest.approx(5 * MS / fa_fast, rel=1e-3)  # eq. 2
    adjusted = fa_fast * (1 - p) + fa_fast * factor * p  # eq. 3
    expected = adjusted**-2 / (adjusted**-2 + fa_slow**-2)  # eq. 4
    n = 4000
    picks = sum(agent.choose(SIG, [FAST, SLOW]).impl == FAST for _ in range(n))
    sigma = math.sqrt(expected * (1 - expected) / n)
    assert abs(picks / n - expected) < 4 * sigma, (picks / n, expected)
    assert 0.1 < expected < 0.3  # a real mix, not a degenerate case


def test_zero_timings_do_not_break_the_draw():
    agent = DelayAgent("toy", rng=random.Random(0))
    agent.seed(SIG, FAST, runs=[0.0] * 12)
    agent.seed(SIG, SLOW, runs=[1 * MS] * 12)
    agent.inform(SIG, FAST, 5 * MS)  # delayed (factor undefined: FA = 0 → 1.0)
    assert agent.choose(SIG, [FAST, SLOW]).impl in (FAST, SLOW)


def test_untimed_implementation_is_explored_under_a_deadline_when_there_is_slack():
    # "gpu" has neither runs nor a prior; "fast" meets the deadline with room.  Without
    # the rationed exploration the agent would never try "gpu" (the H100 case).
    agent = make_agent(explore_every=10, max_explorations=3)
    deadline = 5 * MS  # fast is expected at 1 ms: 0.2 of the deadline
    picks = []
    for call in range(60):
        d = agent.choose(SIG, ["gpu", FAST, SLOW], deadline)
        picks.append(d.impl)
        if d.impl == "gpu":
            if picks.count("gpu") <= 2:
                assert d.reason == "explore"
            if picks.count("gpu") >= 2:  # the engine records from the 2nd call on
                agent.inform(SIG, "gpu", 0.1 * MS)
        else:
            agent.inform(SIG, d.impl, normal_time(d.impl, call))
    first = picks.index("gpu")
    assert first == 9  # the 10th call under the deadline
    assert picks.count("gpu") > 2  # once timed it wins on speed
    assert picks[-10:] == ["gpu"] * 10


def test_exploration_under_a_deadline_is_rationed():
    # no slack (best known expected at 1 ms of a 1.5 ms deadline): never explored
    agent = make_agent(explore_every=5)
    picks = [agent.choose(SIG, ["gpu", FAST], 1.5 * MS).impl for _ in range(50)]
    assert "gpu" not in picks
    # slack, but the untimed one never yields a timing: tried max_explorations times
    agent = make_agent(explore_every=5, max_explorations=3)
    picks = [agent.choose(SIG, ["gpu", FAST], 5 * MS).impl for _ in range(100)]
    assert picks.count("gpu") == 3
    assert [i for i, p in enumerate(picks) if p == "gpu"] == [4, 9, 14]


def test_hopeless_deadline_picks_the_fastest_not_the_noise():
    # A frame already late: no implementation can make the deadline.  "slow" is
    # noisy, so its P(meet) (~1e-8) dwarfs the steady fast one's (~1e-23); both are
    # noise.  The agent must take the fastest and say the miss was predicted.
    agent = DelayAgent("toy", rng=random.Random(0))
    agent.seed(SIG, FAST, runs=[(10 + 0.1 * math.sin(i)) * MS for i in range(30)])
    agent.seed(SIG, SLOW, runs=[(20 + 40 * (i % 7) / 6) * MS for i in range(30)])
    assert agent.p_meet(SIG, SLOW, 8 * MS) > 1e6 * agent.p_meet(SIG, FAST, 8 * MS)
    for _ in range(20):
        d = agent.choose(SIG, [SLOW, FAST], deadline_s=8 * MS)
        assert (d.impl, d.predicted_miss) == (FAST, True)
