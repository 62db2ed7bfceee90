"""The wire format: round trips, and every malformed message rejected with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesr.stream._wire import (
    FRAME_DTYPES,
    MAX_HEADER_BYTES,
    FrameHeader,
    WireError,
    decode_control,
    decode_frame,
    encode_control,
    encode_frame,
)


def _header(**over):
    base = dict(
        stream="cam0",
        seq=7,
        shape=(4, 5),
        dtype="uint16",
        pixel_size_um=0.1,
        t_acq=1.5,
        t_send=1.6,
        meta={"Exposure": 10.0},
    )
    base.update(over)
    return FrameHeader(**base)


def _raw(parts):
    return [bytes(p) if not isinstance(p, np.ndarray) else p.tobytes() for p in parts]


def test_round_trip_is_exact_and_zero_copy():
    frame = np.arange(20, dtype=np.uint16).reshape(4, 5)
    parts = encode_frame(_header(), frame)
    assert parts[1] is frame  # the payload is the array itself (zero-copy send)
    header, out = decode_frame(_raw(parts))
    assert header == _header()
    np.testing.assert_array_equal(out, frame)
    assert out.base is not None  # a view on the received buffer


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: h.update(v=2), "protocol version"),
        (lambda h: h.update(kind="bogus"), "expected kind 'frame'"),
        (lambda h: h.update(seq=-1), "'seq'"),
        (lambda h: h.update(seq=True), "'seq'"),
        (lambda h: h.update(seq=1.5), "'seq'"),
        (lambda h: h.update(shape=[4]), "'shape'"),
        (lambda h: h.update(shape=[0, 5]), "shape[0]"),
        (lambda h: h.update(shape=[4, 10**6]), "shape[1]"),
        (lambda h: h.update(dtype="object"), "'dtype'"),
        (lambda h: h.update(dtype="<U4"), "'dtype'"),
        (lambda h: h.update(pixel_size_um=0), "'pixel_size_um'"),
        (lambda h: h.update(pixel_size_um="0.1"), "'pixel_size_um'"),
        (lambda h: h.update(stream="a b"), "'stream'"),
        (lambda h: h.update(stream="x" * 65), "'stream'"),
        (lambda h: h.update(meta=[1]), "'meta'"),
        (lambda h: h.pop("t_acq"), "'t_acq'"),
        (lambda h: h.update(shape=[5, 4, 1]), "'shape'"),
    ],
)
def test_malformed_headers_are_rejected_with_reason(mutate, reason):
    head = _header().to_json()
    mutate(head)
    payload = np.zeros((4, 5), np.uint16).tobytes()
    with pytest.raises(WireError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        decode_frame([json.dumps(head).encode(), payload])


def test_payload_size_must_match_header():
    parts = _raw(encode_frame(_header(), np.zeros((4, 5), np.uint16)))
    with pytest.raises(WireError, match="payload is 39 bytes"):
        decode_frame([parts[0], parts[1][:-1]])
    with pytest.raises(WireError, match="2 parts"):
        decode_frame(parts[:1])
    with pytest.raises(WireError, match="2 parts"):
        decode_frame([*parts, b""])


def test_oversized_and_non_json_headers_are_rejected():
    with pytest.raises(WireError, match="at most 4096"):
        decode_frame([b"{" + b" " * MAX_HEADER_BYTES + b"}", b""])
    with pytest.raises(WireError, match="not UTF-8 JSON"):
        decode_frame([b"\xff\xfe", b""])
    with pytest.raises(WireError, match="JSON object"):
        decode_frame([b"[1, 2]", b""])
    with pytest.raises(WireError, match="must be finite"):
        head = _header().to_json()
        raw = json.dumps(head).replace('"t_acq": 1.5', '"t_acq": NaN').encode()
        decode_frame([raw, np.zeros((4, 5), np.uint16).tobytes()])


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_metadata_is_rejected(constant):
    """``meta`` with NaN was accepted and later written as bare ``NaN`` to zarr.json."""
    head = _header().to_json()
    head["meta"] = {"Exposure": 10.0, "nested": {"z": [1.0, 2.5]}}
    raw = json.dumps(head).replace("2.5", constant).encode()
    with pytest.raises(WireError, match=f"{constant}.*must be finite"):
        decode_frame([raw, np.zeros((4, 5), np.uint16).tobytes()])
    with pytest.raises(WireError, match="must be finite"):
        decode_control([b'{"v": 1, "kind": "gap", "first": NaN}', b""])


@pytest.mark.parametrize("opener", [b"[", b'{"a":['])
def test_deeply_nested_header_is_rejected_not_raised(opener):
    """2000 nested ``[`` raised RecursionError (and killed the ingest thread)."""
    raw = opener * (4000 // len(opener))  # within MAX_HEADER_BYTES
    with pytest.raises(WireError, match="nested too deeply"):
        decode_frame([raw, b"x"])
    with pytest.raises(WireError, match="nested too deeply"):
        decode_control([raw, b""])


def test_encode_refuses_inconsistent_frames():
    with pytest.raises(WireError, match="does not match header"):
        encode_frame(_header(), np.zeros((5, 4), np.uint16))
    with pytest.raises(WireError, match="C-contiguous"):
        encode_frame(_header(shape=(5, 4)), np.zeros((4, 5), np.uint16).T)


def test_control_messages_round_trip_and_validate():
    parts = encode_control("credit", stream="cam0", credit=16)
    obj = decode_control(parts, "credit")
    assert obj["credit"] == 16 and obj["stream"] == "cam0"
    with pytest.raises(WireError, match="expected control kind 'ack'"):
        decode_control(parts, "ack")
    with pytest.raises(WireError, match="'credit'"):
        decode_control([json.dumps({"v": 1, "kind": "credit", "credit": -3}).encode()])
    with pytest.raises(WireError, match="unknown control kind"):
        encode_control("frame")


_dtypes = st.sampled_from(FRAME_DTYPES)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.integers(1, 16),
    cols=st.integers(1, 16),
    dtype=_dtypes,
    seq=st.integers(0, 2**63 - 1),
    stream=st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True),
    px=st.floats(1e-6, 1e3),
    t=st.floats(0, 2e9),
)
def test_property_valid_frames_round_trip(rows, cols, dtype, seq, stream, px, t):
    frame = np.random.default_rng(seq % 1000).integers(0, 200, (rows, cols)).astype(dtype)
    header = _header(shape=(rows, cols), dtype=dtype, seq=seq, stream=stream,
                     pixel_size_um=px, t_acq=t)
    got_header, got = decode_frame(_raw(encode_frame(header, frame)))
    assert got_header == header
    np.testing.assert_array_equal(got, frame)


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(st.binary(max_size=256), min_size=0, max_size=4))
def test_property_random_bytes_never_crash_the_parser(parts):
    try:
        header, frame = decode_frame(parts)
    except WireError:
        return
    # anything accepted is self-consistent
    assert frame.nbytes == header.nbytes == len(parts[1])


@settings(max_examples=300, deadline=None)
@given(
    head=st.dictionaries(
        st.sampled_from(["v", "kind", "stream", "seq", "shape", "dtype",
                         "pixel_size_um", "t_acq", "meta"]),
        st.one_of(st.none(), st.booleans(), st.integers(-5, 2**64), st.floats(),
                  st.text(max_size=8), st.lists(st.integers(-2, 70000), max_size=3)),
    ),
    payload=st.binary(max_size=64),
)
def test_property_hostile_headers_are_rejected_or_consistent(head, payload):
    try:
        raw = json.dumps(head).encode()
    except ValueError:
        return
    try:
        header, frame = decode_frame([raw, payload])
    except WireError:
        return
    assert frame.nbytes == len(payload) and header.seq >= 0
