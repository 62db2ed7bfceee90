"""The processing ring: a FIFO of frames waiting for processing, fixed memory budget.

The ingest thread persists a frame, then :meth:`ProcessingRing.offer` copies it into
a pre-allocated, pre-touched slot and returns at once; when every slot is taken the
frame is simply not offered for processing (it is on disk already) and the refusal
is counted.  Once full, the ring refuses frames until it has drained completely, so
that what it accepts afterwards is one contiguous run (a sliding window needs
contiguous frames; accepting one frame per freed slot would leave only isolated
frames that belong to no complete window).  The processing thread
:meth:`~ProcessingRing.peek`\\ s the oldest item,
works on the slot in place, then :meth:`~ProcessingRing.pop`\\ s it; to catch up it
may :meth:`~ProcessingRing.discard_before` a sequence number.

One producer thread and one consumer thread.  The slot memory is allocated once
(``capacity = budget_bytes // frame_bytes``); nothing grows while streaming.

Device memory: when the GPU path runs, a device-side mirror of the slots (pinned
host + device buffers) will be sized from ``device_budget_bytes``; the hook is
:attr:`ProcessingRing.device_budget_bytes`, unused by the CPU path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["ProcessingRing", "RingBatch", "RingItem", "contiguous_batch", "ring_capacity"]


@dataclass(frozen=True, slots=True)
class RingItem:
    """One frame in the ring.

    Attributes
    ----------
    seq : int
        Sequence number of the frame in its stream.
    frame : ndarray
        View of the slot (valid until :meth:`ProcessingRing.pop`).
    t_acq, t_recv : float
        Acquisition and reception times, seconds since the epoch.
    """

    seq: int
    frame: np.ndarray
    t_acq: float
    t_recv: float


@dataclass(frozen=True, slots=True)
class RingBatch:
    """Consecutive oldest items of the ring, as views of contiguous slots.

    Attributes
    ----------
    seqs : ndarray, (n,) int64
        Sequence numbers (a copy).
    frames : ndarray, (n, H, W)
        View of ``n`` consecutive slots (valid until :meth:`ProcessingRing.pop_many`).
    t_acq, t_recv : ndarray, (n,) float64
        Acquisition and reception times, seconds since the epoch (copies).
    """

    seqs: np.ndarray
    frames: np.ndarray
    t_acq: np.ndarray
    t_recv: np.ndarray

    def __len__(self) -> int:
        return int(self.seqs.shape[0])

    def item(self, k: int) -> RingItem:
        """Item ``k`` of the batch."""
        return RingItem(
            int(self.seqs[k]), self.frames[k], float(self.t_acq[k]), float(self.t_recv[k])
        )


class ProcessingRing:
    """Bounded FIFO of frames (see the module docstring).

    Parameters
    ----------
    shape : (int, int)
        Frame shape.
    dtype : str or numpy dtype
        Frame dtype.
    budget_bytes : int
        Host memory for the slots; ``capacity = budget_bytes // frame_bytes``.
    min_frames : int
        Smallest acceptable capacity (the eSRRF window); a smaller budget is an error.
    max_frames : int, optional
        Upper bound on the capacity even when the budget allows more (a backlog
        longer than this is never worth processing; saves memory for tiny frames).
    device_budget_bytes : int
        Device memory for the GPU mirror (0: none; hook, unused on the CPU path).
    """

    def __init__(
        self,
        shape: tuple[int, int],
        dtype: str | np.dtype,
        budget_bytes: int,
        *,
        min_frames: int = 1,
        max_frames: int | None = None,
        device_budget_bytes: int = 0,
    ) -> None:
        dt = np.dtype(dtype)
        frame_bytes = int(shape[0]) * int(shape[1]) * dt.itemsize
        capacity = ring_capacity(shape, dt, budget_bytes, min_frames, max_frames)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = dt
        self.capacity = capacity
        self.frame_bytes = frame_bytes
        self.device_budget_bytes = int(device_budget_bytes)
        # np.zeros maps zeroed pages lazily: allocating costs nothing at the first
        # frame (a memset of a 375 MiB ring stalled the ingest ~0.2 s there, longer
        # than a fast camera's replay ring lasts); each slot's pages are touched
        # by its first frame instead
        self._slots = np.zeros((capacity, *self.shape), dtype=dt)
        self._seq = np.zeros(capacity, dtype=np.int64)
        self._t = np.zeros((capacity, 2), dtype=np.float64)
        self._head = 0
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False
        self._draining = False
        self.offered = 0
        self.refused = 0
        self.peak = 0

    @property
    def nbytes(self) -> int:
        """Host bytes held by the slots."""
        return int(self._slots.nbytes)

    def __len__(self) -> int:
        with self._cond:
            return self._count

    # ------------------------------------------------------------------ producer
    def offer(self, seq: int, frame: np.ndarray, t_acq: float, t_recv: float) -> bool:
        """Copy ``frame`` into a free slot; False (counted: :attr:`refused`) if full."""
        if frame.shape != self.shape:
            raise ValueError(
                f"frame {seq} has shape {frame.shape}; the processing ring holds "
                f"{self.shape}"
            )
        with self._cond:
            if self._count == self.capacity:
                self._draining = True
            elif self._count == 0:
                self._draining = False
            if self._draining or self._closed:
                self.refused += 1
                return False
            i = (self._head + self._count) % self.capacity
        # the slot is ours: the consumer never reads beyond head + count
        np.copyto(self._slots[i], frame, casting="unsafe")
        with self._cond:
            self._seq[i] = seq
            self._t[i] = (t_acq, t_recv)
            self._count += 1
            self.offered += 1
            self.peak = max(self.peak, self._count)
            self._cond.notify()
        return True

    def close(self) -> None:
        """No more frames will come; wakes a waiting consumer."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ consumer
    def peek(self, timeout: float) -> RingItem | None:
        """The oldest item (not removed), waiting up to ``timeout`` s; None if none."""
        with self._cond:
            if self._count == 0 and not self._closed:
                self._cond.wait(timeout)
            if self._count == 0:
                return None
            i = self._head
            return RingItem(
                int(self._seq[i]),
                self._slots[i],
                float(self._t[i, 0]),
                float(self._t[i, 1]),
            )

    def peek_many(self, max_n: int, timeout: float) -> RingBatch | None:
        """Up to ``max_n`` oldest items (not removed) as one batch of contiguous slots.

        Waits up to ``timeout`` s for the first item; returns what is there then,
        without waiting for more (a batch never delays a frame).  The batch stops at
        the end of the slot array (the ring wraps there) and at a hole in the
        sequence numbers, so its frames are consecutive in memory and in time.
        None when the ring is empty.
        """
        if max_n < 1:
            raise ValueError(f"peek_many: max_n={max_n}; expected >= 1")
        with self._cond:
            if self._count == 0 and not self._closed:
                self._cond.wait(timeout)
            if self._count == 0:
                return None
            i = self._head
            n = min(max_n, self._count, self.capacity - i)
            seqs = self._seq[i : i + n].copy()
            t = self._t[i : i + n].copy()
        return contiguous_batch(self._slots, i, seqs, t)

    def pop_many(self, n: int) -> None:
        """Remove the ``n`` oldest items (after processing them)."""
        with self._cond:
            if n > self._count:
                raise RuntimeError(
                    f"ProcessingRing.pop_many({n}) with {self._count} item(s) in the ring"
                )
            self._head = (self._head + n) % self.capacity
            self._count -= n

    def pop(self) -> None:
        """Remove the oldest item (after processing it)."""
        with self._cond:
            if self._count == 0:
                raise RuntimeError("ProcessingRing.pop() on an empty ring")
            self._head = (self._head + 1) % self.capacity
            self._count -= 1

    def newest_seq(self) -> int | None:
        """Sequence number of the newest item, None when empty."""
        with self._cond:
            if self._count == 0:
                return None
            return int(self._seq[(self._head + self._count - 1) % self.capacity])

    def newest_copy(self) -> RingItem | None:
        """A copy of the frame written last, even when already processed (display).

        Safe against the producer: the copy is kept only if the producer did not
        reach that slot again while it was being copied (it writes slot ``k %
        capacity`` for its ``k``-th frame).  None before the first frame or when
        the slot was being overwritten (try again later).
        """
        with self._cond:
            written = self.offered
            if written == 0 or self.capacity < 2:
                return None
            i = (written - 1) % self.capacity
            seq, t_acq, t_recv = int(self._seq[i]), float(self._t[i, 0]), float(self._t[i, 1])
        frame = self._slots[i].copy()
        with self._cond:
            if self.offered - written >= self.capacity - 1:
                return None
        return RingItem(seq, frame, t_acq, t_recv)

    def discard_before(self, seq: int) -> int:
        """Remove the items older than ``seq`` (from the head); returns how many."""
        n = 0
        with self._cond:
            while self._count and self._seq[self._head] < seq:
                self._head = (self._head + 1) % self.capacity
                self._count -= 1
                n += 1
        return n


def ring_capacity(
    shape: tuple[int, int],
    dtype: np.dtype,
    budget_bytes: int,
    min_frames: int = 1,
    max_frames: int | None = None,
) -> int:
    """Slots a ring of ``budget_bytes`` holds (``budget // frame bytes``, at most
    ``max_frames``); ValueError naming the setting when fewer than ``min_frames``."""
    frame_bytes = int(shape[0]) * int(shape[1]) * np.dtype(dtype).itemsize
    capacity = int(budget_bytes) // frame_bytes if frame_bytes else 0
    if capacity < max(1, min_frames):
        need_mb = max(1, min_frames) * frame_bytes / 2**20
        raise ValueError(
            f"processing ring budget {budget_bytes / 2**20:.3f} MiB holds "
            f"{capacity} frame(s) of {shape[0]}x{shape[1]} {np.dtype(dtype)}; at least "
            f"{max(1, min_frames)} (the eSRRF window) are needed: raise [stream] "
            f"ring_mb to >= {need_mb:.3f}"
        )
    if max_frames is not None:
        capacity = min(capacity, max(int(max_frames), max(1, min_frames)))
    return capacity


def contiguous_batch(
    slots: np.ndarray, i: int, seqs: np.ndarray, t: np.ndarray
) -> RingBatch:
    """The batch of slots ``i..`` with sequence numbers ``seqs`` (copies) and times
    ``t`` (n, 2), cut at the first hole in the sequence numbers (a hole restarts the
    window, so a batch is consecutive in memory and in time)."""
    n = int(seqs.shape[0])
    if n > 1:
        breaks = np.flatnonzero(np.diff(seqs) != 1)
        if breaks.size:
            n = int(breaks[0]) + 1
            seqs, t = seqs[:n], t[:n]
    return RingBatch(seqs, slots[i : i + n], t[:, 0].copy(), t[:, 1].copy())
