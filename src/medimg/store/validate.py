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

__all__ = ["StructureError", "check_dataset_structure", "inflate_bounded"]

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"  # deflated explicit VR little endian

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010


class StructureError(ValueError):
    """The encoded data set is not well formed; the message says where and how."""


def _name(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class _Walker:
    """One walk over an encoded data set; ``found`` collects the top-level values asked for."""

    def __init__(self, data: memoryview, explicit: bool, little: bool, max_depth: int,
                 collect: frozenset[int], max_elements: int = 2_000_000) -> None:
        order = "<" if little else ">"
        self.data = data
        self.explicit = explicit
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.collect = collect
        self.found: dict[int, tuple[bytes | None, bytes]] = {}
        self.elements = 0
        self._implicit = struct.Struct(order + "HHI").unpack_from  # group, element, 32-bit length
        self._explicit = struct.Struct(order + "HH2sH").unpack_from  # group, element, VR, 16-bit length
        self._u32 = struct.Struct(order + "I").unpack_from

    def header(self, pos: int, end: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, length, position of the value) of the element at ``pos``."""
        if pos + 8 > end:
            raise StructureError(f"element header at byte {pos} is cut short")
        if not self.explicit:
            group, elem, length = self._implicit(self.data, pos)
            return group << 16 | elem, None, length, pos + 8
        group, elem, vr, length = self._explicit(self.data, pos)
        if group == 0xFFFE:  # items and delimiters have no VR in any transfer syntax
            return group << 16 | elem, None, self._u32(self.data, pos + 4)[0], pos + 8
        if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
            raise StructureError(f"element {_name(group << 16 | elem)} at byte {pos} has no valid VR")
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise StructureError(f"element header at byte {pos} is cut short")
            return group << 16 | elem, vr, self._u32(self.data, pos + 8)[0], pos + 12
        return group << 16 | elem, vr, length, pos + 8

    def walk(self, pos: int, end: int, depth: int, in_item: bool) -> int:
        """Walk elements from ``pos``; stop at ``end`` or, inside an undefined-length item, after its
        delimiter.  Returns the position after what was walked."""
        if depth > self.max_depth:
            raise StructureError(f"sequences nest deeper than {self.max_depth} levels")
        header = self.header
        collect = self.collect if depth == 0 else frozenset()
        while pos < end:
            tag, vr, length, value = header(pos, end)
            self.elements += 1
            if self.elements > self.max_elements:
                raise StructureError(f"more than {self.max_elements} elements")
            if tag >> 16 == 0xFFFE:
                if tag != _ITEM_END:
                    raise StructureError(f"unexpected {_name(tag)} at byte {pos}")
                if not in_item:
                    raise StructureError(f"item delimiter outside an item at byte {pos}")
                return value
            if length == _UNDEFINED:
                if vr == b"UN":  # a sequence whose VR the sender did not know: implicit VR inside
                    explicit, self.explicit = self.explicit, False
                    try:
                        pos = self.sequence(value, end, depth + 1, tag, True)
                    finally:
                        self.explicit = explicit
                elif vr == b"SQ" or (vr is None and tag != _PIXEL_DATA):
                    pos = self.sequence(value, end, depth + 1, tag, True)
                elif tag == _PIXEL_DATA or vr in (b"OB", b"OW"):
                    pos = self.fragments(value, end, tag)
                else:
                    raise StructureError(f"{_name(tag)} has an undefined length but is not a sequence")
                continue
            if value + length > end:
                raise StructureError(
                    f"{_name(tag)} at byte {pos} declares {length} bytes but only {end - value} remain"
                )
            if tag in collect:
                self.found[tag] = (vr, bytes(self.data[value:value + length]))
            if vr == b"SQ" and length:
                self.sequence(value, value + length, depth + 1, tag, False)
            pos = value + length
        if in_item:
            raise StructureError("an item of undefined length has no delimiter")
        return pos

    def sequence(self, pos: int, end: int, depth: int, tag: int, undefined: bool) -> int:
        """Walk the items of a sequence from ``pos``; a sequence of undefined length must end with its
        delimiter before ``end``, one of defined length ends at ``end``."""
        if depth > self.max_depth:
            raise StructureError(f"sequences nest deeper than {self.max_depth} levels")
        data, implicit = self.data, self._implicit
        while pos < end:
            if pos + 8 > end:
                raise StructureError(f"sequence {_name(tag)} is cut short")
            group, elem, length = implicit(data, pos)
            if group << 16 | elem == _SEQ_END:
                return pos + 8
            if group << 16 | elem != _ITEM:
                raise StructureError(f"sequence {_name(tag)} holds {_name(group << 16 | elem)}, not an item")
            if length == _UNDEFINED:
                pos = self.walk(pos + 8, end, depth, in_item=True)
            else:
                if pos + 8 + length > end:
                    raise StructureError(f"an item of {_name(tag)} declares {length} bytes but fewer remain")
                self.walk(pos + 8, pos + 8 + length, depth, in_item=False)
                pos = pos + 8 + length
        if undefined:
            raise StructureError(f"sequence {_name(tag)} of undefined length has no delimiter")
        return pos

    def fragments(self, pos: int, end: int, tag: int) -> int:
        data, implicit = self.data, self._implicit
        while True:
            if pos + 8 > end:
                raise StructureError(f"encapsulated {_name(tag)} is cut short (no sequence delimiter)")
            group, elem, length = implicit(data, pos)
            if group << 16 | elem == _SEQ_END:
                return pos + 8
            if group << 16 | elem != _ITEM or length == _UNDEFINED:
                raise StructureError(f"encapsulated {_name(tag)} holds a malformed fragment at byte {pos}")
            if pos + 8 + length > end:
                raise StructureError(f"a fragment of {_name(tag)} declares {length} bytes but fewer remain")
            pos += 8 + length


def inflate_bounded(data: bytes | memoryview, limit: int) -> bytes:
    """Inflate a deflated data set (raw deflate, RFC 1951), refusing to grow past ``limit`` bytes."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = d.decompress(bytes(data), limit + 1)
    except zlib.error as exc:
        raise StructureError(f"the deflated data set is not a deflate stream ({exc})") from None
    if len(out) > limit or d.unconsumed_tail:
        raise StructureError(f"the deflated data set inflates to more than {limit} bytes")
    if not d.eof:
        raise StructureError("the deflated data set is cut short (its deflate stream does not end)")
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
                     little=transfer_syntax != EXPLICIT_BE, max_depth=max_depth, collect=collect)
    try:
        walker.walk(0, len(data), 0, in_item=False)
    except RecursionError:  # max_depth set beyond what the interpreter's stack allows
        raise StructureError("sequences nest too deep to check") from None
    return walker.found
