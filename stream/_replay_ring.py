"""A pre-allocated, pre-touched slot ring holding frames until they are acknowledged."""

from __future__ import annotations

from collections import deque

import numpy as np


class ReplayRing:
    """Fixed-size frame slots with a free-slot list.

    All memory is allocated and written once in the constructor (so no page fault
    happens while frames stream), then reused.

    Parameters
    ----------
    capacity
        Number of slots (>= 1).
    shape, dtype
        Shape and dtype of every frame.

    Notes
    -----
    Not thread-safe: the owner serialises access.
    """

    def __init__(self, capacity: int, shape: tuple[int, int], dtype: str) -> None:
        if capacity < 1:
            raise ValueError(f"ReplayRing capacity={capacity} must be >= 1")
        self.capacity = int(capacity)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self._buf = np.empty((self.capacity, *self.shape), dtype=self.dtype)
        self._buf.view(np.uint8).fill(0)  # pre-fault every page now, not mid-stream
        self._free: deque[int] = deque(range(self.capacity))
        self.peak_used = 0

    @property
    def nbytes(self) -> int:
        """Total bytes held by the ring."""
        return int(self._buf.nbytes)

    @property
    def used(self) -> int:
        """Slots currently holding an unacknowledged frame."""
        return self.capacity - len(self._free)

    def put(self, frame: np.ndarray) -> int | None:
        """Copy ``frame`` into a free slot and return the slot, or ``None`` when full.

        Raises
        ------
        ValueError
            If ``frame`` has the wrong shape or dtype.
        """
        if frame.shape != self.shape or frame.dtype != self.dtype:
            raise ValueError(
                f"frame {frame.shape} {frame.dtype} does not match the ring's "
                f"{self.shape} {self.dtype}; every frame of a stream must have the "
                "same "
                "shape and dtype"
            )
        if not self._free:
            return None
        slot = self._free.popleft()
        np.copyto(self._buf[slot], frame)
        used = self.capacity - len(self._free)
        if used > self.peak_used:
            self.peak_used = used
        return slot

    def take(self) -> int | None:
        """Reserve a free slot (fill it through :meth:`view`); ``None`` when full."""
        if not self._free:
            return None
        slot = self._free.popleft()
        used = self.capacity - len(self._free)
        if used > self.peak_used:
            self.peak_used = used
        return slot

    def view(self, slot: int) -> np.ndarray:
        """The frame stored in ``slot`` (a view; valid until the slot is released)."""
        return self._buf[slot]

    def release(self, slot: int) -> None:
        """Return ``slot`` to the free list."""
        self._free.append(slot)
