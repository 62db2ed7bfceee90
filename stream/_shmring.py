"""The processing ring in shared memory: ingest process -> processing process.

Same contract as :class:`~livesr.stream._ring.ProcessingRing` (a bounded FIFO of
frames, refused once full until drained, one producer and one consumer), but its
slots, sequence numbers, times and counters live in one
:class:`multiprocessing.shared_memory.SharedMemory` block so that the producer can
be another process (the ingest process of :mod:`livesr.stream._ingest_process`):
frames cross the process boundary by one ``memcpy`` into the slot, never by a pipe.

Synchronisation is by two monotonically increasing counters, ``written`` (only the
producer stores it) and ``read`` (only the consumer stores it); the producer fills a
slot completely before it publishes it by incrementing ``written``.  Aligned 8-byte
stores are atomic and stores are seen in program order on x86-64 (the platform this
runs on); a waiting consumer polls with a short, growing sleep (0.1 -> 2 ms), so a
frame waits at most about 2 ms once the ring has been idle, 0.1 ms while busy.

The block is created by the producer (:meth:`SharedRing.create`), opened by name by
the consumer (:meth:`SharedRing.attach`), and unlinked by the consumer at
``release(unlink=True)`` (if the consumer dies first, the resource tracker of the
process tree removes it).
"""

from __future__ import annotations

import time
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from livesr.stream._ring import RingBatch, RingItem, contiguous_batch, ring_capacity

__all__ = ["SharedRing"]

# counters (int64) at the start of the block
_WRITTEN, _READ, _CLOSED, _OFFERED, _REFUSED, _PEAK, _DRAINING = range(7)
_N_COUNTERS = 8
_ALIGN = 64


def _layout(shape: tuple[int, int], dtype: np.dtype, capacity: int) -> tuple[int, ...]:
    """Byte offsets of counters, seqs, times and slots, and the total size."""

    def up(n: int) -> int:
        return (n + _ALIGN - 1) // _ALIGN * _ALIGN

    o_seq = up(_N_COUNTERS * 8)
    o_t = up(o_seq + capacity * 8)
    o_slots = up(o_t + capacity * 16)
    frame_bytes = int(shape[0]) * int(shape[1]) * dtype.itemsize
    return o_seq, o_t, o_slots, o_slots + capacity * frame_bytes


class SharedRing:
    """Bounded FIFO of frames in shared memory (see the module docstring).

    Use :meth:`create` (producer side) or :meth:`attach` (consumer side).

    Attributes
    ----------
    name : str
        Name of the shared-memory block (give it to :meth:`attach`).
    shape : (int, int)
        Frame shape (rows, cols).
    dtype : numpy dtype
        Frame dtype.
    capacity : int
        Number of slots.
    frame_bytes : int
        Bytes per frame.
    """

    def __init__(
        self,
        shm: shared_memory.SharedMemory,
        shape: tuple[int, int],
        dtype: Any,
        capacity: int,
        *,
        owner: bool,
    ) -> None:
        self._shm = shm
        self._owner = owner
        self.name = shm.name
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.capacity = int(capacity)
        self.frame_bytes = self.shape[0] * self.shape[1] * self.dtype.itemsize
        o_seq, o_t, o_slots, total = _layout(self.shape, self.dtype, self.capacity)
        buf = shm.buf
        self._c = np.ndarray((_N_COUNTERS,), np.int64, buf, 0)
        self._seq = np.ndarray((self.capacity,), np.int64, buf, o_seq)
        self._t = np.ndarray((self.capacity, 2), np.float64, buf, o_t)
        self._slots = np.ndarray((self.capacity, *self.shape), self.dtype, buf, o_slots)
        self.device_budget_bytes = 0

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(
        cls,
        shape: tuple[int, int],
        dtype: Any,
        budget_bytes: int,
        *,
        min_frames: int = 1,
        max_frames: int | None = None,
    ) -> SharedRing:
        """Allocate a ring of ``budget_bytes // frame_bytes`` slots (producer side).

        Raises
        ------
        ValueError
            The budget holds fewer than ``min_frames`` frames (the eSRRF window).
        """
        dt = np.dtype(dtype)
        capacity = ring_capacity(shape, dt, budget_bytes, min_frames, max_frames)
        total = _layout((int(shape[0]), int(shape[1])), dt, capacity)[-1]
        # pages are mapped lazily (tmpfs): a large ring costs nothing until used
        shm = shared_memory.SharedMemory(create=True, size=total)
        ring = cls(shm, shape, dt, capacity, owner=True)
        ring._c[:] = 0
        return ring

    @classmethod
    def attach(cls, name: str, shape: tuple[int, int], dtype: Any, capacity: int) -> SharedRing:
        """Open the ring created by the producer (consumer side)."""
        return cls(shared_memory.SharedMemory(name=name), shape, dtype, capacity, owner=False)

    def release(self, *, unlink: bool = False) -> None:
        """Drop this process's mapping; ``unlink``: remove the block too.

        The consumer unlinks it (it maps the block last); the producer only unmaps.
        """
        if unlink:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass
        # counters stay readable (the summary reads them after processing ended)
        self._c = np.array(self._c)
        self._c[_CLOSED] = 1
        self._seq = self._t = self._slots = None  # type: ignore[assignment]
        try:
            self._shm.close()
        except BufferError:  # a view still exported: unmapped when it is collected
            pass

    @property
    def nbytes(self) -> int:
        """Host bytes held by the slots."""
        return self.capacity * self.frame_bytes

    def __len__(self) -> int:
        return int(self._c[_WRITTEN] - self._c[_READ])

    # ------------------------------------------------------------------ counters
    @property
    def offered(self) -> int:
        return int(self._c[_OFFERED])

    @property
    def refused(self) -> int:
        return int(self._c[_REFUSED])

    @property
    def peak(self) -> int:
        return int(self._c[_PEAK])

    @property
    def closed(self) -> bool:
        return bool(self._c[_CLOSED])

    def close(self) -> None:
        """No more frames will come (either side may call it)."""
        self._c[_CLOSED] = 1

    # ------------------------------------------------------------------ producer
    def offer(self, seq: int, frame: np.ndarray, t_acq: float, t_recv: float) -> bool:
        """Copy ``frame`` into a free slot; False (counted) if full or closed."""
        if frame.shape != self.shape:
            raise ValueError(
                f"frame {seq} has shape {frame.shape}; the processing ring holds "
                f"{self.shape}"
            )
        c = self._c
        written = int(c[_WRITTEN])
        count = written - int(c[_READ])
        if count >= self.capacity:
            c[_DRAINING] = 1
        elif count == 0:
            c[_DRAINING] = 0
        if c[_DRAINING] or c[_CLOSED]:
            c[_REFUSED] += 1
            return False
        i = written % self.capacity
        np.copyto(self._slots[i], frame, casting="unsafe")
        self._seq[i] = seq
        self._t[i, 0] = t_acq
        self._t[i, 1] = t_recv
        c[_WRITTEN] = written + 1  # publishes the slot
        c[_OFFERED] += 1
        if count + 1 > c[_PEAK]:
            c[_PEAK] = count + 1
        return True

    # ------------------------------------------------------------------ consumer
    def _wait(self, timeout: float) -> int:
        """Items waiting, polling up to ``timeout`` s for the first one."""
        c = self._c
        n = int(c[_WRITTEN] - c[_READ])
        if n or c[_CLOSED] or timeout <= 0:
            return n
        deadline = time.monotonic() + timeout
        nap = 1e-4
        while True:
            time.sleep(nap)
            n = int(c[_WRITTEN] - c[_READ])
            if n or c[_CLOSED]:
                return n
            left = deadline - time.monotonic()
            if left <= 0:
                return 0
            nap = min(nap * 1.5, 2e-3, left)

    def peek(self, timeout: float) -> RingItem | None:
        """The oldest item (not removed), waiting up to ``timeout`` s; None if none."""
        if not self._wait(timeout):
            return None
        i = int(self._c[_READ]) % self.capacity
        return RingItem(
            int(self._seq[i]), self._slots[i], float(self._t[i, 0]), float(self._t[i, 1])
        )

    def peek_many(self, max_n: int, timeout: float) -> RingBatch | None:
        """Up to ``max_n`` oldest items as one batch of contiguous slots.

        Same rules as :meth:`ProcessingRing.peek_many
        <livesr.stream._ring.ProcessingRing.peek_many>`: it stops at the end of the
        slot array and at a hole in the sequence numbers.
        """
        if max_n < 1:
            raise ValueError(f"peek_many: max_n={max_n}; expected >= 1")
        count = self._wait(timeout)
        if not count:
            return None
        i = int(self._c[_READ]) % self.capacity
        n = min(max_n, count, self.capacity - i)
        return contiguous_batch(
            self._slots, i, self._seq[i : i + n].copy(), self._t[i : i + n].copy()
        )

    def pop_many(self, n: int) -> None:
        """Remove the ``n`` oldest items (after processing them)."""
        c = self._c
        count = int(c[_WRITTEN] - c[_READ])
        if n > count:
            raise RuntimeError(f"SharedRing.pop_many({n}) with {count} item(s) in the ring")
        c[_READ] = int(c[_READ]) + n

    def pop(self) -> None:
        """Remove the oldest item (after processing it)."""
        if not len(self):
            raise RuntimeError("SharedRing.pop() on an empty ring")
        self.pop_many(1)

    def newest_seq(self) -> int | None:
        """Sequence number of the newest item, None when empty."""
        written = int(self._c[_WRITTEN])
        if written == int(self._c[_READ]):
            return None
        return int(self._seq[(written - 1) % self.capacity])

    def newest_copy(self) -> RingItem | None:
        """A copy of the frame written last, even when already processed (display).

        Same contract as :meth:`ProcessingRing.newest_copy
        <livesr.stream._ring.ProcessingRing.newest_copy>`: kept only if the
        producer did not come back to that slot while it was copied; None before
        the first frame, after :meth:`release`, or when the slot was being
        overwritten.
        """
        c, slots = self._c, self._slots
        written = int(c[_WRITTEN])
        if slots is None or written == 0 or self.capacity < 2:
            return None
        i = (written - 1) % self.capacity
        seq, t_acq, t_recv = int(self._seq[i]), float(self._t[i, 0]), float(self._t[i, 1])
        frame = slots[i].copy()
        if int(c[_WRITTEN]) - written >= self.capacity - 1:
            return None
        return RingItem(seq, frame, t_acq, t_recv)

    def discard_before(self, seq: int) -> int:
        """Remove the items older than ``seq`` (from the head); returns how many."""
        c = self._c
        read = int(c[_READ])
        written = int(c[_WRITTEN])
        n = 0
        while read + n < written and self._seq[(read + n) % self.capacity] < seq:
            n += 1
        c[_READ] = read + n
        return n

