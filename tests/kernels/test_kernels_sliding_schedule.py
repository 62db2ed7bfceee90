"""The host and device windows share one emission schedule (kernels/sliding/_base.py).

The device window's storage and CUDA calls are replaced by recording stubs, so its
schedule runs here without a GPU; over random sequences of batches and settings
changes it must emit exactly the windows (first, last frame) the host window emits.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from livesr.kernels.sliding import DeviceSlidingEsrrf, SlidingEsrrf, SlidingResult


class _ScheduleOnlyDevice(DeviceSlidingEsrrf):
    """The device window with every device call stubbed: maps are labels."""

    def _allocate(self, shape: Any) -> None:
        self._shape = (int(shape[0]), int(shape[1]))
        self._maps = [f"slot{j}" for j in range(self._cfg.window + 1)]
        self._shifts = np.zeros((self._cfg.window, 2))

    def _reallocate(self, *, keep: bool, old_window: int | None = None) -> None:
        assert self._shape is not None
        self._allocate(self._shape)

    def _map_batch(self, stack: Any, shifts: Any, need: list[int], deadline_s: Any) -> None:
        for k in need:
            self._in_batch[self._frames_seen + k] = f"frame{self._frames_seen + k}"

    def _keep_batch_maps(self) -> None:
        self._in_batch.clear()

    def _op(self, rem: Any, nxt: Any, add: Any, prev: Any) -> None:
        pass

    def _flush(self) -> None:
        pass

    def _start_window(self, i: int, x: Any) -> None:
        self._lo = i

    def _rebuild(self) -> None:
        pass

    def _emit(self) -> SlidingResult:
        return SlidingResult(np.empty(0), self._lo, self._hi - 1, self._hi - self._lo)


def _zero_map(frame: Any, params: Any, *, shift: Any = (0.0, 0.0), out: Any = None) -> Any:
    m = params.magnification
    shape = (frame.shape[0] * m, frame.shape[1] * m)
    if out is None:
        return np.zeros(shape, np.float32)
    out[...] = 0.0
    return out


def _run(window: Any, seed: int) -> list[Any]:
    rng = random.Random(seed)
    seen: list[Any] = []
    for _ in range(30):
        if rng.random() < 0.8:
            n = rng.randint(0, 9)
            results = window.push_many(np.ones((n, 3, 4), np.float32), np.zeros((n, 2)))
            seen.append([(r.first_frame, r.last_frame, r.n_frames) for r in results])
        else:
            # real changes only: on a change to the current value the host window
            # drops the frames the next window will not use at once, the device
            # window at its next push (a later window change then starts from
            # different stored frames)
            w, s = window.window, window.stride
            change = rng.choice(
                [{"window": rng.choice([v for v in range(2, 9) if v != w])},
                 {"stride": rng.choice([v for v in range(1, 12) if v != s])},
                 {"radius": 3.0 - window.params.radius}]
            )
            window.set_params(recompute=rng.random() < 0.5, **change)
            seen.append(sorted(change.items()))
        seen.append((window.frames_seen, window.windows_emitted, window.next_emission,
                     window.n_stored))
    return seen


@pytest.mark.parametrize("seed", range(40))
def test_device_and_host_windows_emit_the_same_windows(seed: int) -> None:
    rng = random.Random(1000 + seed)
    window, stride, batch = rng.randint(2, 8), rng.randint(1, 11), rng.randint(1, 5)
    host = SlidingEsrrf(window, stride, magnification=2, radius=1.0, frame_map=_zero_map,
                        strategy="maps", macro_pixel_correction=False)
    device = _ScheduleOnlyDevice(window, stride, magnification=2, radius=1.0,
                                 max_batch=batch)
    host_seen, device_seen = _run(host, seed), _run(device, seed)
    assert device_seen == host_seen
    emitted = [r for step in host_seen if isinstance(step, list) for r in step
               if isinstance(r, tuple) and len(r) == 3]
    assert emitted and all(n == last - first + 1 for first, last, n in emitted)
