"""HTTP media types and ``multipart/related`` bodies (RFC 2046, RFC 2387), as DICOMweb uses them.

Three pieces, shared by the DICOMweb service and its client:

* :func:`parse_media_type` / :func:`parse_accept`: a ``Content-Type`` value or an ``Accept`` header into
  :class:`MediaType` objects (parameters unquoted, names lower-cased, ``q`` honoured);
* :func:`split_parts`: the parts of a complete body held in a buffer (an ``mmap`` of the STOW-RS body
  file), as offsets, strictly: a body without the boundary, a part without its end or a missing close
  delimiter is a :class:`MultipartError` that says which;
* :func:`iter_parts`: the parts of a body arriving as chunks (a WADO-RS response), one part in memory
  at a time; and :func:`part_header` / :func:`close_delimiter` to write one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "MediaType",
    "MultipartError",
    "Part",
    "close_delimiter",
    "iter_parts",
    "new_boundary",
    "parse_accept",
    "parse_media_type",
    "part_header",
    "split_parts",
]

MAX_HEADER_BYTES = 16384  # the header block of one part
MAX_BOUNDARY = 256
_TOKEN_SPLIT = re.compile(r'((?:[^,;"]|"(?:[^"\\]|\\.)*")*)([,;]|$)')


class MultipartError(ValueError):
    """A malformed multipart body or media type; the message says what is wrong and where."""


@dataclass(frozen=True)
class MediaType:
    """``type/subtype`` with its parameters (names lower-case, values unquoted)."""

    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart/related"

    def param(self, name: str, default: str = "") -> str:
        return self.params.get(name, default)

    def matches(self, media_type: str) -> bool:
        """Whether this (possibly wildcard) range covers ``media_type``."""
        if self.type in ("*/*", "*"):
            return True
        if self.type.endswith("/*"):
            return media_type.startswith(self.type[:-1])
        return self.type == media_type


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _split(text: str) -> list[tuple[str, str]]:
    """Split on ``,`` and ``;`` outside quotes: [(piece, separator after it)]."""
    out = []
    pos = 0
    while pos <= len(text):
        m = _TOKEN_SPLIT.match(text, pos)
        if m is None or (m.end() == pos and pos == len(text)):
            break
        out.append((m.group(1), m.group(2)))
        if not m.group(2):
            break
        pos = m.end()
    return out


def _media_types(text: str) -> list[MediaType]:
    ranges: list[MediaType] = []
    current: list[str] = []
    for piece, sep in _split(text):
        current.append(piece)
        if sep != ";":
            head, *params = current
            current = []
            mtype = head.strip().lower()
            if not mtype:
                continue
            values: dict[str, str] = {}
            q = 1.0
            for p in params:
                name, eq, value = p.partition("=")
                name = name.strip().lower()
                if not name:
                    continue
                if not eq:
                    raise MultipartError(f"media type parameter {p.strip()!r} has no value")
                if name == "q":
                    try:
                        q = float(value)
                    except ValueError:
                        raise MultipartError(f"q={value.strip()!r} is not a number") from None
                    continue
                values[name] = _unquote(value)
            ranges.append(MediaType(mtype, values, q))
    return ranges


def parse_media_type(text: str) -> MediaType:
    """One media type (a ``Content-Type`` value)."""
    found = _media_types(text or "")
    if len(found) != 1 or "/" not in found[0].type:
        raise MultipartError(f"{text!r} is not one media type")
    return found[0]


def parse_accept(text: str | None) -> list[MediaType]:
    """The media ranges of an ``Accept`` header, best first (stable for equal ``q``); ``*/*`` when the
    header is absent or empty.  Ranges with ``q=0`` are dropped."""
    if not text or not text.strip():
        return [MediaType("*/*")]
    ranges = [m for m in _media_types(text) if m.q > 0]
    return sorted(ranges, key=lambda m: -m.q)


def new_boundary() -> str:
    return f"medimg-{uuid.uuid4().hex}"


def part_header(boundary: str, content_type: str, first: bool = False,
                extra: Iterable[tuple[str, str]] = ()) -> bytes:
    """The delimiter and header block that start one part (the content follows directly)."""
    lines = [f"Content-Type: {content_type}"] + [f"{k}: {v}" for k, v in extra]
    lead = b"" if first else b"\r\n"
    return lead + f"--{boundary}\r\n".encode() + "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"


def close_delimiter(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode()


@dataclass(frozen=True)
class Part:
    """One part of a body: its headers (names lower-case) and its content, as offsets into the buffer
    (:func:`split_parts`) or as bytes (:func:`iter_parts`)."""

    headers: dict[str, str]
    start: int = 0
    end: int = 0
    content: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def _parse_headers(block: bytes, number: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    text = block.decode("latin-1")
    for line in text.split("\r\n"):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or name != name.strip():
            raise MultipartError(f"part {number}: header line {line[:80]!r} is not 'Name: value'")
        headers[name.strip().lower()] = value.strip()
    return headers


class _Buffer(Protocol):
    def find(self, sub: bytes, start: int = ..., end: int = ...) -> int: ...
    def __getitem__(self, key: slice) -> bytes: ...
    def __len__(self) -> int: ...


def split_parts(buf: _Buffer, boundary: str, max_parts: int = 100000) -> list[Part]:
    """The parts of a complete multipart body in ``buf`` (bytes or an mmap), as offsets.

    Strict about structure so that a truncated or mangled upload is refused as a whole instead of being
    half-used: the first delimiter must exist, every part must end with a delimiter, and the body must
    end with the close delimiter."""
    if not boundary or len(boundary) > MAX_BOUNDARY:
        # RFC 2046 allows 70 characters; some senders (Orthanc's STOW-RS client) use more
        raise MultipartError(f"the boundary must be 1 to {MAX_BOUNDARY} characters")
    delim = b"--" + boundary.encode("latin-1")
    size = len(buf)
    pos = buf.find(delim)
    while pos > 0 and buf[pos - 2:pos] != b"\r\n" and buf[pos - 1:pos] != b"\n":
        pos = buf.find(delim, pos + 1)  # a delimiter must start a line
    if pos < 0:
        raise MultipartError(f"the body does not contain the boundary {boundary!r} given in Content-Type")
    parts: list[Part] = []
    while True:
        after = pos + len(delim)
        if buf[after:after + 2] == b"--":
            return parts
        if len(parts) >= max_parts:
            raise MultipartError(f"more than {max_parts} parts")
        number = len(parts) + 1
        line_end = buf.find(b"\r\n", after, min(size, after + 1024))
        if line_end < 0 or buf[after:line_end].strip(b" \t"):
            if after >= size:
                raise MultipartError(f"the body ends after delimiter {number} without the close "
                                     "delimiter (truncated body?)")
            raise MultipartError(f"delimiter {number} is not followed by a line end")
        if buf[line_end:line_end + 4] == b"\r\n\r\n":
            header_end = line_end  # no headers
        else:
            header_end = buf.find(b"\r\n\r\n", line_end, min(size, line_end + MAX_HEADER_BYTES))
            if header_end < 0:
                raise MultipartError(f"part {number}: no end of its headers within {MAX_HEADER_BYTES} "
                                     "bytes (truncated body?)")
        headers = _parse_headers(buf[line_end + 2:header_end + 2], number)
        start = header_end + 4
        nxt = buf.find(b"\r\n" + delim, start)
        if nxt < 0:
            raise MultipartError(f"part {number} does not end with the boundary (truncated body?)")
        parts.append(Part(headers, start, nxt))
        pos = nxt + 2


def iter_parts(chunks: Iterable[bytes], boundary: str, max_part_bytes: int = 1 << 31) -> Iterator[Part]:
    """The parts of a body arriving as ``chunks``, each as soon as it is complete (``Part.content``).
    Raises :class:`MultipartError` like :func:`split_parts`, when the defect is reached."""
    delim = b"--" + boundary.encode("latin-1")
    buf = bytearray()
    it = iter(chunks)
    done = False

    def more() -> bool:
        nonlocal done
        for chunk in it:
            if chunk:
                buf.extend(chunk)
                return True
        done = True
        return False

    # the first delimiter
    while True:
        pos = buf.find(delim)
        while pos > 0 and buf[pos - 2:pos] != b"\r\n" and buf[pos - 1:pos] != b"\n":
            pos = buf.find(delim, pos + 1)
        if pos >= 0:
            break
        if len(buf) > MAX_HEADER_BYTES + len(delim):  # a preamble is short; keep the tail only
            del buf[:len(buf) - len(delim) - 2]
        if not more():
            raise MultipartError(f"the body does not contain the boundary {boundary!r}")
    del buf[:pos + len(delim)]
    number = 0
    while True:
        while len(buf) < 2 and not done:
            more()
        if buf[:2] == b"--":
            return
        number += 1
        while (header_end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > MAX_HEADER_BYTES or not more():
                raise MultipartError(f"part {number}: no end of its headers (truncated body?)")
        first_line = buf.find(b"\r\n")
        if bytes(buf[:first_line]).strip(b" \t"):
            raise MultipartError(f"delimiter {number} is not followed by a line end")
        headers = _parse_headers(bytes(buf[first_line + 2:header_end + 2]), number) \
            if header_end > first_line else {}
        del buf[:header_end + 4]
        marker = b"\r\n" + delim
        searched = 0
        while (end := buf.find(marker, searched)) < 0:
            searched = max(0, len(buf) - len(marker))
            if len(buf) > max_part_bytes:
                raise MultipartError(f"part {number} is larger than {max_part_bytes} bytes")
            if not more():
                raise MultipartError(f"part {number} does not end with the boundary (truncated body?)")
        yield Part(headers, content=bytes(buf[:end]))
        del buf[:end + len(marker)]
