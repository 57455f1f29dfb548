"""The structural check at the store's door (medimg.store.validate) on hand-made data sets: what a
well-formed data set is in each transfer syntax, and every way of breaking one that parsers of the
field have been hurt by (PITFALLS.md: nested sequences, 0xFFFFFFFF lengths, decompression bombs)."""

from __future__ import annotations

import contextlib
import io

import pydicom
import pytest
from crafted import (
    DEFLATED,
    ENCODINGS,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    JPEG_BASELINE,
    UNDEFINED,
    Enc,
    deflate,
    part10,
    sample,
    uids,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medimg.store import StructureError, check_dataset_structure
from medimg.store.part10 import inspect_dataset
from medimg.store.validate import inflate_bounded

EXPLICIT = ENCODINGS[EXPLICIT_LE]
IMPLICIT = ENCODINGS[IMPLICIT_LE]
BIG = ENCODINGS[EXPLICIT_BE]
ALL = list(ENCODINGS.items())


def _check(data: bytes, ts: str = EXPLICIT_LE, **kw: int) -> None:
    check_dataset_structure(data, ts, **kw)


def _rejected(data: bytes, ts: str = EXPLICIT_LE, match: str | None = None, **kw: int) -> str:
    with pytest.raises(StructureError, match=match) as info:
        check_dataset_structure(data, ts, **kw)
    return str(info.value)


# ------------------------------------------------------------------------------ well-formed
@pytest.mark.parametrize(("ts", "enc"), ALL, ids=["implicit", "explicit", "big-endian"])
def test_sample_is_well_formed_and_pydicom_agrees(ts: str, enc: Enc) -> None:
    data, _ = sample(enc, 7)
    header = inspect_dataset(data, ts)
    assert header.sop_instance_uid == uids(7)["sop"]
    assert header.values["Rows"] == 4 and header.values["Columns"] == 8
    assert header.values["InstanceNumber"] == 7
    # the same bytes as pydicom reads them: every element, both sequences, their items
    ds = pydicom.dcmread(io.BytesIO(part10(data, ts, uids(7)["sop"])))
    assert ds.SOPInstanceUID == uids(7)["sop"]
    if ts != IMPLICIT_LE:  # implicit VR: pydicom needs its dictionary for these private-less tags too
        assert len(ds.ReferencedImageSequence) == 1
        assert [i.CodeValue for i in ds.AnatomicRegionSequence] == ["CODE", "CODE"]
    assert ds.Rows == 4 and ds.Columns == 8
    assert len(ds.PixelData) == 64


def test_deflated_sample_is_well_formed() -> None:
    data, _ = sample(EXPLICIT, 3)
    header = inspect_dataset(deflate(data), DEFLATED)
    assert header.sop_instance_uid == uids(3)["sop"]
    ds = pydicom.dcmread(io.BytesIO(part10(deflate(data), DEFLATED, uids(3)["sop"])))
    assert ds.SOPInstanceUID == uids(3)["sop"] and ds.PatientID == "PID-1"


def test_collect_returns_raw_top_level_values_only() -> None:
    data, _ = sample(EXPLICIT, 2)
    # (0008,0100) Code Value occurs only inside sequence items: not a top-level value
    found = check_dataset_structure(data, EXPLICIT_LE, collect=frozenset({0x00100020, 0x00080100}))
    assert found == {0x00100020: (b"LO", b"PID-1 ")}
    found = check_dataset_structure(sample(IMPLICIT, 2)[0], IMPLICIT_LE, collect=frozenset({0x00100020}))
    assert found == {0x00100020: (None, b"PID-1 ")}


def test_empty_data_set_is_well_formed() -> None:
    _check(b"")


# ------------------------------------------------------------------------------ truncation
@pytest.mark.parametrize(("ts", "enc"), ALL, ids=["implicit", "explicit", "big-endian"])
def test_truncated_anywhere_but_between_elements_is_refused(ts: str, enc: Enc) -> None:
    """Cut after every byte: a cut between two top-level elements leaves a shorter well-formed data
    set; every other cut (inside a header, a value, a sequence, an item) must be refused."""
    data, boundaries = sample(enc, 1)
    accepted = []
    for cut in range(len(data) + 1):
        try:
            check_dataset_structure(data[:cut], ts)
        except StructureError:
            continue
        accepted.append(cut)
    assert accepted == boundaries


def test_truncated_deflate_stream_is_refused() -> None:
    packed = deflate(sample(EXPLICIT, 1)[0])
    for cut in range(0, len(packed) - 1, 7):
        _rejected(packed[:cut], DEFLATED)


# ------------------------------------------------------------------------------ lengths
@pytest.mark.parametrize(("ts", "enc"), ALL, ids=["implicit", "explicit", "big-endian"])
def test_length_past_the_end_is_refused(ts: str, enc: Enc) -> None:
    head = enc.text(0x00080018, "UI", "1.2.3.4")
    _rejected(head + enc.element(0x00100020, "LO", b"PID-1 ", length=200), ts, "declares 200 bytes")
    _rejected(head + enc.element(0x7FE00010, "OW", b"\0" * 16, length=0xFFFFFFF0), ts, "declares")
    # an item whose length runs past its sequence
    item = enc.tag(0xFFFEE000) + enc.u32(64) + enc.text(0x00080100, "SH", "AB")
    sq = enc.element(0x00081140, "SQ", item) if ts != IMPLICIT_LE else \
        enc.element(0x00081140, "SQ", item, UNDEFINED)
    _rejected(head + sq, ts)


def test_undefined_length_on_a_non_sequence_is_refused() -> None:
    ut = EXPLICIT.element(0x00081150, "UT", b"text" * 4, UNDEFINED)
    _rejected(ut, match="undefined length but is not a sequence")
    # implicit VR: an undefined length means a sequence, so what follows must be items
    _rejected(IMPLICIT.element(0x00100020, "LO", b"PID-1 " * 4, UNDEFINED), IMPLICIT_LE, "not an item")


def test_ffffffff_lengths_are_refused_where_they_cannot_be_undefined() -> None:
    # 0xFFFFFFFF on native (not encapsulated) pixel data: what follows is not a fragment
    native = EXPLICIT.element(0x7FE00010, "OW", b"\x01\x02" * 32, UNDEFINED)
    _rejected(native, match="malformed fragment")
    # a fragment of undefined length
    frag = EXPLICIT.tag(0xFFFEE000) + EXPLICIT.u32(UNDEFINED) + b"\0" * 8
    _rejected(EXPLICIT.element(0x7FE00010, "OB", frag, UNDEFINED), match="malformed fragment")
    # an element header claiming 4 GiB at the very end
    _rejected(EXPLICIT.element(0x00091010, "UN", b"", 0xFFFFFFFE))


# ------------------------------------------------------------------------------ nesting
@pytest.mark.parametrize("undefined", [True, False], ids=["undefined", "defined"])
def test_nesting_is_bounded(undefined: bool) -> None:
    for enc, ts in ((EXPLICIT, EXPLICIT_LE), (BIG, EXPLICIT_BE)):
        _check(enc.nested(32, undefined), ts, max_depth=32)
        _rejected(enc.nested(33, undefined), ts, "nest deeper than 32", max_depth=32)
        _rejected(enc.nested(100, undefined), ts, "nest deeper than 32")
    _check(IMPLICIT.nested(32, True), IMPLICIT_LE)
    _rejected(IMPLICIT.nested(100, True), IMPLICIT_LE, "nest deeper")


def test_nesting_beyond_the_interpreter_stack_is_a_structure_error() -> None:
    _rejected(EXPLICIT.nested(5000), max_depth=1_000_000)


# ------------------------------------------------------------------------------ delimiters
def test_missing_delimiters_are_refused() -> None:
    e = EXPLICIT
    content = e.text(0x00080100, "SH", "AB")
    undefined_item = e.tag(0xFFFEE000) + e.u32(UNDEFINED) + content
    seq_delim = e.tag(0xFFFEE0DD) + e.u32(0)
    # sequence of undefined length that simply stops (items of defined length)
    _rejected(e.element(0x00081140, "SQ", e.item(content), UNDEFINED), match="has no delimiter")
    # undefined-length item without its item delimiter, then the sequence delimiter
    _rejected(e.element(0x00081140, "SQ", undefined_item + seq_delim, UNDEFINED))
    # undefined-length item without a delimiter, at the end of the data set
    _rejected(e.element(0x00081140, "SQ", undefined_item, UNDEFINED))
    # an item delimiter where no item is open
    _rejected(content + e.tag(0xFFFEE00D) + e.u32(0), match="item delimiter outside an item")
    # a sequence delimiter at the top level
    _rejected(content + seq_delim, match="unexpected")
    # with the delimiters it is fine
    _check(e.sequence(0x00081140, [e.item(content, undefined=True)], undefined=True))


@pytest.mark.parametrize("enc", [EXPLICIT, IMPLICIT], ids=["explicit", "implicit"])
def test_encapsulated_pixel_data_needs_its_sequence_delimiter(enc: Enc) -> None:
    ts = JPEG_BASELINE if enc.explicit else IMPLICIT_LE
    head = enc.text(0x00080018, "UI", "1.2.3.4")
    frames = [b"\xff\xd8" + b"\x11" * 30 + b"\xff\xd9", b"\xff\xd8" + b"\x22" * 14 + b"\xff\xd9"]
    _check(head + enc.encapsulated(frames), ts)
    _rejected(head + enc.encapsulated(frames, delimiter=False), ts, "no sequence delimiter")
    # a fragment longer than what is left
    bad = enc.encapsulated(frames)[:-12]
    _rejected(head + bad, ts)


# ------------------------------------------------------------------------------ deflate
def test_deflate_bomb_is_refused_without_inflating_it() -> None:
    bomb = deflate(b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 128 << 10
    msg = _rejected(bomb, DEFLATED, "inflates to more than", max_inflated=1 << 20)
    assert str(1 << 20) in msg
    with pytest.raises(StructureError, match="inflates to more than"):
        inflate_bounded(bomb, 1 << 20)


def test_deflated_garbage_is_refused() -> None:
    _rejected(b"\xff" * 64, DEFLATED, "not a deflate stream")


# ------------------------------------------------------------------------------ other corruption
def test_invalid_vr_is_refused() -> None:
    bad = EXPLICIT.tag(0x00100020) + b"l0" + b"\x02\x00AB"
    _rejected(bad, match="no valid VR")


def test_header_cut_short() -> None:
    _rejected(b"\x08\x00\x18\x00UI", match="cut short")
    long_vr = EXPLICIT.tag(0x7FE00010) + b"OW\0\0"  # a long-VR header needs 12 bytes
    _rejected(long_vr, match="cut short")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), ts=st.sampled_from([IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE, DEFLATED]))
def test_arbitrary_bytes_never_raise_anything_but_structure_error(data: bytes, ts: str) -> None:
    with contextlib.suppress(StructureError):
        check_dataset_structure(data, ts, max_inflated=1 << 16)


@settings(max_examples=200, deadline=None)
@given(pos=st.integers(0, 10_000), value=st.integers(0, 255))
def test_one_changed_byte_never_raises_anything_but_structure_error(pos: int, value: int) -> None:
    data = bytearray(sample(EXPLICIT, 1, pixel_bytes=16)[0])
    data[pos % len(data)] = value
    with contextlib.suppress(StructureError):
        check_dataset_structure(bytes(data), EXPLICIT_LE)
