"""How often the viewer may draw: it yields to the pipeline when the pipeline falls behind.

Every drawn update repaints the canvas, which costs CPU (25-50 ms with software
OpenGL under Xvfb on 2 cores).  On a machine with CPU to spare that is nothing; on a
busy one it is CPU the reconstruction needs.  The pipeline says when it fell behind:
each published header's ``counters["windows_skipped"]`` grows.  :class:`DrawPacer`
watches that counter and halves the viewer's draw rate each time it grows (down to
``min_fps``), and doubles it again after every ``calm_s`` seconds without a new skip
(up to ``max_fps``).  The event loop keeps ticking at its own period whatever the
draw rate, so the window stays responsive (input, resizing); only the drawing of
new images slows down, and the newest image is always the one drawn next.

::

    pacer = DrawPacer(max_fps=10, min_fps=1)
    pacer.observe(header["counters"]["windows_skipped"])   # each SR image received
    if now - last_draw >= pacer.interval_s: draw()
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["DrawPacer"]


class DrawPacer:
    """Draw-rate limit that backs off while the pipeline skips windows.

    Parameters
    ----------
    max_fps : float
        Drawn updates per second when the pipeline keeps up (> 0).
    min_fps : float
        Drawn updates per second at most backed off (0 < min_fps <= max_fps).
    calm_s : float
        Seconds without a new skipped window before the rate doubles (> 0).
    clock : callable
        Monotonic clock, seconds (tests pass a fake one).

    Attributes
    ----------
    fps : float
        The current limit, drawn updates per second.
    backoffs : int
        How many times the rate was halved (the viewer's statistics report it).
    """

    def __init__(
        self,
        max_fps: float = 10.0,
        min_fps: float = 1.0,
        *,
        calm_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("max_fps", max_fps), ("min_fps", min_fps), ("calm_s", calm_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name}={value!r}; expected a number")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}={value!r}; expected a finite number > 0")
        if min_fps > max_fps:
            raise ValueError(f"min_fps={min_fps!r} is above max_fps={max_fps!r}")
        self.max_fps = float(max_fps)
        self.min_fps = float(min_fps)
        self.calm_s = float(calm_s)
        self._clock = clock
        self.fps = self.max_fps
        self.backoffs = 0
        self._skipped: int | None = None
        self._calm_since = clock()

    @property
    def interval_s(self) -> float:
        """Shortest time between two drawn updates now, s."""
        self._recover()
        return 1.0 / self.fps

    def observe(self, windows_skipped: object) -> None:
        """Note the pipeline's ``windows_skipped`` counter of a received header.

        A counter that grew since the last one halves the rate; anything that is not
        a non-negative int (an older pipeline, a header without counters) is ignored.
        """
        if isinstance(windows_skipped, bool) or not isinstance(windows_skipped, int):
            return
        if windows_skipped < 0:
            return
        previous, self._skipped = self._skipped, windows_skipped
        if previous is not None and windows_skipped > previous:
            self.fps = max(self.min_fps, self.fps / 2.0)
            self.backoffs += 1
            self._calm_since = self._clock()
        else:
            self._recover()

    def _recover(self) -> None:
        now = self._clock()
        while self.fps < self.max_fps and now - self._calm_since >= self.calm_s:
            self.fps = min(self.max_fps, self.fps * 2.0)
            self._calm_since += self.calm_s
