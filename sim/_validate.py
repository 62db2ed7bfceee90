"""Field checks shared by the config dataclasses (messages name field, value, range)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check", "finite", "int_ge", "nonneg", "pair", "positive"]


def check(ok: bool, cls: str, name: str, value: Any, valid: str) -> None:
    """Unless ``ok``, raise ``ValueError`` naming the field, its value and ``valid``."""
    if not ok:
        raise ValueError(f"{cls}.{name}={value!r} is out of range; expected {valid}")


def finite(x: Any) -> bool:
    """True for a real number that is not NaN or infinite."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def nonneg(cls: str, obj: Any, *names: str) -> None:
    """Check that the named fields are finite and >= 0."""
    for n in names:
        v = getattr(obj, n)
        check(finite(v) and v >= 0, cls, n, v, "a finite number >= 0")


def positive(cls: str, obj: Any, *names: str) -> None:
    """Check that the named fields are finite and > 0."""
    for n in names:
        v = getattr(obj, n)
        check(finite(v) and v > 0, cls, n, v, "a finite number > 0")


def int_ge(cls: str, obj: Any, name: str, lo: int) -> None:
    """Check that the field is an int (not bool) >= ``lo``."""
    v = getattr(obj, name)
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo
    check(ok, cls, name, v, f"an integer >= {lo}")


def pair(cls: str, obj: Any, name: str, *, nonneg: bool = False) -> None:
    """Check that the field is a (y, x) tuple of finite numbers (>= 0 if asked)."""
    v = getattr(obj, name)
    ok = isinstance(v, tuple) and len(v) == 2 and all(finite(x) for x in v)
    if ok and nonneg:
        ok = all(x >= 0 for x in v)
    what = "a (y, x) pair of finite numbers" + (" >= 0" if nonneg else "")
    check(ok, cls, name, v, what)
