"""Structural check of a received DICOM data set before it is stored.

pydicom reads lazily: a data set whose pixel data is cut short, whose element declares 4 GiB, or whose
sequences nest ten thousand deep is accepted by ``dcmread(stop_before_pixels=True)`` and fails only
later, in a viewer or in the analysis.  The store refuses such an instance at the door instead, with one
walk over the encoded bytes that follows every element and every sequence item without decoding any
value: each declared length must fit in what is left, undefined lengths must end with their delimiter,
and nesting is bounded.  The walk is linear in the number of elements (pixel data is skipped by its
length), so it costs far less than a parse.

Handles the little-endian transfer syntaxes (implicit and explicit VR, every encapsulated syntax) and
explicit VR big endian; a deflated data set is inflated with a size bound first (a decompression bomb
is refused, not expanded).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["StructureError", "check_dataset_structure", "inflate_bounded"]

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"  # deflated explicit VR little endian

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD


class StructureError(ValueError):
    """The encoded data set is not well formed; the message says where and how."""


@dataclass
class _Walker:
    data: memoryview
    explicit: bool
    little: bool
    max_depth: int
    elements: int = 0
    max_elements: int = 2_000_000
    collect: frozenset[int] = frozenset()
    found: dict[int, tuple[bytes | None, bytes]] | None = None

    def _u16(self, pos: int) -> int:
        return struct.unpack_from("<H" if self.little else ">H", self.data, pos)[0]

    def _u32(self, pos: int) -> int:
        return struct.unpack_from("<I" if self.little else ">I", self.data, pos)[0]

    def _tag(self, pos: int) -> int:
        return (self._u16(pos) << 16) | self._u16(pos + 2)

    def header(self, pos: int, end: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR, length, position of the value) of the element at ``pos``."""
        if pos + 8 > end:
            raise StructureError(f"element header at byte {pos} is cut short")
        tag = self._tag(pos)
        if tag >> 16 == 0xFFFE:  # item and delimiters: never have a VR
            return tag, None, self._u32(pos + 4), pos + 8
        if not self.explicit:
            return tag, None, self._u32(pos + 4), pos + 8
        vr = bytes(self.data[pos + 4:pos + 6])
        if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
            raise StructureError(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) at byte {pos} has no valid VR")
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise StructureError(f"element header at byte {pos} is cut short")
            return tag, vr, self._u32(pos + 8), pos + 12
        return tag, vr, self._u16(pos + 6), pos + 8

    def walk(self, pos: int, end: int, depth: int, in_item: bool) -> int:
        """Walk elements from ``pos``; stop at ``end`` or, inside an undefined-length item, after its
        delimiter.  Returns the position after what was walked."""
        if depth > self.max_depth:
            raise StructureError(f"sequences nest deeper than {self.max_depth} levels")
        while pos < end:
            tag, vr, length, value = self.header(pos, end)
            self.elements += 1
            if self.elements > self.max_elements:
                raise StructureError(f"more than {self.max_elements} elements")
            name = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
            if tag == _ITEM_END:
                if not in_item:
                    raise StructureError(f"item delimiter outside an item at byte {pos}")
                return value
            if tag >> 16 == 0xFFFE:
                raise StructureError(f"unexpected {name} at byte {pos}")
            is_sq = vr == b"SQ" or (vr is None and length == _UNDEFINED and tag != 0x7FE00010)
            if length == _UNDEFINED:
                if vr == b"UN":  # a sequence whose VR the sender did not know: implicit VR inside
                    explicit, self.explicit = self.explicit, False
                    try:
                        pos = self.sequence(value, end, depth + 1, name)
                    finally:
                        self.explicit = explicit
                elif is_sq:
                    pos = self.sequence(value, end, depth + 1, name)
                elif tag == 0x7FE00010 or vr in (b"OB", b"OW"):
                    pos = self.fragments(value, end, name)
                else:
                    raise StructureError(f"{name} has an undefined length but is not a sequence")
                continue
            if value + length > end:
                raise StructureError(
                    f"{name} at byte {pos} declares {length} bytes but only {end - value} remain"
                )
            if depth == 0 and tag in self.collect and self.found is not None:
                self.found[tag] = (vr, bytes(self.data[value:value + length]))
            if is_sq and length:
                self.sequence(value, value + length, depth + 1, name)
            pos = value + length
        if in_item:
            raise StructureError("an item of undefined length has no delimiter")
        return pos

    def sequence(self, pos: int, end: int, depth: int, name: str) -> int:
        if depth > self.max_depth:
            raise StructureError(f"sequences nest deeper than {self.max_depth} levels")
        while pos < end:
            if pos + 8 > end:
                raise StructureError(f"sequence {name} is cut short")
            tag = self._tag(pos)
            length = self._u32(pos + 4)
            if tag == _SEQ_END:
                return pos + 8
            if tag != _ITEM:
                raise StructureError(f"sequence {name} holds ({tag >> 16:04X},{tag & 0xFFFF:04X}), not an item")
            if length == _UNDEFINED:
                pos = self.walk(pos + 8, end, depth, in_item=True)
            else:
                if pos + 8 + length > end:
                    raise StructureError(f"an item of {name} declares {length} bytes but fewer remain")
                self.walk(pos + 8, pos + 8 + length, depth, in_item=False)
                pos = pos + 8 + length
        return pos  # defined-length sequence ends at its end; undefined one would have returned above

    def fragments(self, pos: int, end: int, name: str) -> int:
        while True:
            if pos + 8 > end:
                raise StructureError(f"encapsulated {name} is cut short (no sequence delimiter)")
            tag = self._tag(pos)
            length = self._u32(pos + 4)
            if tag == _SEQ_END:
                return pos + 8
            if tag != _ITEM or length == _UNDEFINED:
                raise StructureError(f"encapsulated {name} holds a malformed fragment at byte {pos}")
            if pos + 8 + length > end:
                raise StructureError(f"a fragment of {name} declares {length} bytes but fewer remain")
            pos += 8 + length


def inflate_bounded(data: bytes | memoryview, limit: int) -> bytes:
    """Inflate a deflated data set (raw deflate, RFC 1951), refusing to grow past ``limit`` bytes."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    out = d.decompress(bytes(data), limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise StructureError(f"the deflated data set inflates to more than {limit} bytes")
    return out


def check_dataset_structure(
    dataset: bytes | memoryview, transfer_syntax: str, *, max_depth: int = 32,
    max_inflated: int = 1 << 30, collect: frozenset[int] = frozenset(),
) -> dict[int, tuple[bytes | None, bytes]]:
    """Raise :class:`StructureError` unless ``dataset`` (the bytes after the file meta group) is a
    well-formed data set in ``transfer_syntax``.

    Returns ``{tag: (VR or None for implicit VR, value bytes)}`` of the top-level elements whose tags
    are in ``collect``."""
    data = memoryview(dataset)
    if transfer_syntax == DEFLATED:
        data = memoryview(inflate_bounded(data, max_inflated))
    walker = _Walker(data, explicit=transfer_syntax != IMPLICIT_LE,
                     little=transfer_syntax != EXPLICIT_BE, max_depth=max_depth, collect=collect,
                     found={})
    walker.walk(0, len(data), 0, in_item=False)
    assert walker.found is not None
    return walker.found
