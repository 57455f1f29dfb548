"""The multipart/related and media-type parsing that STOW-RS and the DICOMweb client rely on: the whole-body
and the streaming parser agree for any chunking, round-trip what the writer produces, and on arbitrary
bytes either parse or raise MultipartError (never anything else)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medimg.server.multipart import (
    MultipartError,
    close_delimiter,
    iter_parts,
    parse_accept,
    parse_media_type,
    part_header,
    split_parts,
)

BOUNDARY = "medimg-test-7d1f"


def encode(contents: list[bytes], ctype: str = "application/dicom") -> bytes:
    chunks = []
    for i, data in enumerate(contents):
        chunks += [part_header(BOUNDARY, ctype, first=(i == 0)), data]
    return b"".join(chunks) + close_delimiter(BOUNDARY)


def chunked(body: bytes, sizes: list[int]) -> list[bytes]:
    out, pos = [], 0
    for size in sizes:
        out.append(body[pos:pos + size])
        pos += size
    out.append(body[pos:])
    return out


# contents that cannot contain the delimiter (the writer's promise, a random boundary in practice)
contents = st.lists(st.binary(max_size=300).filter(lambda b: BOUNDARY.encode() not in b), min_size=1,
                    max_size=6)


@settings(max_examples=200, deadline=None)
@given(contents, st.lists(st.integers(min_value=1, max_value=97), max_size=40))
def test_round_trip_any_chunking(parts: list[bytes], sizes: list[int]) -> None:
    body = encode(parts)
    whole = split_parts(body, BOUNDARY)
    assert [body[p.start:p.end] for p in whole] == parts
    assert all(p.content_type == "application/dicom" for p in whole)
    streamed = list(iter_parts(chunked(body, sizes), BOUNDARY))
    assert [p.content for p in streamed] == parts
    assert [p.headers for p in streamed] == [p.headers for p in whole]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(min_value=1, max_value=64), max_size=20))
def test_arbitrary_bytes_parse_or_raise_multipart_error(junk: bytes, sizes: list[int]) -> None:
    for body in (junk, b"--" + BOUNDARY.encode() + b"\r\n" + junk, encode([junk])[: len(junk) // 2]):
        with contextlib.suppress(MultipartError):
            split_parts(body, BOUNDARY)
        with contextlib.suppress(MultipartError):
            list(iter_parts(chunked(body, sizes), BOUNDARY))


@pytest.mark.parametrize("cut", [10, 60, -3, -20])
def test_truncation_is_an_error_in_both_parsers(cut: int) -> None:
    body = encode([b"a" * 50, b"b" * 50])[:cut]
    with pytest.raises(MultipartError):
        split_parts(body, BOUNDARY)
    with pytest.raises(MultipartError):
        list(iter_parts([body], BOUNDARY))


def test_preamble_epilogue_and_part_headers() -> None:
    body = (b"a preamble --" + BOUNDARY.encode() + b" that is not a delimiter\r\n--" + BOUNDARY.encode()
            + b"  \r\nContent-Type: application/dicom\r\nContent-ID: <x>\r\n\r\nDATA\r\n--"
            + BOUNDARY.encode() + b"--\r\nepilogue")
    (part,) = split_parts(body, BOUNDARY)
    assert body[part.start:part.end] == b"DATA"
    assert part.headers == {"content-type": "application/dicom", "content-id": "<x>"}
    (streamed,) = iter_parts([body], BOUNDARY)
    assert streamed.content == b"DATA"


def test_media_types() -> None:
    mt = parse_media_type('multipart/related; type="application/dicom"; boundary="a;b,c"')
    assert mt.type == "multipart/related"
    assert mt.params == {"type": "application/dicom", "boundary": "a;b,c"}
    ranges = parse_accept('image/png;q=0.5, multipart/related; type=application/octet-stream; '
                          'transfer-syntax=*, application/dicom+json;q=0')
    assert [r.type for r in ranges] == ["multipart/related", "image/png"]
    assert ranges[0].param("transfer-syntax") == "*" and ranges[0].param("type") == "application/octet-stream"
    assert parse_accept(None)[0].type == "*/*" and parse_accept("")[0].type == "*/*"
    for bad in ("", "text", "a/b, c/d", "a/b; q"):
        with pytest.raises(MultipartError):
            parse_media_type(bad)
    with pytest.raises(MultipartError):
        parse_accept("image/png; q=high")
