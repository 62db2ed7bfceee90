"""The codec's fast frame-header path and the typed control readers.

``FrameHeaderEncoder`` must produce exactly the bytes of ``encode_frame_header`` (the
source link sends thousands of headers per second through it), and both must refuse a
header over ``MAX_HEADER_BYTES`` with a message that says so.  The control readers
return the fields of one kind typed, or a ``WireError`` naming the bad field.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesr.stream._wire import (
    FRAME_DTYPES,
    MAX_CREDIT,
    MAX_HEADER_BYTES,
    SEQ_MAX,
    FrameHeader,
    FrameHeaderEncoder,
    WireError,
    decode_control,
    decode_frame,
    encode_control,
    encode_frame,
    encode_frame_header,
    field_int,
)
from livesr.stream._wire_control import (
    Credit,
    End,
    Gap,
    Hello,
    Stop,
    read_credit,
    read_end,
    read_end_ack,
    read_gap,
    read_hello,
    read_stop,
)

_meta = st.dictionaries(
    st.text(max_size=12),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=16),
        st.lists(st.integers(0, 9), max_size=3),
    ),
    max_size=5,
)


def _encoder(h: FrameHeader) -> FrameHeaderEncoder:
    return FrameHeaderEncoder(
        stream=h.stream, shape=h.shape, dtype=h.dtype, pixel_size_um=h.pixel_size_um
    )


@settings(max_examples=300, deadline=None)
@given(
    seq=st.integers(0, SEQ_MAX),
    stream=st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True),
    rows=st.integers(1, 65536),
    cols=st.integers(1, 65536),
    dtype=st.sampled_from(FRAME_DTYPES),
    px=st.floats(1e-9, 1e9),
    t_acq=st.floats(-1e300, 1e300),
    t_send=st.floats(-1e300, 1e300),
    meta=_meta,
)
def test_fast_header_bytes_equal_encode_frame_header(
    seq, stream, rows, cols, dtype, px, t_acq, t_send, meta
):
    h = FrameHeader(
        stream=stream,
        seq=seq,
        shape=(rows, cols),
        dtype=dtype,
        pixel_size_um=px,
        t_acq=t_acq,
        t_send=t_send,
        meta=meta,
    )
    try:
        expected = encode_frame_header(h)
    except WireError:
        return  # too large: covered below
    fast = FrameHeaderEncoder.finish(_encoder(h).prepare(seq, t_acq, meta), t_send)
    assert fast == expected


def test_fast_header_round_trips_through_decode_frame():
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    enc = FrameHeaderEncoder(stream="cam0", shape=(3, 4), dtype="uint16", pixel_size_um=0.1)
    raw = enc.finish(enc.prepare(41, 1700000000.25, {"Exposure": 10.0}), 1700000000.5)
    header, got = decode_frame([raw, frame.tobytes()])
    assert header == FrameHeader(
        stream="cam0",
        seq=41,
        shape=(3, 4),
        dtype="uint16",
        pixel_size_um=0.1,
        t_acq=1700000000.25,
        t_send=1700000000.5,
        meta={"Exposure": 10.0},
    )
    np.testing.assert_array_equal(got, frame)
    # and encode_frame sends those very header bytes
    assert encode_frame(header, frame)[0] == raw


def test_oversized_header_is_refused_by_both_encoders():
    meta = {"big": "x" * MAX_HEADER_BYTES}
    h = FrameHeader(
        stream="cam0", seq=1, shape=(4, 4), dtype="uint16", pixel_size_um=0.1,
        t_acq=1.0, meta=meta,
    )
    with pytest.raises(WireError, match=rf"at most {MAX_HEADER_BYTES} allowed"):
        encode_frame_header(h)
    with pytest.raises(WireError, match=rf"at most {MAX_HEADER_BYTES} allowed"):
        encode_frame(h, np.zeros((4, 4), np.uint16))
    with pytest.raises(WireError, match=r"at most 4096 allowed \(metadata too large"):
        _encoder(h).prepare(1, 1.0, meta)


def test_fast_header_size_check_leaves_room_for_any_t_send():
    """prepare() refuses a header that could exceed the limit once t_send is in, so
    finish() (on the I/O thread) never produces one over MAX_HEADER_BYTES."""
    enc = FrameHeaderEncoder(stream="c", shape=(1, 1), dtype="uint8", pixel_size_um=1.0)
    fixed = len(enc.finish(enc.prepare(0, 0.0, {"k": ""}), 0.0))
    room = MAX_HEADER_BYTES - fixed  # characters meta may still add (t_send "0.0")
    accepted = rejected = 0
    for pad in range(room - 100, room + 1):
        try:
            prepared = enc.prepare(SEQ_MAX, -1.7976931348623157e308, {"k": "x" * pad})
        except WireError:
            rejected += 1
            continue
        accepted += 1
        worst = enc.finish(prepared, -1.7976931348623157e308)
        assert len(worst) <= MAX_HEADER_BYTES
    assert accepted > 0 and rejected > 0


@pytest.mark.parametrize(
    ("seq", "t_acq", "meta", "reason"),
    [
        (-1, 1.0, None, "seq -1 outside"),
        (SEQ_MAX + 1, 1.0, None, "outside"),
        (1, math.nan, None, "t_acq must be a finite float"),
        (1, math.inf, None, "t_acq must be a finite float"),
        (1, 1, None, "t_acq must be a finite float"),  # an int, not a float
        (1, 1.0, {"x": math.nan}, "frame meta of seq 1 is not JSON"),
        (1, 1.0, {"x": object()}, "frame meta of seq 1 is not JSON"),
        (1, 1.0, [("x", 1)], "frame meta must be a mapping"),
    ],
)
def test_fast_header_rejects_bad_fields(seq, t_acq, meta, reason):
    enc = FrameHeaderEncoder(stream="cam0", shape=(2, 2), dtype="uint16", pixel_size_um=0.1)
    with pytest.raises(WireError, match=reason):
        enc.prepare(seq, t_acq, meta)


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"stream": "bad id"}, "'stream'"),
        ({"shape": (0, 4)}, "shape"),
        ({"shape": (4,)}, "shape"),
        ({"dtype": "int8"}, "dtype"),
        ({"pixel_size_um": 0.0}, "pixel_size_um"),
        ({"pixel_size_um": math.nan}, "pixel_size_um"),
    ],
)
def test_fast_header_encoder_checks_the_stream_fields(kw, reason):
    args = {"stream": "cam0", "shape": (2, 2), "dtype": "uint16", "pixel_size_um": 0.1}
    args.update(kw)
    with pytest.raises(WireError, match=reason):
        FrameHeaderEncoder(**args)


def test_field_int_names_field_and_range():
    assert field_int({"n": 3}, "n", 0, 5) == 3
    for bad in (-1, 6, True, 2.0, None, "3"):
        with pytest.raises(WireError, match=r"control field 'n'=.* integer in \[0, 5\]"):
            field_int({"n": bad}, "n", 0, 5)


# ------------------------------------------------------------------ control readers
def _obj(kind: str, **fields):
    return decode_control(encode_control(kind, **fields))


_HELLO = dict(stream="cam0", session="s1", n=2, first=5, shape=[4, 6], dtype="uint16")


def test_read_hello_round_trip_and_rejections():
    h = read_hello(_obj("hello", **_HELLO))
    assert h == Hello("cam0", "s1", 2, 5, (4, 6), "uint16")
    assert h.frame_bytes == 4 * 6 * 2
    for change, reason in [
        ({"session": ""}, "hello: 'session'"),
        ({"session": "x" * 65}, "hello: 'session'"),
        ({"shape": [0, 4]}, "hello: 'shape'"),
        ({"shape": [4, 4, 4]}, "hello: 'shape'"),
        ({"shape": [4, True]}, "hello: 'shape'"),
        ({"dtype": "object"}, "hello: 'dtype'"),
    ]:
        with pytest.raises(WireError, match=reason):
            read_hello(_obj("hello", **{**_HELLO, **change}))
    for missing in ("stream", "n", "first"):
        fields = {k: v for k, v in _HELLO.items() if k != missing}
        with pytest.raises(WireError, match=f"'{missing}'"):
            read_hello(_obj("hello", **fields))


def test_read_credit_for_ready_ack_and_credit():
    assert read_credit(_obj("ack", stream="cam0", upto=-1, credit=8)) == Credit(
        "ack", "cam0", -1, 8, None, None
    )
    ready = read_credit(_obj("ready", stream="cam0", session="s", n=0, upto=9, credit=1))
    assert ready == Credit("ready", "cam0", 9, 1, "s", 0)
    with pytest.raises(WireError, match=r"'credit'=0 must be an integer in \[1, "):
        read_credit(_obj("ack", stream="cam0", upto=3, credit=0))
    with pytest.raises(WireError, match="'credit'"):
        read_credit(_obj("ack", stream="cam0", upto=3, credit=MAX_CREDIT + 1))
    with pytest.raises(WireError, match="'upto'"):
        read_credit(_obj("credit", stream="cam0", credit=3))
    with pytest.raises(WireError, match="expected ready/ack/credit"):
        read_credit(_obj("gap", stream="cam0", first=1, last=1))


def test_read_gap_end_stop_and_end_ack():
    assert read_gap(_obj("gap", stream="cam0", first=3, last=7)) == Gap("cam0", 3, 7)
    with pytest.raises(WireError, match=r"'last'=2 must be an integer in \[5, "):
        read_gap(_obj("gap", stream="cam0", first=5, last=2))
    end = read_end(_obj("end", stream="cam0", upto=9, n=10, gap_frames=2))
    assert end == End("cam0", 9, 10, 2)
    with pytest.raises(WireError, match=r"end: n=9 must be upto \+ 1 = 4"):
        read_end(_obj("end", stream="cam0", upto=3, n=9, gap_frames=0))
    with pytest.raises(WireError, match="'gap_frames'"):
        read_end(_obj("end", stream="cam0", upto=3, n=4))
    stop = read_stop(_obj("stop", stream="cam0", session="s", reason="disk full"))
    assert stop == Stop("cam0", "s", "disk full", False)
    assert read_stop(
        _obj("stop", stream="cam0", session="s", reason="r", final=True)
    ).final
    summary = {"frames_persisted": 3}
    assert read_end_ack(_obj("end_ack", stream="cam0", upto=2, summary=summary)) == summary
    assert read_end_ack(_obj("end_ack", stream="cam0", upto=2)) is None
