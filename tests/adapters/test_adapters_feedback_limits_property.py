"""Property: whatever a hook commands, the stage stays inside the limits."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from livesr.adapters.feedback import FeedbackLimits, LimitError, MicroscopeController


class FakeCore:
    """Records every position the stage was driven to (no pymmcore-plus needed)."""

    def __init__(self) -> None:
        self.xy = (0.0, 0.0)
        self.z = 0.0
        self.moves: list[tuple[str, float, tuple[float, ...]]] = []
        self.clock = 0.0

    def getXYPosition(self):  # noqa: N802 (MMCore name)
        return self.xy

    def setXYPosition(self, x, y):  # noqa: N802
        self.moves.append(("xy", self.clock, (self.xy[0], self.xy[1], x, y)))
        self.xy = (x, y)

    def getPosition(self):  # noqa: N802
        return self.z

    def setPosition(self, z):  # noqa: N802
        self.moves.append(("z", self.clock, (self.z, z)))
        self.z = z


LIMITS = FeedbackLimits(
    max_step_xy_um=1.0,
    max_step_z_um=0.5,
    x_range_um=(-3.0, 3.0),
    y_range_um=(-2.0, 2.0),
    z_range_um=(-1.0, 1.0),
    max_moves_per_s=10.0,
)

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-5, 5),
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e308, -1e308]),
)
commands = st.lists(
    st.tuples(
        st.sampled_from(["move_xy_by", "move_xy_to", "move_z_by", "move_z_to"]),
        values,
        values,
        st.floats(0.0, 0.3),  # time until the next command, s
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(commands)
def test_adapters_feedback_no_command_sequence_exceeds_limits(cmds):
    core = FakeCore()
    ctl = MicroscopeController(core, LIMITS, clock=lambda: core.clock)
    for name, a, b, dt in cmds:
        args = (a, b) if name.startswith("move_xy") else (a,)
        try:
            getattr(ctl, name)(*args)
        except LimitError:
            pass
        core.clock += dt
    last_t = -math.inf
    for kind, t, v in core.moves:
        assert t - last_t >= LIMITS.min_move_interval_s - 1e-12
        last_t = t
        if kind == "xy":
            x0, y0, x, y = v
            assert math.hypot(x - x0, y - y0) <= LIMITS.max_step_xy_um
            assert -3.0 <= x <= 3.0 and -2.0 <= y <= 2.0
        else:
            z0, z = v
            assert abs(z - z0) <= LIMITS.max_step_z_um and -1.0 <= z <= 1.0
    assert len(ctl.history) == len(core.moves)
