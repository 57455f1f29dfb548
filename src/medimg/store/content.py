"""Is an offered instance the stored one in another encoding?

Senders re-encode what they forward: dcmtk gives undefined-length sequences explicit lengths, Orthanc
recomputes group lengths and writes pixel data as OB, a converter may switch explicit to implicit VR.
The bytes differ, the instance does not.  Before the store calls a re-sent SOP Instance a conflict it
compares the two data sets element by element, ignoring encoding only: group lengths, sequence and
item length encoding, explicit/implicit VR and the VR of binary values (OB/OW/UN).  Any difference in
a value, a missing or extra element, or pixel data in different compressed forms counts as different
content.  This runs only on the rare path where a SOP Instance UID arrives again with other bytes.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from .part10 import split_part10
from .validate import DEFLATED, EXPLICIT_BE, IMPLICIT_LE, inflate_bounded

__all__ = ["same_content"]

_UNCOMPRESSED = {IMPLICIT_LE, "1.2.840.10008.1.2.1", DEFLATED}


def _dataset(data: bytes | memoryview, transfer_syntax: str, limit: int) -> Dataset:
    raw = inflate_bounded(data, limit) if transfer_syntax == DEFLATED else bytes(data)
    return read_dataset(BytesIO(raw), is_implicit_VR=transfer_syntax == IMPLICIT_LE,
                        is_little_endian=transfer_syntax != EXPLICIT_BE)


def _as_bytes(value: Any) -> bytes | None:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return None


def _equal_values(a: Any, b: Any) -> bool:
    ba, bb = _as_bytes(a), _as_bytes(b)
    if ba is not None or bb is not None:
        if ba is not None and bb is not None:
            return ba.rstrip(b"\x00") == bb.rstrip(b"\x00")
        # one side is raw (UN in implicit VR), the other decoded: compare the text forms
        text = (ba if ba is not None else bb or b"").decode("latin-1").strip("\x00 ")
        other = b if ba is not None else a
        return text == ("\\".join(str(v) for v in other) if isinstance(other, list | tuple)
                        or type(other).__name__ == "MultiValue" else str(other)).strip()
    return bool(a == b)


def _equal(a: Dataset, b: Dataset) -> bool:
    tags_a = [t for t in a.keys() if t.element != 0]  # noqa: SIM118 (iterating a Dataset yields elements)
    tags_b = [t for t in b.keys() if t.element != 0]  # noqa: SIM118
    if tags_a != tags_b:
        return False
    for tag in tags_a:
        ea, eb = a[tag], b[tag]
        if ea.VR == "SQ" or eb.VR == "SQ":
            if ea.VR != eb.VR or len(ea.value) != len(eb.value):
                return False
            if not all(_equal(x, y) for x, y in zip(ea.value, eb.value, strict=True)):
                return False
        elif not _equal_values(ea.value, eb.value):
            return False
    return True


def same_content(stored: Path, stored_ts: str, offered: bytes | memoryview, offered_ts: str,
                 limit: int = 1 << 30) -> bool:
    """True if the data set ``offered`` (bytes after the meta group, in ``offered_ts``) holds exactly
    the elements and values of the stored file ``stored``."""
    if stored_ts != offered_ts and not (stored_ts in _UNCOMPRESSED and offered_ts in _UNCOMPRESSED):
        return False  # pixel data in two different compressed forms: not comparable without decoding
    try:
        data = stored.read_bytes()
        _, offset = split_part10(data)
        return _equal(_dataset(memoryview(data)[offset:], stored_ts, limit),
                      _dataset(offered, offered_ts, limit))
    except Exception:  # unreadable either side: not provably the same
        return False
