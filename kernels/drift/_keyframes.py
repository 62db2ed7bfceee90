"""Key frames of :class:`~livesr.kernels.drift.RollingDrift`: the templates blocks
are registered against, which of them serve as references for a block, and when a
new key is started or an old one is reused (module notes of :mod:`._rolling`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from livesr.kernels.drift._register import (
    array_module,
    coarse_spectrum,
    register_two_pass,
)
from livesr.kernels.drift._rolling_params import RollingDriftParams

logger = logging.getLogger("livesr.kernels.drift._rolling")


@dataclass(slots=True)
class KeyFrame:
    """A template (mean of shifted blocks, then frozen) with a known offset."""

    index: int
    offset: np.ndarray  # (2,) displacement of the template, px
    var: float  # offset variance per axis, px^2
    acc: Any  # weighted sum of shifted blocks (numpy or cupy, as the frames)
    wsum: Any  # weight of each pixel
    n: int = 1
    frozen: bool = False
    image: Any = None
    spectrum: Any = None
    psr0: float = math.nan
    offset_samples: list[np.ndarray] = field(default_factory=list)
    sample_vars: list[float] = field(default_factory=list)
    blocks: list[tuple[int, Any, np.ndarray]] = field(default_factory=list)
    crops: dict[tuple[int, int], Any] = field(default_factory=dict)

    def template(self) -> Any:
        if self.image is not None:
            return self.image
        xp = array_module(self.acc)
        valid = self.wsum > 0.5
        img = xp.where(valid, self.acc / xp.maximum(self.wsum, 1e-12), 0.0)
        if not bool(valid.all()):
            img[~valid] = img[valid].mean() if bool(valid.any()) else 0.0
        return img

    def freeze(self, double: bool = False) -> None:
        self.image = self.template()
        self.spectrum = coarse_spectrum(self.image, double=double)
        self.frozen = True
        xp = array_module(self.image)
        self.acc = self.wsum = xp.empty((0, 0))  # accumulators no longer needed

    def add(self, img: Any, est: np.ndarray) -> None:
        """Accumulate block ``img`` (at displacement ``est``) into the template."""
        sh, w = shift_into(img, est - self.offset)
        self.acc += sh
        self.wsum += w
        self.n += 1


def shift_into(img: Any, lag: np.ndarray) -> tuple[Any, Any]:
    """Shift ``img`` by ``-lag`` (cubic spline); returns (shifted, weight)."""
    xp = array_module(img)
    if xp is np:
        from scipy import ndimage
    else:
        from cupyx.scipy import ndimage
    lag_t = (-float(lag[0]), -float(lag[1]))
    sh = ndimage.shift(img, lag_t, order=3, mode="constant", cval=0.0)
    w = ndimage.shift(xp.ones_like(img), lag_t, order=1, mode="constant", cval=0.0)
    w = (w > 0.999).astype(xp.float64)
    return sh * w, w


class KeyChain:
    """The key frames of one stream of ``shape`` (h, w) frames: the root (key 0, the
    first ``key_blocks`` blocks), the frozen keys, the one accumulating
    (``pending``) and the current main reference."""

    def __init__(
        self, params: RollingDriftParams, shape: tuple[int, int] | None = None
    ) -> None:
        self.params = params
        self.shape = shape  # set by the estimator at the first frame
        self.double = params.precision == "double"
        self.keys: list[KeyFrame] = []
        self.current = 0  # index of the current (main) frozen key, or accumulating root
        self.pending: KeyFrame | None = None  # non-root key being accumulated
        self.since_key = 0

    @property
    def n_keys(self) -> int:
        """Key frames created so far (frozen or accumulating)."""
        return len(self.keys) + (self.pending is not None)

    @property
    def root(self) -> KeyFrame:
        return self.keys[0]

    def start_root(self, img: Any) -> None:
        """The first block starts the root key (offset 0 by definition)."""
        xp = array_module(img)
        root = KeyFrame(
            index=0,
            offset=np.zeros(2),
            var=0.0,
            acc=img.copy(),
            wsum=xp.ones_like(img),
        )
        root.blocks.append((0, img.copy(), np.zeros(2)))
        self.keys.append(root)

    def add_to_root(self, img: Any, est: np.ndarray, block_index: int) -> bool:
        """Accumulate a block into the root; True when it has ``key_blocks``."""
        root = self.root
        root.add(img, est)
        root.blocks.append((block_index, img.copy(), est.copy()))
        return root.n >= self.params.key_blocks

    def freeze_root(self) -> tuple[list[int], np.ndarray]:
        """Freeze the root and register its blocks against it: (block indices,
        (n, 2) lags); the caller sets ``root.offset`` from them."""
        root = self.root
        root.freeze(self.double)
        lags = []
        for _, img, est in root.blocks:
            lag, _ = self.register(root, img, self.spectrum(img), est)
            lags.append(lag)
        indices = [i for i, _, _ in root.blocks]
        root.blocks = []
        return indices, np.asarray(lags)

    def shift(self, delta: np.ndarray) -> None:
        """Add ``delta`` (2,) px to every key's offset (a change of the run's frame)."""
        keys = self.keys + ([self.pending] if self.pending is not None else [])
        for k in keys:
            k.offset = k.offset + delta
            k.offset_samples = [o + delta for o in k.offset_samples]
            k.blocks = [(i, img, est + delta) for i, img, est in k.blocks]

    # -- registration -----------------------------------------------------------
    def overlap(self, disp: np.ndarray, key: KeyFrame) -> float:
        """Overlap fraction (of the frame area) of a frame at ``disp`` with ``key``."""
        assert self.shape is not None
        h, w = self.shape
        d = np.abs(disp - key.offset)
        return max(0.0, 1 - d[0] / h) * max(0.0, 1 - d[1] / w)

    def spectrum(self, img: Any) -> Any:
        return coarse_spectrum(img, double=self.double)

    def register(
        self, key: KeyFrame, img: Any, f_img: Any, pred: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """Lag of ``img`` against ``key`` (searched around ``pred``) and the PSR."""
        p = self.params
        ref = key.template()
        f_ref = key.spectrum if key.spectrum is not None else self.spectrum(ref)
        centre = pred - key.offset
        r = register_two_pass(
            ref,
            img,
            upsample=p.upsample,
            max_shift=p.max_drift,
            center=(float(centre[0]), float(centre[1])),
            f_ref=f_ref,
            f_img=f_img,
            # pass-2 crop spectra of a frozen key, by integer lag (<= 64 MiB)
            ref_cache=key.crops if key.frozen else None,
            double=self.double,
        )
        return np.array([r.dy, r.dx]), r.psr

    def references(self, pred: np.ndarray) -> list[KeyFrame]:
        """The keys a block predicted at ``pred`` is registered against, main first."""
        p = self.params
        frozen = [k for k in self.keys if k.frozen]
        if not frozen:
            return [self.keys[0]]  # the root while it accumulates
        main = self.keys[self.current]
        refs = [main] if self.overlap(pred, main) >= p.min_ref_overlap else []
        others = sorted(
            (k for k in frozen if k is not main),
            key=lambda k: -self.overlap(pred, k),
        )
        for k in others:
            if len(refs) >= p.n_references:
                break
            if self.overlap(pred, k) >= p.min_ref_overlap:
                refs.append(k)
        if not refs:
            refs = [max(frozen, key=lambda k: self.overlap(pred, k))]
        return refs

    # -- new keys ---------------------------------------------------------------
    def maintain(
        self, img: Any, est: np.ndarray, psr: float, main: KeyFrame, noise_var: float
    ) -> None:
        """After an accepted block (root frozen): grow the pending key, or switch
        to a better existing key, or start a new one (module notes)."""
        p = self.params
        if math.isnan(main.psr0):
            main.psr0 = psr
        if self.pending is not None:
            self._grow_pending(self.pending, img, est, main, noise_var)
            return
        self.since_key += 1
        cur = self.keys[self.current]
        forced = p.keyframe_every > 0 and self.since_key >= p.keyframe_every
        need = (
            self.overlap(est, cur) < p.min_overlap
            or forced
            or (math.isfinite(cur.psr0) and psr < 0.5 * cur.psr0 and main is cur)
        )
        if not need:
            return
        best = max(
            (k for k in self.keys if k.frozen and k is not cur),
            key=lambda k: self.overlap(est, k),
            default=None,
        )
        if not forced and best is not None and self.overlap(est, best) >= p.min_overlap:
            self.current = best.index
            self.since_key = 0
            return
        self.pending = KeyFrame(
            index=len(self.keys),
            offset=est.copy(),
            var=noise_var,
            acc=img.copy(),
            wsum=array_module(img).ones_like(img),
            offset_samples=[est.copy()],
            sample_vars=[noise_var + main.var],
        )

    def _grow_pending(
        self, pk: KeyFrame, img: Any, est: np.ndarray, main: KeyFrame, noise_var: float
    ) -> None:
        """Measure the pending key's offset from this block, accumulate the block;
        freeze the key (and make it the main one) after ``key_blocks`` blocks."""
        lag, _ = self.register(pk, img, self.spectrum(img), est)
        pk.offset_samples.append(est - lag)
        pk.sample_vars.append(noise_var + main.var)
        pk.offset = np.mean(pk.offset_samples, axis=0)
        pk.add(img, est)
        if pk.n < self.params.key_blocks:
            return
        m = len(pk.offset_samples)
        pk.var = float(np.mean(pk.sample_vars)) / m
        pk.freeze(self.double)
        self.keys.append(pk)
        self.current = len(self.keys) - 1
        self.pending = None
        self.since_key = 0
        logger.debug(
            "RollingDrift: key %d frozen at offset (%.3f, %.3f) +- %.4f px",
            pk.index,
            pk.offset[0],
            pk.offset[1],
            math.sqrt(pk.var),
        )
