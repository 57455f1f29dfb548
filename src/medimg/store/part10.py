"""DICOM Part 10 files as the store keeps them: split a received file into its file meta group and data
set, build the meta group for a data set received over the network, and read the attributes the index
needs from the data set bytes.

The data set bytes are kept exactly as received (a C-STORE data set, or the part of a STOW-RS file after
its meta group); the SHA-256 kept in the index is that of these bytes, so an instance that arrives once
over DIMSE and once over DICOMweb is recognised as the same bytes.
"""

from __future__ import annotations

import hashlib
import re
import struct
import uuid
from dataclasses import dataclass
from typing import Any

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.tag import Tag

from .validate import EXPLICIT_BE, StructureError, check_dataset_structure

__all__ = [
    "MEDIMG_IMPLEMENTATION_UID",
    "Header",
    "build_meta",
    "inspect_dataset",
    "is_valid_uid",
    "sha256",
    "split_part10",
]

#: medimg's Implementation Class UID: a UUID-derived UID (PS3.5 B.2), fixed for all versions.
MEDIMG_IMPLEMENTATION_UID = "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, "https://medimg.org/implementation").int)
MEDIMG_IMPLEMENTATION_VERSION = "MEDIMG_0"

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")

_HEADER_KEYWORDS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyDate", "SeriesDate", "StudyTime",
    "SeriesTime", "AccessionNumber", "Modality", "ReferringPhysicianName", "StudyDescription",
    "SeriesDescription", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "BodyPartExamined", "StudyInstanceUID", "SeriesInstanceUID", "StudyID", "SeriesNumber",
    "InstanceNumber", "NumberOfFrames", "Rows", "Columns",
)
_HEADER_TAGS = [Tag(k) for k in _HEADER_KEYWORDS]


def is_valid_uid(value: object) -> bool:
    """A UID as PS3.5 9.1 allows: digits and dots, at most 64 characters (leading zeros tolerated)."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID_RE.match(value))


def sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Header:
    """The attributes of one instance that the index keeps (strings are '' when absent)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    values: dict[str, Any]


def split_part10(data: bytes | memoryview) -> tuple[dict[str, str], int]:
    """Return ``({"TransferSyntaxUID": ..., "MediaStorageSOPClassUID": ..., ...}, offset)`` of a Part 10
    file: the meta group's UID values and the offset where the data set starts.

    Raises :class:`StructureError` if there is no 128-byte preamble + ``DICM`` or the meta group is
    malformed."""
    view = memoryview(data)
    if len(view) < 132 or bytes(view[128:132]) != b"DICM":
        raise StructureError("not a DICOM Part 10 file (no 'DICM' after the 128-byte preamble)")
    pos = 132
    meta: dict[str, str] = {}
    names = {0x0002: "MediaStorageSOPClassUID", 0x0003: "MediaStorageSOPInstanceUID",
             0x0010: "TransferSyntaxUID", 0x0012: "ImplementationClassUID",
             0x0016: "SourceApplicationEntityTitle"}
    while pos + 8 <= len(view):
        group, elem = struct.unpack_from("<HH", view, pos)
        if group != 0x0002:
            break
        vr = bytes(view[pos + 4:pos + 6])
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR", b"OD", b"OF", b"OL", b"OV"):
            if pos + 12 > len(view):
                raise StructureError("the file meta group is cut short")
            (length,) = struct.unpack_from("<I", view, pos + 8)
            value = pos + 12
        else:
            (length,) = struct.unpack_from("<H", view, pos + 6)
            value = pos + 8
        if length == 0xFFFFFFFF or value + length > len(view):
            raise StructureError(f"file meta element (0002,{elem:04X}) has an impossible length")
        if elem in names:
            meta[names[elem]] = bytes(view[value:value + length]).rstrip(b"\x00 ").decode("ascii", "replace")
        pos = value + length
    if "TransferSyntaxUID" not in meta:
        raise StructureError("the file meta group has no Transfer Syntax UID")
    return meta, pos


def _meta_element(elem: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2sHI", 0x0002, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, elem, vr, len(value)) + value


def _uid_value(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _text_value(text: str) -> bytes:
    raw = text.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


_IMPLEMENTATION = (_meta_element(0x0012, b"UI", _uid_value(MEDIMG_IMPLEMENTATION_UID))
                   + _meta_element(0x0013, b"SH", _text_value(MEDIMG_IMPLEMENTATION_VERSION)))


def build_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_aet: str = "") -> bytes:
    """Preamble + ``DICM`` + file meta group for a data set received over the network (explicit VR
    little endian, PS3.10 7.1; the same bytes pydicom's ``write_file_meta_info`` writes)."""
    for name, uid in (("SOP Class UID", sop_class_uid), ("SOP Instance UID", sop_instance_uid),
                      ("Transfer Syntax UID", transfer_syntax)):
        if not is_valid_uid(uid):
            raise ValueError(f"{name} {uid!r} is not a valid UID")
    body = (_meta_element(0x0001, b"OB", b"\x00\x01")
            + _meta_element(0x0002, b"UI", _uid_value(sop_class_uid))
            + _meta_element(0x0003, b"UI", _uid_value(sop_instance_uid))
            + _meta_element(0x0010, b"UI", _uid_value(transfer_syntax))
            + _IMPLEMENTATION)
    aet = "".join(c for c in source_aet if " " <= c <= "~" and c != "\\").strip()[:16]
    if aet:
        body += _meta_element(0x0016, b"AE", _text_value(aet))
    return (b"\x00" * 128 + b"DICM" + _meta_element(0x0000, b"UL", struct.pack("<I", len(body))) + body)


_NUMBERS = {"SeriesNumber", "InstanceNumber", "NumberOfFrames"}  # IS
_BINARY = {"Rows", "Columns"}  # US
_NAMES = {"PatientName", "ReferringPhysicianName"}  # PN
_TEXTS = {"StudyDescription", "SeriesDescription", "PatientID", "AccessionNumber", "StudyID"}  # LO/SH
_UIDS = {"SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"}  # UI
_BY_TAG = {int(Tag(k)): k for k in _HEADER_KEYWORDS}
_COLLECT = frozenset(_BY_TAG)


def _decode(keyword: str, raw: bytes, encodings: list[str], little: bool) -> Any:
    if keyword in _BINARY:
        return struct.unpack("<H" if little else ">H", raw[:2])[0] if len(raw) >= 2 else None
    if keyword in _NUMBERS:
        try:
            number = int(float(raw.split(b"\\")[0].strip(b" \x00") or b"x"))
        except (ValueError, OverflowError):  # "1A", "inf", "nan"
            return None
        return number if -(1 << 31) <= number < 1 << 31 else None  # IS is a 32-bit integer
    if keyword in _NAMES or keyword in _TEXTS:
        try:
            text = decode_bytes(raw, encodings, {0x5E, 0x3D} if keyword in _NAMES else set())  # ^ =
        except Exception:  # an undecodable value is indexed as Latin-1 rather than refused
            text = raw.decode("latin-1")
    elif keyword in _UIDS:
        # only trailing padding is dropped: "1.2\x00.3" stays invalid (and is refused), it must not
        # become the valid and different UID "1.2.3"
        return raw.decode("ascii", "replace").rstrip("\x00 ")
    else:
        text = raw.decode("ascii", "replace")
    return text.strip(" \x00").replace("\x00", "")


def inspect_dataset(dataset: bytes | memoryview, transfer_syntax: str, *, max_depth: int = 32,
                    max_inflated: int = 1 << 30) -> Header:
    """Check the structure of data set bytes (the part after the meta group, see
    :func:`.validate.check_dataset_structure`) and read the attributes the index keeps, in one pass.

    Raises :class:`StructureError` if the data set is malformed."""
    found = check_dataset_structure(dataset, transfer_syntax, max_depth=max_depth,
                                    max_inflated=max_inflated, collect=_COLLECT)
    charset = found.get(0x00080005)
    terms = [c.strip() for c in charset[1].decode("ascii", "replace").split("\\")] if charset else [""]
    try:
        encodings = convert_encodings(terms or [""])
    except Exception:
        encodings = ["iso8859"]
    little = transfer_syntax != EXPLICIT_BE
    values: dict[str, Any] = {k: (None if k in _NUMBERS | _BINARY else "") for k in _HEADER_KEYWORDS}
    for tag, (_vr, raw) in found.items():
        kw = _BY_TAG[tag]
        if kw != "SpecificCharacterSet":
            values[kw] = _decode(kw, raw, encodings, little)
    values.pop("SpecificCharacterSet", None)
    return Header(
        sop_class_uid=values["SOPClassUID"], sop_instance_uid=values["SOPInstanceUID"],
        study_uid=values["StudyInstanceUID"], series_uid=values["SeriesInstanceUID"], values=values,
    )
