"""Plain value types of the engine: backends, tolerances, input signatures, cases.

Nothing here imports a backend or touches the machine.
"""

from __future__ import annotations

import enum
import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Scalar types allowed as key parameters of an input signature (stored as JSON).
ParamValue = bool | int | float | str


class Backend(str, enum.Enum):  # noqa: UP042 (StrEnum is 3.11+, livesr supports 3.10)
    """The closed set of implementation backends.  The variant is free text."""

    NUMPY = "numpy"
    NUMBA = "numba"
    CYTHON = "cython"
    OPENCL = "opencl"
    CUPY = "cupy"

    @classmethod
    def parse(cls, value: Backend | str) -> Backend:
        """Return the member for ``value``; raise ``ValueError`` naming the valid ones."""
        if isinstance(value, Backend):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            valid = ", ".join(b.value for b in cls)
            raise ValueError(
                f"backend={value!r} is not a livesr backend; expected one of: {valid}"
            ) from None

    def __str__(self) -> str:  # "numba", not "Backend.NUMBA"
        return self.value


@dataclass(frozen=True)
class Tolerance:
    """Equivalence tolerance of a kernel: ``|impl - reference| <= atol + rtol·|reference|``.

    Parameters
    ----------
    rtol, atol : float
        Relative and absolute tolerance, both ``>= 0`` (float32 arithmetic: ``rtol``
        around ``1e-5`` is typical).
    """

    rtol: float = 1e-5
    atol: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (
                isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
            ):
                raise ValueError(
                    f"Tolerance.{name}={value!r}: expected a finite float >= 0"
                )


@dataclass(frozen=True)
class Case:
    """A named example input of a kernel (equivalence tests, ``livesr bench``).

    Call as ``kernel.using(impl)(*case.args, **case.kwargs)``.  Any object with the
    attributes ``name``, ``args`` and ``kwargs`` works as a case.
    """

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Case.name={self.name!r}: expected a non-empty string")
        if not isinstance(self.args, tuple):
            object.__setattr__(self, "args", tuple(self.args))


# --- shape buckets -------------------------------------------------------------


def bucket_dim(n: int) -> int:
    """Round ``n`` to the nearest (in log scale) of ``2**k`` and ``3·2**k``.

    1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, ... so 100 → 96, 64 → 64, 80 → 96.
    """
    if n <= 3:
        return max(int(n), 1)
    k = int(math.floor(math.log2(n)))
    candidates = (1 << k, 3 << (k - 1), 1 << (k + 1))
    return min(candidates, key=lambda c: (abs(math.log(c / n)), c))


@functools.lru_cache(maxsize=1024)
def _bucket(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(bucket_dim(n) for n in shape)


@functools.lru_cache(maxsize=1024)
def _key_text(
    shape: tuple[int, ...], dtype: str, params: tuple[tuple[str, ParamValue], ...]
) -> str:
    # cached: computed on every dispatch (params are hashable scalars by construction)
    return json.dumps(
        {"shape": list(shape), "dtype": dtype, "params": dict(params)},
        sort_keys=True,
        separators=(",", ":"),
    )


def _check_param(name: str, value: Any) -> ParamValue:
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(
                f"InputSignature.params[{name!r}]={value!r}: expected finite"
            )
        # numpy scalars are converted to plain Python numbers (JSON, hashing)
        return value.item() if hasattr(value, "item") else value
    if hasattr(value, "item") and callable(value.item):  # numpy scalar of another kind
        return _check_param(name, value.item())
    raise ValueError(
        f"InputSignature.params[{name!r}]={value!r} ({type(value).__name__}): expected a "
        "bool, int, float or str key parameter"
    )


@dataclass(frozen=True)
class InputSignature:
    """What the engine knows about an input: the problem size and its key parameters.

    Benchmarks are stored under :attr:`key` (shape *bucket*, dtype, parameters), so
    ``(100, 64, 64)`` and ``(98, 64, 64)`` share timings; unseen inputs borrow the
    timings of the most similar stored signature (:meth:`distance`).

    Parameters
    ----------
    shape : tuple of int
        The shape of the main input (each dimension >= 1).
    dtype : str
        The dtype name of the main input, e.g. ``"float32"``.
    params : mapping or tuple of (name, value)
        Key parameters that change the cost (magnification, radius, ...): bool, int,
        float or str.  Stored sorted by name.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    params: tuple[tuple[str, ParamValue], ...] = ()

    def __post_init__(self) -> None:
        try:
            shape = tuple(int(n) for n in self.shape)
        except TypeError:
            raise ValueError(
                f"InputSignature.shape={self.shape!r}: expected a tuple of ints"
            ) from None
        if any(n < 1 for n in shape):
            raise ValueError(
                f"InputSignature.shape={shape}: every dimension must be >= 1"
            )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", str(self.dtype))
        items = self.params.items() if isinstance(self.params, Mapping) else self.params
        params = tuple(sorted((str(k), _check_param(str(k), v)) for k, v in items))
        object.__setattr__(self, "params", params)

    @property
    def size(self) -> int:
        """Number of elements of the main input."""
        return math.prod(self.shape)

    @property
    def bucket(self) -> tuple[int, ...]:
        """The shape rounded per dimension by :func:`bucket_dim`."""
        return _bucket(self.shape)

    @property
    def key(self) -> str:
        """Canonical JSON text of (bucketed shape, dtype, params): the storage key."""
        return _key_text(_bucket(self.shape), self.dtype, self.params)

    @property
    def exact_key(self) -> str:
        """Like :attr:`key` but with the exact shape (first-call tracking)."""
        return _key_text(self.shape, self.dtype, self.params)

    @classmethod
    def of(cls, array: Any, **params: ParamValue) -> InputSignature:
        """Signature of ``array`` (anything with ``shape`` and ``dtype``) plus key params.

        For a kernel's ``signature=`` hook, e.g.
        ``lambda args, kwargs: InputSignature.of(args[0], magnification=args[1].magnification)``.
        """
        return cls(tuple(array.shape) or (1,), str(array.dtype), tuple(params.items()))

    @classmethod
    def from_key(cls, key: str) -> InputSignature:
        """Parse :attr:`key` (or :attr:`exact_key`) text back into a signature."""
        data = json.loads(key)
        return cls(tuple(data["shape"]), data["dtype"], tuple(data["params"].items()))

    def distance(self, other: InputSignature) -> float:
        """Dissimilarity of two problems (0 = same bucket); see the module docs.

        Sum over dimensions of ``|log2 a_i - log2 b_i|`` (so ``(100, 64, 64)`` vs
        ``(25, 128, 128)`` is 4, not 0 as with NanoPyx's product score), plus 2 for a
        different number of dimensions (then compared by total log-size), plus 2 for
        another dtype, plus per key parameter: the relative difference
        ``|a - b| / max(|a|, |b|)`` for numbers, 1 for any other mismatch or a missing
        parameter.
        """
        a, b = self.bucket, other.bucket
        if len(a) == len(b):
            d = sum(abs(math.log2(x) - math.log2(y)) for x, y in zip(a, b, strict=True))
        else:
            d = 2.0 + abs(math.log2(self.size) - math.log2(other.size))
        if self.dtype != other.dtype:
            d += 2.0
        pa, pb = dict(self.params), dict(other.params)
        for name in pa.keys() | pb.keys():
            if name not in pa or name not in pb:
                d += 1.0
                continue
            x, y = pa[name], pb[name]
            if _is_number(x) and _is_number(y):
                assert isinstance(x, (int, float)) and isinstance(y, (int, float))
                m = max(abs(x), abs(y))
                d += abs(x - y) / m if m else 0.0
            elif x != y:
                d += 1.0
        return d

    def __str__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params)
        shape = "×".join(str(n) for n in self.shape)
        return f"{shape} {self.dtype}" + (f" ({params})" if params else "")


#: The type of a kernel's signature function: ``(args, kwargs) -> InputSignature``.
SignatureFn = Callable[[tuple[Any, ...], Mapping[str, Any]], InputSignature]


def default_signature(
    args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> InputSignature:
    """Signature of a call when the kernel declares none.

    The main input is the first positional argument with ``shape`` and ``dtype``;
    scalar positional arguments become parameters ``arg<i>``, scalar keyword arguments
    keep their names, and scalar fields of a dataclass argument (a params object) are
    added under their field names.
    """
    import dataclasses

    shape: tuple[int, ...] | None = None
    dtype = "none"
    params: dict[str, ParamValue] = {}

    def add(name: str, value: Any) -> None:
        if isinstance(value, (bool, int, float, str)) and not (
            isinstance(value, float) and not math.isfinite(value)
        ):
            params[name] = value

    for i, value in enumerate(args):
        if shape is None and hasattr(value, "shape") and hasattr(value, "dtype"):
            shape = tuple(int(n) for n in value.shape) or (1,)
            dtype = str(value.dtype)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                add(f.name, getattr(value, f.name))
        else:
            add(f"arg{i}", value)
    for name, value in kwargs.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                add(f.name, getattr(value, f.name))
        else:
            add(name, value)
    return InputSignature(shape or (1,), dtype, tuple(params.items()))


@dataclass(frozen=True)
class ImplInfo:
    """One implementation of a kernel as the registry sees it.

    ``id`` is ``backend[-variant]``; ``reason`` says why it is unavailable (empty when
    available), e.g. ``"cupy: not installed (pip install livesr[gpu])"``.
    """

    id: str
    backend: Backend
    variant: str = ""
    available: bool = True
    reason: str = ""
    module: str = ""


@dataclass(frozen=True)
class DeadlineMiss:
    """A call that could not (predicted) or did not (measured) meet its deadline.

    Recorded on the kernel (``kernel.deadline_misses``, ``kernel.last_deadline_miss``),
    never raised: the result of the call is still returned.
    """

    kernel: str
    impl: str
    deadline_s: float
    expected_s: float
    measured_s: float | None
    p_meet: float
    predicted: bool


def _is_number(v: object) -> bool:
    """An int or float parameter value (bools are not numbers here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)
