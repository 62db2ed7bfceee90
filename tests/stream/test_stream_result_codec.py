"""The results-stream codec (``_wire_result.encode_result`` / ``decode_result``) and the
:class:`Result` hooks rebuild from it."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from livesr.stream import Result, ResultMessage, WireError, decode_result, encode_result


def _header(index: int = 3, shape: tuple[int, int] = (6, 8), m: int = 2) -> dict:
    """A ``kind="sr"`` header as the processing stage and ``Pipeline._publish`` build it."""
    return {
        "v": 1,
        "kind": "sr",
        "stream": "sim",
        "index": index,
        "first_frame": 10 * index,
        "last_frame": 10 * index + 9,
        "first_frame_acquired": 1000.0,
        "shape": list(shape),
        "dtype": "float32",
        "pixel_size_um": 0.05,
        "drift": {"dy": 0.25, "dx": -0.5, "sigma_px": 0.02, "rejected": False},
        "quality": {"metric": "normalized_gradient_energy", "value": np.float64(1.5)},
        "resolution": None,
        "implementation": {"esrrf": "numpy", "drift": "numpy"},
        "params": {"window": 10, "stride": 10, "magnification": m},
        "timestamps": {
            "acquired": 1000.5,
            "received": 1000.51,
            "processed": 1000.6,
            "published": 1000.61,
        },
    }


def test_stream_result_codec_round_trip() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((6, 8), dtype=np.float32)
    head = _header()
    parts = encode_result(head, image)
    assert len(parts) == 2 and isinstance(parts[0], bytes)
    # the header is plain JSON (numpy scalars written as numbers)
    assert json.loads(parts[0])["quality"]["value"] == 1.5
    msg = decode_result([parts[0], memoryview(parts[1]).cast("B")])
    assert isinstance(msg, ResultMessage)
    assert msg.kind == "sr" and msg.index == 3 and msg.magnification == 2
    np.testing.assert_array_equal(msg.image, image)
    assert msg.pixel_size_um == pytest.approx(0.05)
    assert msg.raw_pixel_size_um == pytest.approx(0.1)
    assert (msg.first_frame, msg.last_frame) == (30, 39)
    assert msg.drift == pytest.approx((0.25, -0.5))
    assert msg.drift_sigma_px == pytest.approx(0.02)
    assert msg.quality == pytest.approx(1.5)
    assert msg.geometry == "nanopyx"
    assert dict(msg.timestamps) == head["timestamps"]
    # a non-contiguous image is sent as a contiguous copy with the same pixels
    wide = rng.random((6, 16), dtype=np.float32)
    again = decode_result(encode_result(head, wide[:, ::2]))
    np.testing.assert_array_equal(again.image, wide[:, ::2])


def test_stream_result_codec_result_of_a_message() -> None:
    image = np.ones((6, 8), np.float32)
    head = _header(index=5, m=2)
    r = Result.from_message(decode_result(encode_result(head, image)))
    assert r.index == 5 and r.magnification == 2
    assert r.pixel_size_um == pytest.approx(0.1)  # camera pixel: SR pixel x M
    assert r.sr_pixel_size_um == pytest.approx(0.05)
    assert r.drift_px == pytest.approx((0.25, -0.5))
    assert r.drift_sigma_px == pytest.approx(0.02)
    assert r.frame_range == (50, 59)
    # a livesr header (its "resolution" field, empty here): no estimate published
    assert dict(r.metrics) == {"quality": 1.5, "live_estimates": 1.0}
    assert dict(r.timestamps) == {
        "t_acq_last": 1000.5,
        "t_recv": 1000.51,
        "t_proc": 1000.6,
        "t_publish": 1000.61,
    }
    np.testing.assert_array_equal(r.image, image)
    # the pipeline's in-process path (no bytes) gives the same Result
    same = Result.from_header(head, image)
    for name in ("index", "drift_px", "frame_range", "pixel_size_um", "magnification"):
        assert getattr(same, name) == getattr(r, name)
    assert dict(same.timestamps) == dict(r.timestamps)
    # drift correction off: no displacement, unknown sigma; no quality: no metric
    head.update(drift=None, quality={"metric": "q", "value": None})
    off = Result.from_header(head, image)
    assert off.drift_px == (0.0, 0.0) and math.isnan(off.drift_sigma_px)
    assert dict(off.metrics) == {"live_estimates": 1.0}
    # the estimates published with a window reach the hooks as metrics
    head.update(
        resolution={"method": "decorrelation", "value_px": 1.3, "value_nm": 65.0,
                    "resolved": False, "image_index": 4, "reason": "nyquist-floor"},
        frc={"method": "frc-even-odd", "value_px": 6.2, "value_nm": 310.0,
             "resolved": True, "image_index": 4, "frames": 20},
    )  # fmt: skip
    est = Result.from_header(head, image)
    assert dict(est.metrics) == {
        "live_estimates": 1.0,
        "live_decorr_nm": 65.0,
        "live_decorr_resolved": False,
        "live_frc_nm": 310.0,
        "live_frc_resolved": True,
    }
    # a header from elsewhere, without the estimate fields: none
    del head["resolution"], head["frc"]
    assert dict(Result.from_header(head, image).metrics) == {}


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda h, im: (h, im.astype(np.float64)), "does not match header"),
        (lambda h, im: (h, im[:3]), "does not match header"),
        (lambda h, im: ({**h, "kind": "frame"}, im), "expected 'sr'"),
        (lambda h, im: ({**h, "pixel_size_um": math.nan}, im), "not valid JSON"),
        (lambda h, im: ({**h, "meta": "x" * 70000}, im), "at most 65536"),
    ],
)
def test_stream_result_codec_refuses_what_it_cannot_send(mutate, expect: str) -> None:
    head, image = mutate(_header(), np.zeros((6, 8), np.float32))
    with pytest.raises(WireError, match=re.escape(expect)):
        encode_result(head, image)


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda p: p[:1], "1 part(s); expected 2"),
        (lambda p: [b"\xff", p[1]], "not UTF-8 JSON"),
        (lambda p: [b"[1]", p[1]], "not a JSON object"),
        (lambda p: [p[0], p[1][:-4]], "needs 192"),
        (lambda p: [p[0].replace(b'"index": 3', b'"index": "3"'), p[1]], "index/seq='3'"),
        (
            lambda p: [p[0].replace(b'"pixel_size_um": 0.05', b'"pixel_size_um": 0'), p[1]],
            "pixel_size_um=0",
        ),
        (lambda p: [b" " * 70000, p[1]], "at most 65536"),
    ],
)
def test_stream_result_codec_rejects_malformed(mutate, expect: str) -> None:
    parts = encode_result(_header(), np.zeros((6, 8), np.float32))
    parts = [parts[0], bytes(parts[1])]
    with pytest.raises(WireError, match=re.escape(expect)):
        decode_result(mutate(parts))


def test_stream_result_codec_reads_raw_frames_of_the_ingest_format() -> None:
    from livesr.stream._wire import FrameHeader, encode_frame

    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    header = FrameHeader(
        stream="s", seq=7, shape=(3, 4), dtype="uint16", pixel_size_um=0.1, t_acq=5.0
    )
    msg = decode_result(encode_frame(header, frame))
    assert msg.kind == "raw" and msg.index == 7 and msg.magnification == 1
    assert msg.raw_pixel_size_um == pytest.approx(0.1)
    assert dict(msg.timestamps) == {"acquired": 5.0}
    np.testing.assert_array_equal(msg.image, frame)
