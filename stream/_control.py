"""The control channel of a running pipeline: live parameter changes, status, stop.

A ZeroMQ REP socket bound beside the results publisher
(:attr:`Pipeline.control_endpoint <livesr.stream._pipeline.Pipeline.control_endpoint>`,
``[stream] control``; automatic ``ipc://`` by default) answers one JSON request
with one JSON reply::

    {"cmd": "set", "params": {"window": 30, "radius": 2.0}}
        -> {"ok": true, "cmd": "set", "applied": true, "frame_index": 120, ...}
    {"cmd": "status"}   -> {"ok": true, "cmd": "status", "params": {...}, ...}
    {"cmd": "stop"}     -> {"ok": true, "cmd": "stop", "stopping": true, ...}

A request that cannot be served gets ``{"ok": false, "error": "..."}`` naming what is
wrong and what was expected; the run goes on.  ``set`` is applied by the processing
thread between batches: the reply gives the frame index it took effect at
(``applied``), or ``"pending": true`` when processing has not reached a batch
boundary within :data:`SET_WAIT_S` (``status`` lists the pending changes, the
summary's ``param_changes`` the frame each one took effect at).  ``stop`` ends
acquisition as Ctrl-C does: sources are told to stop, every frame they acquired is
persisted and processed, the result files are completed.

A non-loopback (``tcp://`` reachable from other hosts) control endpoint needs CURVE
keys (``--keys DIR``, ``[security] keys``), like the ingest and the publisher.

Client side (what ``livesr ctl`` and the napari widget use)::

    with ControlClient("ipc:///tmp/livesr-ctl.ipc", timeout_s=5) as c:
        c.request({"cmd": "set", "params": {"window": 30}})
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import typing
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import zmq

from livesr.stream._endpoints import parse_endpoint, require_secure
from livesr.stream._keys import (
    CurveClientKeys,
    CurveServerKeys,
    apply_client_keys,
    secure_server,
)
from livesr.stream._link_base import TransportError

__all__ = [
    "COMMANDS",
    "MAX_REQUEST_BYTES",
    "SET_WAIT_S",
    "ControlClient",
    "ControlError",
    "ControlServer",
    "ControlUnreachable",
    "coerce_param",
    "json_safe",
    "parse_assignments",
    "parse_request",
]

logger = logging.getLogger(__name__)

#: The requests a control server answers.
COMMANDS: tuple[str, ...] = ("set", "status", "stop")
#: Longest request accepted, bytes (a longer one is dropped by ZeroMQ).
MAX_REQUEST_BYTES = 64 * 1024
#: Longest a ``set`` reply waits for the change to take effect, s.
SET_WAIT_S = 2.0
_POLL_MS = 100


class ControlError(ValueError):
    """A control request that cannot be served (the reply's ``error``)."""


class ControlUnreachable(TransportError):
    """No reply from the control endpoint within the timeout."""


class ControlHandler(Protocol):
    """What a :class:`ControlServer` serves (the pipeline implements it)."""

    def control_set(self, params: dict[str, Any]) -> dict[str, Any]: ...

    def control_status(self) -> dict[str, Any]: ...

    def control_stop(self, reason: str) -> dict[str, Any]: ...


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as None, numpy scalars as Python, tuples as lists."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    item = getattr(obj, "item", None)
    if item is not None and getattr(obj, "shape", None) == ():
        obj = item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def parse_request(raw: bytes) -> dict[str, Any]:
    """Decode and validate one request.

    Parameters
    ----------
    raw : bytes
        UTF-8 JSON object ``{"cmd": "set"|"status"|"stop", ...}``; ``set`` carries
        ``"params"``: a non-empty object of parameter names to values.

    Raises
    ------
    ControlError
        Naming what is wrong and what was expected.
    """
    try:
        msg = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ControlError(
            f"request is not UTF-8 JSON ({exc}); expected an object like "
            '{"cmd": "status"}'
        ) from None
    if not isinstance(msg, dict):
        raise ControlError(
            f"request is a JSON {type(msg).__name__}; expected an object like "
            '{"cmd": "status"}'
        )
    cmd = msg.get("cmd")
    if cmd not in COMMANDS:
        raise ControlError(
            f"unknown cmd {cmd!r}; expected one of {', '.join(COMMANDS)}"
        )
    allowed = {"cmd", "params"} if cmd == "set" else {"cmd", "reason"}
    extra = sorted(set(msg) - allowed)
    if extra:
        raise ControlError(
            f"{cmd}: unexpected field(s) {', '.join(extra)}; expected only "
            f"{', '.join(sorted(allowed))}"
        )
    if cmd == "set":
        params = msg.get("params")
        if not isinstance(params, dict) or not params:
            raise ControlError(
                f"set: params={params!r}; expected a non-empty object of parameter "
                'names to values, e.g. {"window": 30}'
            )
    if "reason" in msg and not (isinstance(msg["reason"], str) and msg["reason"].strip()):
        raise ControlError(f"stop: reason={msg['reason']!r}; expected a non-empty string")
    return msg


def _param_types() -> dict[str, type]:
    from livesr.stream._config import EsrrfConfig

    hints = typing.get_type_hints(EsrrfConfig)
    return {name: hints[name] for name in hints}


def coerce_param(name: str, text: str) -> Any:
    """The value of ``name=text`` (command line) as the parameter's type.

    ``int`` and ``float`` parameters take numbers (``window=30``, ``radius=2``),
    ``bool`` ones ``true``/``false``, ``str`` ones the text.  A name that is not an
    eSRRF parameter is parsed as a number when it looks like one, else kept as text
    (the server names the parameters it accepts).

    Raises
    ------
    ControlError
        The text is not a value of the parameter's type.
    """
    kind = _param_types().get(name)
    low = text.strip().lower()
    try:
        if kind is bool:
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
    except ValueError:
        names = {bool: "true or false", int: "an integer", float: "a number"}
        expected = names.get(kind, "a value") if kind is not None else "a value"
        raise ControlError(f"{name}={text!r}: expected {expected}") from None
    for conv in (int, float):  # unknown name: the server says what it accepts
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["window=30", "radius=2"]`` -> ``{"window": 30, "radius": 2.0}`` (each value
    as its parameter's type, :func:`coerce_param`).

    Raises
    ------
    ControlError
        An item that is not ``NAME=VALUE``, a value not of its parameter's type, or
        no item at all.
    """
    if not items:
        raise ControlError("set needs at least one NAME=VALUE, e.g. set window=30")
    params: dict[str, Any] = {}
    for item in items:
        name, eq, text = item.partition("=")
        if not eq or not name.strip() or not text.strip():
            raise ControlError(f"{item!r} is not NAME=VALUE (e.g. window=30)")
        params[name.strip()] = coerce_param(name.strip(), text.strip())
    return params


class ControlServer:
    """REP socket serving :data:`COMMANDS` for ``handler`` on a thread of its own.

    Parameters
    ----------
    endpoint : str
        Where to bind (``ipc://``, ``tcp://``, ``inproc://``).  A non-loopback
        endpoint needs ``curve``.
    handler : ControlHandler
        Serves the requests (``control_set``, ``control_status``, ``control_stop``);
        a ``ValueError`` it raises becomes the error reply.
    curve : CurveServerKeys, optional
        CURVE server keys; a ZAP authenticator accepting the allow-listed clients
        is started on the context unless one runs there already.
    context : zmq.Context, optional
        Shared context (required for ``inproc://``); default a private one.

    Raises
    ------
    EndpointError
        A malformed endpoint, or a non-loopback one without ``curve`` (naming
        ``--keys``).
    """

    def __init__(
        self,
        endpoint: str,
        handler: ControlHandler,
        *,
        curve: CurveServerKeys | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        ep = parse_endpoint(endpoint, for_bind=True)
        require_secure(ep, curve=curve is not None, role="bind the control channel to")
        self.endpoint = endpoint
        self._handler = handler
        self._curve = curve
        self._ctx = context
        self._own_ctx = context is None
        self._auth: Any = None
        self._sock: zmq.Socket[Any] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: requests served, and those answered with an error
        self.requests = 0
        self.refused = 0
        #: every request that changed something: {t, cmd, params/reason, reply}
        self.log: list[dict[str, Any]] = []

    def start(self) -> ControlServer:
        """Bind and start serving; ``endpoint`` is then the bound address.

        Raises
        ------
        TransportError
            The endpoint cannot be bound (taken, no such folder...).
        """
        if self._ctx is None:
            self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        try:
            if self._curve is not None:
                self._auth = secure_server(self._ctx, sock, self._curve)
            sock.bind(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            self._release()
            raise TransportError(
                f"cannot bind the control channel to {self.endpoint!r}: {exc}"
            ) from exc
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._serve, name="livesr-control", daemon=True
        )
        self._thread.start()
        logger.info("control channel on %s (livesr ctl %s status)", self.endpoint, self.endpoint)
        return self

    def _serve(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            while not self._stop.is_set():
                if not sock.poll(_POLL_MS, zmq.POLLIN):
                    continue
                parts = sock.recv_multipart()
                reply = self._answer(parts)
                try:
                    sock.send(json.dumps(json_safe(reply)).encode("utf-8"))
                except zmq.ZMQError as exc:  # pragma: no cover - peer gone mid-reply
                    logger.warning("control reply not sent: %s", exc)
        except zmq.ZMQError as exc:
            if not self._stop.is_set():
                logger.error("control channel stopped: %s", exc)
        finally:
            sock.close(linger=0)

    def _answer(self, parts: list[bytes]) -> dict[str, Any]:
        self.requests += 1
        cmd = None
        try:
            if len(parts) != 1:
                raise ControlError(
                    f"request has {len(parts)} parts; expected one JSON message"
                )
            msg = parse_request(parts[0])
            cmd = msg["cmd"]
            if cmd == "set":
                body = self._handler.control_set(dict(msg["params"]))
            elif cmd == "status":
                body = self._handler.control_status()
            else:
                body = self._handler.control_stop(
                    msg.get("reason") or "stopped by livesr ctl"
                )
        except ValueError as exc:  # ControlError, a refused parameter value
            self.refused += 1
            logger.warning("control request refused: %s", exc)
            return {"ok": False, "cmd": cmd, "error": str(exc)}
        except Exception as exc:  # pragma: no cover - a handler bug: say so, go on
            self.refused += 1
            logger.exception("control request failed")
            return {"ok": False, "cmd": cmd, "error": f"{type(exc).__name__}: {exc}"}
        reply = {"ok": True, "cmd": cmd, **body}
        if cmd != "status":
            self.log.append({"t": time.time(), **json_safe(reply)})
        return reply

    def report(self) -> dict[str, Any]:
        """``summary.json`` ``control``: endpoint, counts, what was set or stopped."""
        return {
            "endpoint": self.endpoint,
            "requests": self.requests,
            "refused": self.refused,
            "changes": list(self.log),
        }

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving (the thread ends within one poll), unbind, release."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # pragma: no cover - a stuck handler
                logger.error("control thread did not end within %.0f s", timeout)
            self._thread = None
        elif self._sock is not None:
            self._sock.close(linger=0)
        self._sock = None
        self._release()

    def _release(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_ctx and self._ctx is not None:
            self._ctx.term()
            self._ctx = None


class ControlClient:
    """REQ client of a :class:`ControlServer`: one request, one reply, a timeout.

    Parameters
    ----------
    endpoint : str
        The control endpoint (``summary.json`` ``control_endpoint``, the run's log).
    curve : CurveClientKeys, optional
        Client CURVE keys (required for a non-loopback endpoint).
    timeout_s : float
        Longest wait for a reply, s (> 0).
    context : zmq.Context, optional
        Shared context (required for ``inproc://``); default a private one.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        curve: CurveClientKeys | None = None,
        timeout_s: float = 5.0,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        require_secure(
            parse_endpoint(endpoint), curve=curve is not None, role="connect to"
        )
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise ValueError(f"timeout_s={timeout_s!r}; expected a number > 0 (s)")
        self.endpoint = endpoint
        self.timeout_s = float(timeout_s)
        self._curve = curve
        self._ctx = context
        self._own_ctx = context is None

    def request(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``msg`` (JSON-able), return the decoded reply.

        Raises
        ------
        ControlUnreachable
            No reply within ``timeout_s`` (nobody bound there, a run that ended, keys
            the server does not accept).
        """
        if self._ctx is None:
            self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            if self._curve is not None:
                apply_client_keys(sock, self._curve)
            sock.connect(self.endpoint)
            sock.send(json.dumps(dict(msg)).encode("utf-8"))
            if not sock.poll(int(self.timeout_s * 1000), zmq.POLLIN):
                raise ControlUnreachable(
                    f"no reply from the control channel {self.endpoint!r} within "
                    f"{self.timeout_s:g} s; is a run serving it (its summary.json "
                    "control_endpoint, or the log line 'control channel on ...')?"
                )
            raw = sock.recv()
        finally:
            sock.close(linger=0)
        try:
            reply = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ControlUnreachable(
                f"{self.endpoint!r} answered something that is not JSON ({exc}); is it "
                "a livesr control channel?"
            ) from None
        if not isinstance(reply, dict):
            raise ControlUnreachable(f"{self.endpoint!r} answered {reply!r}; expected an object")
        return reply

    def close(self) -> None:
        """Release the private context."""
        if self._own_ctx and self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_applied(
    changes: list[dict[str, Any]],
    start: int,
    params: Mapping[str, Any],
    timeout_s: float,
    *,
    alive: Callable[[], bool] = lambda: True,
) -> dict[str, Any] | None:
    """The record ``{frame_index, changes}`` of ``params`` appended to ``changes``
    after index ``start`` within ``timeout_s`` (None: not applied yet)."""
    deadline = time.monotonic() + timeout_s
    want = dict(params)
    while True:
        for rec in changes[start:]:
            if rec.get("changes") == want:
                return rec
        if time.monotonic() >= deadline or not alive():
            return None
        time.sleep(0.01)
