"""Cost of one frame header on the source link: the old hand-built dict + json.dumps
against :class:`livesr.stream._wire.FrameHeaderEncoder` (prepare at queue time, finish
at send time).  Both produce the same bytes (checked here).

Run: ``python bench/frame_header_encode.py [repeats]``; prints microseconds per header
(best of ``repeats`` runs of 20 000 headers), side by side.
"""

from __future__ import annotations

import json
import sys
import time
import timeit

from livesr.stream._wire import FrameHeaderEncoder

STREAM, SHAPE, DTYPE, PX = "cam0", (512, 512), "uint16", 0.1


def old(seq: int, meta: dict | None) -> bytes:
    """What SourceLink._queue + _pump did before (dict at queue, dumps at send)."""
    head = {
        "v": 1,
        "kind": "frame",
        "stream": STREAM,
        "seq": seq,
        "t_acq": time.time(),
        "t_send": 0.0,
        "shape": list(SHAPE),
        "dtype": DTYPE,
        "pixel_size_um": PX,
        "meta": meta or {},
    }
    head["t_send"] = time.time()
    return json.dumps(head, separators=(",", ":"), allow_nan=False).encode()


ENC = FrameHeaderEncoder(stream=STREAM, shape=SHAPE, dtype=DTYPE, pixel_size_um=PX)


def new(seq: int, meta: dict | None) -> bytes:
    prepared = ENC.prepare(seq, time.time(), meta)
    return ENC.finish(prepared, time.time())


def main(repeats: int = 7) -> None:
    n = 20_000
    for label, meta in (("no meta", None), ("meta", {"Exposure": 10.0, "Camera": "Cam"})):
        t = 1700000000.25
        assert ENC.finish(ENC.prepare(7, t, meta), t) == json.dumps(
            {"v": 1, "kind": "frame", "stream": STREAM, "seq": 7, "t_acq": t,
             "t_send": t, "shape": list(SHAPE), "dtype": DTYPE, "pixel_size_um": PX,
             "meta": meta or {}},
            separators=(",", ":"),
        ).encode()
        res = {}
        for name, fn in (("old", old), ("new", new)):
            best = min(timeit.repeat(lambda fn=fn, meta=meta: fn(123456, meta), number=n, repeat=repeats))
            res[name] = best / n * 1e6
        print(
            f"{label:8s}: old {res['old']:.2f} us/header, new {res['new']:.2f} us/header, "
            f"new/old = {res['new'] / res['old']:.2f}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
