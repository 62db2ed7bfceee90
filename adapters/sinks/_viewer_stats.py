"""What the napari viewer saw of a results stream: rates, latency, drops, skips
(:class:`StreamStats`, no Qt; part of :mod:`livesr.adapters.sinks.napari_viewer`)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from livesr.stream import ResultMessage

__all__ = ["StreamStats"]


class StreamStats:
    """What the viewer saw: rates, latency, drops, skips (no Qt; one thread).

    Parameters
    ----------
    window_s : float
        Rates and latency percentiles are computed over this recent period.
    """

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = float(window_s)
        #: SR images shown (drawn), raw frames shown
        self.shown = 0
        self.raw_shown = 0
        #: SR images skipped by the subscriber's drain (newer one queued behind)
        self.dropped = 0
        #: SR images never seen: index gaps (dropped by ZeroMQ for this slow viewer)
        self.missed = 0
        #: scheduled windows the pipeline did not produce (skips, gaps; frame numbers)
        self.not_produced = 0
        self.bad_messages = 0
        self.last: ResultMessage | None = None
        self.last_raw: ResultMessage | None = None
        #: newest live analyses seen (each header carries one once, naming its image)
        self.last_error_map: Mapping[str, Any] | None = None
        self.last_resolution: Mapping[str, Any] | None = None
        self.last_frc: Mapping[str, Any] | None = None
        self._shown_t: deque[float] = deque()
        self._lat_pub: deque[tuple[float, float]] = deque()
        self._lat_show: deque[tuple[float, float]] = deque()
        self._acq: deque[tuple[float, int]] = deque()

    def _trim(self, now: float) -> None:
        lo = now - self.window_s
        for dq in (self._lat_pub, self._lat_show):
            while dq and dq[0][0] < lo:
                dq.popleft()
        while self._shown_t and self._shown_t[0] < lo:
            self._shown_t.popleft()
        while len(self._acq) > 2 and self._acq[0][0] < self._acq[-1][0] - self.window_s:
            self._acq.popleft()

    def record_sr(
        self, msg: ResultMessage, now: float | None = None, *, drained: int = 0
    ) -> None:
        """Account for an SR image about to be drawn.

        ``drained``: messages the subscriber skipped to reach this one (they are part
        of the index gap; the rest of the gap never arrived).
        """
        now = time.time() if now is None else now
        prev = self.last
        self.dropped += drained
        if prev is not None and msg.index > prev.index:
            self.missed += max(0, msg.index - prev.index - 1 - drained)
            stride = (msg.header.get("params") or {}).get("stride")
            if (
                isinstance(stride, int)
                and stride > 0
                and msg.last_frame is not None
                and prev.last_frame is not None
            ):
                windows = (msg.last_frame - prev.last_frame) // stride
                self.not_produced += max(0, windows - (msg.index - prev.index))
        self.last = msg
        for key in ("error_map", "resolution", "frc"):
            value = msg.header.get(key)
            if isinstance(value, Mapping):
                setattr(self, f"last_{key}", value)
        self.shown += 1
        self._shown_t.append(now)
        t = msg.timestamps
        acq, pub = t.get("acquired"), t.get("published")
        if isinstance(acq, (int, float)) and acq > 0:
            if isinstance(pub, (int, float)) and pub > 0:
                self._lat_pub.append((now, (pub - acq) * 1e3))
            self._lat_show.append((now, (now - acq) * 1e3))
            if msg.last_frame is not None:
                self._acq.append((float(acq), msg.last_frame))
        self._trim(now)

    def record_raw(self, msg: ResultMessage) -> None:
        self.last_raw = msg
        self.raw_shown += 1

    def display_rate(self, now: float | None = None) -> float:
        """SR images drawn per second over the recent window."""
        now = time.time() if now is None else now
        self._trim(now)
        n = len(self._shown_t)
        if n < 2:
            return 0.0
        return (n - 1) / max(1e-9, self._shown_t[-1] - self._shown_t[0])

    def acquisition_rate(self) -> float:
        """Camera frames per second, from the frame numbers and acquisition times."""
        if len(self._acq) < 2:
            return math.nan
        (t0, f0), (t1, f1) = self._acq[0], self._acq[-1]
        return (f1 - f0) / (t1 - t0) if t1 > t0 else math.nan

    @staticmethod
    def _p50(dq: deque[tuple[float, float]]) -> float:
        return float(np.median([v for _, v in dq])) if dq else math.nan

    def latency_ms(self) -> dict[str, float]:
        """Median latency from acquisition to ``published`` / ``shown``."""
        return {
            "published": self._p50(self._lat_pub),
            "shown": self._p50(self._lat_show),
        }

    def status_text(self, now: float | None = None) -> str:
        """Multi-line status for the dock widget."""
        msg = self.last
        if msg is None:
            return "waiting for the first SR image..."

        def f(x: float, fmt: str = ".0f") -> str:
            return "-" if not math.isfinite(x) else format(x, fmt)

        h = msg.header
        rows, cols = msg.image.shape if msg.image is not None else (0, 0)
        lat = self.latency_ms()
        impl = h.get("implementation") or {}
        impl_txt = (
            ", ".join(f"{k}={v}" for k, v in impl.items())
            if isinstance(impl, Mapping)
            else str(impl)
        )
        lines = [
            f"SR image {msg.index} "
            f"(frames {h.get('first_frame', '?')}-{h.get('last_frame', '?')}), "
            f"{cols}x{rows} px of "
            f"{msg.pixel_size_um:.4g} um (M={msg.magnification})",
            f"display {f(self.display_rate(now), '.1f')} images/s | "
            f"camera {f(self.acquisition_rate(), '.1f')} frames/s",
            f"latency p50: published {f(lat['published'])} ms, "
            f"shown {f(lat['shown'])} ms (from acquisition)",
            f"implementation: {impl_txt or '-'}",
            f"not shown: {self.missed + self.dropped} dropped for the viewer, "
            f"{self.not_produced} skipped by the pipeline",
        ]
        counters = h.get("counters")
        if isinstance(counters, Mapping):
            lines.append(" | ".join(f"{k} {v}" for k, v in counters.items()))
        d = msg.drift
        q = (
            (h.get("quality") or {}).get("value")
            if isinstance(h.get("quality"), Mapping)
            else None
        )
        lines.append(
            (
                "drift: off"
                if d is None
                else f"drift dy {d[0]:+.2f} dx {d[1]:+.2f} raw px"
            )
            + (f" | quality {q:.4g}" if isinstance(q, (int, float)) else "")
        )
        for label, est, floor in (
            ("resolution", self.last_resolution, "Nyquist floor"),
            ("even/odd FRC", self.last_frc, "unresolved"),
        ):
            if est is not None:
                lines.append(_estimate_line(label, est, floor))
        em = self.last_error_map
        if em is not None:
            rsp, rse = em.get("rsp"), em.get("rse")
            lines.append(
                "error map (image "
                f"{em.get('image_index', '?')}): RSP "
                + (f"{rsp:.4f}" if isinstance(rsp, (int, float)) else "-")
                + ", RSE "
                + (f"{rse:.4g}" if isinstance(rse, (int, float)) else "-")
            )
        if self.last_raw is None:
            lines.append("raw: not published by this stream (SR only)")
        if self.bad_messages:
            lines.append(f"{self.bad_messages} malformed message(s) ignored")
        return "\n".join(lines)


def _estimate_line(label: str, est: Mapping[str, Any], floor: str) -> str:
    """``resolution 123 nm (image 4)``; ``(<floor>)`` flags an unresolved value."""
    nm, px = est.get("value_nm"), est.get("value_px")
    size = (
        f"{nm:.0f} nm" if isinstance(nm, (int, float))
        else f"{px:.2f} SR px" if isinstance(px, (int, float)) else "-"
    )
    # an unresolved decorrelation says why (stream/_resolution.py: not confirmed by
    # the FRC of its window, or at the floor)
    reason = est.get("reason")
    why = f"unresolved: {reason.replace('-', ' ')}" if isinstance(reason, str) else floor
    flag = "" if est.get("resolved") else f" ({why})"
    return f"{label} {size}{flag} (image {est.get('image_index', '?')})"
