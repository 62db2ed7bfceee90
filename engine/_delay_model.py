"""The delay agent's statistics: fast/slow halves of a run-time history, the normal
CDF, and ``P(delay persists)`` by logistic regression (NanoPyx's equations 1-3).

Pure functions of their arguments (no I/O, no state); :mod:`._agent` uses them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stats:
    """Fast/slow half statistics of a run-time history (seconds)."""

    fast_avg: float
    fast_std: float
    slow_avg: float
    slow_std: float
    n: int

    @classmethod
    def of(cls, times: Iterable[float]) -> Stats:
        """Split ``times`` (non-empty) into fastest and slowest halves, NanoPyx style."""
        values = sorted(times)
        n = len(values)
        if n == 0:
            raise ValueError("Stats.of: no run times")
        half = max(1, n // 2)
        fast, slow = values[:half], values[half:] or values[:half]
        return cls(_mean(fast), _pstd(fast), _mean(slow), _pstd(slow), n)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _pstd(xs: Sequence[float]) -> float:
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def phi(z: float) -> float:
    """The standard normal CDF."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def logistic_p_delay(
    labels: list[bool], c: float = 100.0, no_evidence_p: float = 0.01
) -> float:
    """P(next run delayed | this run delayed) by logistic regression on label pairs.

    Fits ``delayed[k+1] ~ delayed[k]`` with an intercept and an L2 penalty on the
    coefficient, the objective of scikit-learn's ``LogisticRegression(C=c)``
    (``0.5·w² + C·Σ log-loss``), and returns the predicted probability for
    ``delayed[k] = True``.  With one binary feature the data reduce to four counts,
    so the fit is a few Newton steps in plain Python (microseconds; scikit-learn
    takes ~1.5 ms per fit here plus ~0.8 s to import, on the hot path of the first
    delay).  :func:`sklearn_p_delay` is the same model through scikit-learn (tests
    check they agree).  With one class only: ``no_evidence_p`` if no run was
    delayed, ``1 − no_evidence_p`` if all were.
    """
    y = labels[1:]
    if len(y) < 1 or not any(y):
        return no_evidence_p
    if all(y):
        return 1.0 - no_evidence_p
    x = labels[:-1]
    n1 = sum(1 for xi in x if xi)
    k1 = sum(1 for xi, yi in zip(x, y, strict=True) if xi and yi)
    n0 = len(x) - n1
    k0 = sum(1 for xi, yi in zip(x, y, strict=True) if not xi and yi)
    b = w = 0.0
    for _ in range(100):
        p0, p1 = _sigmoid(b), _sigmoid(b + w)
        gw = w + c * (n1 * p1 - k1)
        gb = c * (n0 * p0 - k0 + n1 * p1 - k1)
        h1 = c * n1 * p1 * (1.0 - p1)
        hww = 1.0 + h1
        hbb = c * n0 * p0 * (1.0 - p0) + h1
        det = hww * hbb - h1 * h1
        if det <= 1e-300:
            break
        dw = (hbb * gw - h1 * gb) / det
        db = (hww * gb - h1 * gw) / det
        w, b = w - dw, b - db
        if abs(dw) < 1e-10 and abs(db) < 1e-10:
            break
    return _sigmoid(b + w)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def sklearn_p_delay(
    labels: list[bool], c: float = 100.0, no_evidence_p: float = 0.01
) -> float:
    """:func:`logistic_p_delay` through scikit-learn (imported here, on first use)."""
    y = labels[1:]
    if len(y) < 1 or not any(y):
        return no_evidence_p
    if all(y):
        return 1.0 - no_evidence_p
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(labels[:-1], dtype=float).reshape(-1, 1)
    model = LogisticRegression(C=c, tol=1e-8, max_iter=1000).fit(
        x, np.asarray(y, dtype=bool)
    )
    proba = model.predict_proba(np.array([[1.0]]))[0]
    return float(proba[list(model.classes_).index(True)])
