"""Hand-made encoded DICOM data sets for the store's tests: every byte is chosen here, so a test can
cut, lengthen or nest them exactly where it wants (pydicom writes only well-formed data sets).

``Enc(explicit, little)`` encodes elements; :func:`sample` builds a small data set with the attributes
the index needs, a sequence of defined length, one of undefined length and pixel data, and returns its
bytes with the offsets where its top-level elements start."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

UNDEFINED = 0xFFFFFFFF
_LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


@dataclass(frozen=True)
class Enc:
    """Encoder of one transfer syntax's element layout."""

    explicit: bool = True
    little: bool = True

    @property
    def order(self) -> str:
        return "<" if self.little else ">"

    def tag(self, tag: int) -> bytes:
        return struct.pack(self.order + "HH", tag >> 16, tag & 0xFFFF)

    def u32(self, value: int) -> bytes:
        return struct.pack(self.order + "I", value)

    def element(self, tag: int, vr: str, value: bytes, length: int | None = None) -> bytes:
        """One element; ``length`` overrides the declared length (to lie about it)."""
        n = len(value) if length is None else length
        if not self.explicit:
            return self.tag(tag) + self.u32(n) + value
        if vr in _LONG:
            return self.tag(tag) + vr.encode() + b"\0\0" + self.u32(n) + value
        return self.tag(tag) + vr.encode() + struct.pack(self.order + "H", n) + value

    def text(self, tag: int, vr: str, text: str) -> bytes:
        raw = text.encode("latin-1")
        if len(raw) % 2:
            raw += b"\0" if vr == "UI" else b" "
        return self.element(tag, vr, raw)

    def us(self, tag: int, value: int) -> bytes:
        return self.element(tag, "US", struct.pack(self.order + "H", value))

    def item(self, content: bytes, undefined: bool = False) -> bytes:
        if undefined:
            return self.tag(0xFFFEE000) + self.u32(UNDEFINED) + content + self.tag(0xFFFEE00D) + self.u32(0)
        return self.tag(0xFFFEE000) + self.u32(len(content)) + content

    def sequence(self, tag: int, items: list[bytes], undefined: bool = False) -> bytes:
        body = b"".join(items)
        if undefined:
            return self.element(tag, "SQ", body, UNDEFINED) + self.tag(0xFFFEE0DD) + self.u32(0)
        return self.element(tag, "SQ", body)

    def nested(self, depth: int, undefined: bool = True) -> bytes:
        """A Referenced Series Sequence nested ``depth`` levels deep."""
        inner = self.text(0x00080100, "SH", "LEAF")
        for _ in range(depth):
            inner = self.sequence(0x00081115, [self.item(inner, undefined)], undefined)
        return inner

    def encapsulated(self, fragments: list[bytes], delimiter: bool = True) -> bytes:
        """Encapsulated Pixel Data: an empty offset table, the fragments, the sequence delimiter."""
        body = self.item(b"") + b"".join(self.item(f) for f in fragments)
        if delimiter:
            body += self.tag(0xFFFEE0DD) + self.u32(0)
        return self.element(0x7FE00010, "OB", body, UNDEFINED)


def uids(n: int) -> dict[str, str]:
    return {"sop": f"1.2.826.0.1.3680043.10.1234.{n}.3", "study": "1.2.826.0.1.3680043.10.1234.1",
            "series": "1.2.826.0.1.3680043.10.1234.1.2"}


def sample(enc: Enc, n: int = 1, *, pixel_bytes: int = 64, patient: str = "Doe^Jane",
           sop: str | None = None, study: str | None = None) -> tuple[bytes, list[int]]:
    """A small CT data set (attributes in tag order) and the offsets where its top-level elements start
    (plus its length): cutting it anywhere else must make it malformed.  ``n`` makes the UIDs;
    ``sop``/``study`` replace them (with any string, to try hostile ones)."""
    u = uids(n)
    u["sop"] = u["sop"] if sop is None else sop
    u["study"] = u["study"] if study is None else study
    item_a = enc.text(0x00081150, "UI", CT_IMAGE) + enc.text(0x00081155, "UI", u["sop"] + ".9")
    item_b = enc.text(0x00080100, "SH", "CODE") + enc.text(0x00080102, "SH", "DCM")
    parts = [
        enc.text(0x00080016, "UI", CT_IMAGE),
        enc.text(0x00080018, "UI", u["sop"]),
        enc.text(0x00080020, "DA", "20240131"),
        enc.text(0x00080060, "CS", "CT"),
        enc.sequence(0x00081140, [enc.item(item_a)]),  # defined lengths
        enc.sequence(0x00082218, [enc.item(item_b, undefined=True), enc.item(item_b)], undefined=True),
        enc.text(0x00100010, "PN", patient),
        enc.text(0x00100020, "LO", "PID-1"),
        enc.text(0x0020000D, "UI", u["study"]),
        enc.text(0x0020000E, "UI", u["series"]),
        enc.text(0x00200011, "IS", "3"),
        enc.text(0x00200013, "IS", str(n)),
        enc.us(0x00280010, 4),
        enc.us(0x00280011, 8),
        enc.element(0x7FE00010, "OW", bytes(range(256)) * (pixel_bytes // 256) + bytes(pixel_bytes % 256)),
    ]
    offsets, pos = [], 0
    for p in parts:
        offsets.append(pos)
        pos += len(p)
    offsets.append(pos)
    return b"".join(parts), offsets


def deflate(data: bytes) -> bytes:
    """Raw deflate (RFC 1951), as the Deflated Explicit VR Little Endian transfer syntax wants."""
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


ENCODINGS = {IMPLICIT_LE: Enc(False, True), EXPLICIT_LE: Enc(True, True), EXPLICIT_BE: Enc(True, False)}


def part10(dataset: bytes, transfer_syntax: str, sop: str, sop_class: str = CT_IMAGE) -> bytes:
    """A Part 10 file around ``dataset`` (built by medimg's own meta writer)."""
    from medimg.store.part10 import build_meta

    return build_meta(sop_class, sop, transfer_syntax) + dataset
