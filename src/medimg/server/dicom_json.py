"""The DICOM JSON Model (PS3.18 Annex F) as the DICOMweb service writes it.

* :func:`dataset_to_json`: a data set read from the store into DICOM JSON, leaf values encoded by
  pydicom (``DataElement.to_json_dict``), binary values longer than the bulk threshold and Pixel Data
  replaced by a ``BulkDataURI``.  Values read lazily (``defer_size``) are never loaded for that.
* :func:`attribute`: one attribute from an index value (QIDO-RS answers), with the VR of the data
  dictionary.
* :func:`keyword_of`: a query key given as a keyword (``PatientID``) or a tag (``00100020``).
* bulk data paths: ``7FE00010`` or, inside sequences, ``00540016.0.00181072`` (tag, item index, tag,
  ...); :func:`bulk_path` writes one, :func:`find_bulk` follows one in a data set.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

__all__ = [
    "BINARY_VRS",
    "attribute",
    "bulk_path",
    "dataset_to_json",
    "find_bulk",
    "keyword_of",
    "tag_hex",
]

log = logging.getLogger("medimg.server.dicomweb")

BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # Pixel Data, Float / Double Float Pixel Data
_HEX8 = re.compile(r"^[0-9A-Fa-f]{8}$")
_PATH = re.compile(r"^[0-9A-F]{8}(\.[0-9]{1,6}\.[0-9A-F]{8}){0,8}$")


def tag_hex(tag: int) -> str:
    return f"{tag:08X}"


def keyword_of(key: str) -> str | None:
    """The keyword of a query key given as keyword or as 8 hex digits; None if it names nothing."""
    if _HEX8.match(key):
        kw = keyword_for_tag(int(key, 16))
        return kw or None
    return key if tag_for_keyword(key) is not None else None


def _vr_of(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _pn(value: str) -> dict[str, str]:
    groups = value.split("=")
    out = {"Alphabetic": groups[0]}
    if len(groups) > 1 and groups[1]:
        out["Ideographic"] = groups[1]
    if len(groups) > 2 and groups[2]:
        out["Phonetic"] = groups[2]
    return out


def attribute(keyword: str, value: Any) -> tuple[str, dict[str, Any]]:
    """``(tag hex, {"vr": ..., "Value": [...]})`` for an index value (None or "" = empty)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    vr = _vr_of(tag)
    if " or " in vr:
        vr = vr.split(" or ")[0]
    out: dict[str, Any] = {"vr": vr}
    values = value if isinstance(value, list | tuple) else [value]
    values = [v for v in values if v is not None and v != ""]
    if values:
        if vr == "PN":
            out["Value"] = [_pn(str(v)) for v in values]
        elif vr in ("IS", "US", "UL", "SS", "SL", "UV", "SV"):
            out["Value"] = [int(v) for v in values]
        elif vr in ("DS", "FL", "FD"):
            out["Value"] = [float(v) for v in values]
        else:
            out["Value"] = [str(v) for v in values]
    return tag_hex(tag), out


def bulk_path(parents: tuple[tuple[int, int], ...], tag: int) -> str:
    """The bulk data path of ``tag`` inside the sequence items ``parents`` ((sequence tag, index), ...)."""
    return ".".join([f"{t:08X}.{i}" for t, i in parents] + [tag_hex(tag)])


def find_bulk(ds: Dataset, path: str) -> DataElement | None:
    """The element a bulk data path names in a fully read data set, or None."""
    if not _PATH.match(path):
        return None
    pieces = path.split(".")
    current = ds
    while len(pieces) > 1:
        seq_tag, index = int(pieces[0], 16), int(pieces[1])
        pieces = pieces[2:]
        if seq_tag not in current:
            return None
        seq = current[seq_tag]
        if seq.VR != "SQ" or index >= len(seq.value):
            return None
        current = seq.value[index]
    tag = int(pieces[0], 16)
    found = current.get(tag)
    return found if isinstance(found, DataElement) else None


def _bulk_vr(root: Dataset, raw: RawDataElement | DataElement) -> str:
    vr = raw.VR or _vr_of(raw.tag)
    if " or " not in vr:
        return str(vr)
    if raw.tag == 0x7FE00010:
        ts = getattr(getattr(root, "file_meta", None), "TransferSyntaxUID", None)
        bits = root.get("BitsAllocated", 16)
        encapsulated = bool(ts) and UID(str(ts)).is_encapsulated
        return "OB" if encapsulated or (isinstance(bits, int) and bits <= 8) else "OW"
    return "OW" if "OW" in vr else vr.split(" or ")[0]


def dataset_to_json(ds: Dataset, bulk_uri: Callable[[str], str], *, threshold: int = 1024,
                    root: Dataset | None = None,
                    parents: tuple[tuple[int, int], ...] = ()) -> dict[str, Any]:
    """``ds`` (read with ``defer_size=threshold`` or fully) in the DICOM JSON Model.

    Binary values (OB, OD, OF, OL, OV, OW, UN) longer than ``threshold`` bytes, and pixel data of any
    size, become ``{"vr": ..., "BulkDataURI": bulk_uri(path)}``; everything else is pydicom's own
    encoding.  An element pydicom cannot encode is left out (and logged) rather than failing the whole
    answer."""
    root = root if root is not None else ds
    out: dict[str, Any] = {}
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset gives elements, read eagerly)
        key = tag_hex(tag)
        raw = ds.get_item(tag, keep_deferred=True)
        if raw is None:
            continue
        if isinstance(raw, RawDataElement):
            deferred = raw.value is None and raw.length != 0
            length = raw.length
        else:
            deferred = False
            value = raw.value
            length = len(value) if isinstance(value, bytes | bytearray) else 0
        declared = str(raw.VR) if raw.VR else ""
        vr = _bulk_vr(root, raw) if (not declared or " or " in declared or declared in BINARY_VRS
                                     or int(tag) in PIXEL_TAGS) else declared
        if vr in BINARY_VRS and (int(tag) in PIXEL_TAGS or deferred or length > threshold):
            if length == 0:
                out[key] = {"vr": vr}
            else:
                out[key] = {"vr": vr, "BulkDataURI": bulk_uri(bulk_path(parents, int(tag)))}
            continue
        try:
            elem = ds[tag]
            if elem.VR == "SQ":
                out[key] = {"vr": "SQ", "Value": [
                    dataset_to_json(item, bulk_uri, threshold=threshold, root=root,
                                    parents=(*parents, (int(tag), i)))
                    for i, item in enumerate(elem.value)]}
            else:
                out[key] = elem.to_json_dict(None, threshold)
        except Exception as exc:  # one broken value must not hide the rest of the header
            log.warning("attribute %s left out of the DICOM JSON: %s", key, exc)
    return out
