"""Index DICOM files from their headers only: one :class:`InstanceRecord` per file, grouped into series.

Headers are read with ``stop_before_pixels``; the file offset of the Pixel Data element is kept so native
(uncompressed) pixels can later be read without parsing the header again.  Unreadable files become
:class:`~medimg.errors.InputError` entries in :attr:`DicomIndex.errors`; they never stop the rest.
"""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from ..errors import InputError, NotDicomError

__all__ = [
    "DicomIndex",
    "FrameGeometry",
    "InstanceRecord",
    "BoundedFile",
    "PixelElement",
    "SeriesEntry",
    "index_paths",
    "iter_files",
    "read_record",
    "scan_pixel_element",
]

#: Above this many rows x columns x frames x samples a file is refused (a decompression-bomb bound:
#: 2**31 voxels is 4 GiB at 16 bits, far beyond any real single object).
MAX_VOXELS = 2**31

NATIVE_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
}
_PIXEL_DATA_TAG = 0x7FE00010

# Attributes copied into Image.meta (DICOM keyword -> meta key).  Acquisition parameters are kept for
# quality checks and drift monitoring; no patient-identifying attribute other than Patient ID is kept.
_META_KEYWORDS = {
    "PatientID": "patient_id",
    "StudyDate": "study_date",
    "StudyDescription": "study_description",
    "SeriesDescription": "series_description",
    "SeriesNumber": "series_number",
    "BodyPartExamined": "body_part_examined",
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "manufacturer_model_name",
    "KVP": "kvp",
    "XRayTubeCurrent": "xray_tube_current",
    "Exposure": "exposure",
    "ConvolutionKernel": "convolution_kernel",
    "SliceThickness": "slice_thickness",
    "SpacingBetweenSlices": "spacing_between_slices",
    "RepetitionTime": "repetition_time",
    "EchoTime": "echo_time",
    "InversionTime": "inversion_time",
    "FlipAngle": "flip_angle",
    "MagneticFieldStrength": "magnetic_field_strength",
    "ScanningSequence": "scanning_sequence",
    "MRAcquisitionType": "mr_acquisition_type",
    "InPlanePhaseEncodingDirection": "phase_encoding_direction",
    "PatientPosition": "patient_position",
    "ViewPosition": "view_position",
    "Laterality": "laterality",
    "ImageLaterality": "image_laterality",
    "ProtocolName": "protocol_name",
    "FrameOfReferenceUID": "frame_of_reference_uid",
    "AccessionNumber": "accession_number",
    "RescaleType": "rescale_type",
}


# Everything the index reads from a header.  Reading only these (pydicom's ``specific_tags``) lets
# pydicom seek over every other element -- large private blocks and sequences included -- instead of
# parsing them: it is what makes indexing faster than a plain ``dcmread(stop_before_pixels=True)``.
# Any attribute read in this module must be listed here (a test reads every file both ways).
_INDEXED_KEYWORDS = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber",
    "Modality", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "PhotometricInterpretation",
    "PlanarConfiguration", "ImageType", "InstanceNumber", "AcquisitionNumber",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "ImagerPixelSpacing",
    "RescaleSlope", "RescaleIntercept", "SliceThickness", "EchoNumbers",
    "TemporalPositionIdentifier", "WindowCenter", "WindowWidth", "GantryDetectorTilt",
    "FrameTime", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
    "SpecificCharacterSet", "RedPaletteColorLookupTableDescriptor",
)
_SIEMENS_MOSAIC_TAGS = ((0x0019, 0x0010), (0x0019, 0x100A))  # private creator, images in mosaic


def _indexed_tags() -> list[int]:
    keywords = set(_INDEXED_KEYWORDS) | set(_META_KEYWORDS)
    tags = [tag_for_keyword(k) for k in sorted(keywords)]
    out = [t for t in tags if t is not None]
    out += [(g << 16) | e for g, e in _SIEMENS_MOSAIC_TAGS]
    return out


_INDEXED_TAGS = _indexed_tags()

# Value representations whose values are plain ASCII by the standard (PS3.5 6.2): their raw bytes can
# be turned into Python values directly, which is several times faster than pydicom's element
# conversion (the header index reads ~60 attributes per file).
_ASCII_VRS = {"DS", "IS", "CS", "UI", "DA", "TM", "DT", "AS"}
_TEXT_VRS = {"LO", "SH", "ST", "LT"}  # decoded directly only for the default or Latin-1 character set
_BINARY_INT_VRS = {"US": ("H", 2), "SS": ("h", 2), "UL": ("I", 4), "SL": ("i", 4)}


class _FastHeader:
    """``Dataset.get`` for top-level attributes, converting ASCII-VR raw elements directly.

    Values come back as Python types compatible with pydicom's (``float`` for DS, ``int`` for IS,
    ``str`` otherwise, a list for several values).  Everything else (text in a specific character
    set, binary VRs, sequences, already-converted elements) goes through pydicom unchanged.
    A test checks both give the same values on every file of the sample data.
    """

    _tags: dict[str, tuple[int, str]] = {}

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self._is_latin1: bool | None = None
        # The element store, without get_item's per-call tag normalisation (a plain dict keyed by
        # BaseTag, an int subclass, in pydicom 2 and 3).
        self._elements: Any = getattr(ds, "_dict", None)
        if not isinstance(self._elements, dict):
            self._elements = None

    def _latin1(self) -> bool:
        """Whether text is in the default repertoire or Latin-1 (so bytes decode as latin-1)."""
        if self._is_latin1 is None:
            elem = self.ds.get_item(0x00080005)
            if elem is None:
                self._is_latin1 = True
            else:
                value = elem.value
                if isinstance(value, bytes):
                    value = value.decode("ascii", "replace")
                if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
                    value = "\\".join(str(v) for v in value)
                terms = [t.strip() for t in str(value or "").split("\\")]
                self._is_latin1 = all(t in ("", "ISO_IR 6", "ISO_IR 100", "ISO 2022 IR 6")
                                      for t in terms)
        return self._is_latin1

    @classmethod
    def _tag(cls, keyword: str) -> tuple[int, str]:
        found = cls._tags.get(keyword)
        if found is None:
            tag = tag_for_keyword(keyword)
            if tag is None:
                msg = f"unknown DICOM keyword {keyword!r}"
                raise KeyError(msg)
            found = (tag, dictionary_VR(tag))
            cls._tags[keyword] = found
        return found

    def get(self, keyword: str, default: Any = None) -> Any:
        tag, vr = self._tag(keyword)
        elem = self._elements.get(tag) if self._elements is not None else self.ds.get_item(tag)
        if elem is None:
            return default
        if not isinstance(elem, RawDataElement) or elem.value is None:
            return self.ds.get(keyword, default)
        if elem.VR not in (None, vr, "UN"):
            return self.ds.get(keyword, default)
        raw = bytes(elem.value)
        if vr in _BINARY_INT_VRS:
            code, size = _BINARY_INT_VRS[vr]
            if not raw or len(raw) % size:
                return self.ds.get(keyword, default)
            order = "<" if self.ds.is_little_endian else ">"
            ints = list(struct.unpack(f"{order}{len(raw) // size}{code}", raw))
            return ints[0] if len(ints) == 1 else ints
        if vr in _TEXT_VRS:
            if not self._latin1():
                return self.ds.get(keyword, default)
            text = raw.decode("latin-1").strip(" \x00")
            if vr in ("ST", "LT"):
                return text
            parts = [p.strip(" \x00") for p in text.split("\\")]
            return parts[0] if len(parts) == 1 else parts
        if vr not in _ASCII_VRS:
            return self.ds.get(keyword, default)
        text = raw.decode("ascii", "replace").strip(" \x00")
        if not text:
            return ""
        parts = [p.strip(" \x00") for p in text.split("\\")]
        try:
            if vr == "DS":
                values: list[Any] = [float(p) if p else None for p in parts]
            elif vr == "IS":
                values = [int(float(p)) if p else None for p in parts]
            else:
                values = parts
        except ValueError:
            return self.ds.get(keyword, default)  # let pydicom judge malformed numbers
        return values[0] if len(values) == 1 else values


@dataclass
class FrameGeometry:
    """Where one 2-D frame lies and how its stored values map to real values."""

    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None  # row cosines (3) + column cosines (3)
    pixel_spacing: tuple[float, float] | None = None  # (row spacing, column spacing) = (dy, dx)
    slope: float = 1.0
    intercept: float = 0.0
    slice_thickness: float | None = None
    # Keys that separate frames at the same position (echo, time, stack, acquisition).
    temporal_key: tuple[Any, ...] = ()


@dataclass
class InstanceRecord:
    """What one DICOM file holds, from its header."""

    path: str
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    series_number: int | None
    modality: str
    transfer_syntax: str
    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    planar_configuration: int
    image_type: tuple[str, ...]
    instance_number: int | None
    acquisition_number: int | None
    has_pixels: bool
    frame_geometry: list[FrameGeometry] = field(default_factory=list)
    window_center: float | None = None
    window_width: float | None = None
    gantry_tilt: float | None = None
    frame_time_ms: float | None = None
    mosaic_images: int | None = None
    pixel_offset: int | None = None  # offset of the Pixel Data value (native syntaxes only)
    pixel_length: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_localizer(self) -> bool:
        return any(t.upper() == "LOCALIZER" for t in self.image_type)

    @property
    def is_mosaic(self) -> bool:
        return self.mosaic_images is not None and self.frames == 1

    @property
    def is_enhanced(self) -> bool:
        """Multi-frame with a position for every frame (enhanced CT/MR, or per-frame groups)."""
        return self.frames > 1 and all(g.position is not None for g in self.frame_geometry)

    @property
    def transfer_syntax_name(self) -> str:
        try:
            return UID(self.transfer_syntax).name
        except Exception:  # pragma: no cover - pydicom always names known UIDs
            return self.transfer_syntax


@dataclass
class SeriesEntry:
    """One series of the index: its instances and a summary for listings."""

    study_instance_uid: str
    series_instance_uid: str
    series_number: int | None
    modality: str
    instances: list[InstanceRecord]
    split_by_number: bool = False

    @property
    def key(self) -> str:
        """Series Instance UID, or ``UID#number`` where one UID carries several Series Numbers."""
        if self.split_by_number:
            return f"{self.series_instance_uid}#{self.series_number}"
        return self.series_instance_uid

    @property
    def description(self) -> str:
        return str(self.instances[0].meta.get("series_description", ""))

    @property
    def transfer_syntaxes(self) -> list[str]:
        return sorted({r.transfer_syntax for r in self.instances})


@dataclass
class DicomIndex:
    """The result of indexing files: series (sorted by study, then series number) and errors."""

    series: list[SeriesEntry]
    errors: list[InputError]
    files_seen: int

    def find(self, series: str | None = None) -> SeriesEntry:
        """The one series in the index, or the one whose key or Series Instance UID is ``series``."""
        from ..errors import SeriesSelectionError

        candidates = self.series
        if series is not None:
            candidates = [s for s in self.series if series in (s.key, s.series_instance_uid)]
            if len(candidates) > 1:
                candidates = [s for s in candidates if s.key == series] or candidates
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            what = f"no series {series}" if series else "no readable DICOM image series"
            hint = "run `medimg info` to list the series" if series else None
            if not series and self.errors:
                hint = f"{len(self.errors)} file(s) could not be read, first: {self.errors[0]}"
            raise SeriesSelectionError(None, what, hint)
        keys = ", ".join(f"{s.key} ({s.modality}, {len(s.instances)} files)" for s in candidates)
        raise SeriesSelectionError(
            None,
            f"{len(candidates)} series found: {keys}",
            "choose one with series=UID (CLI: --series UID)",
        )


# ---------------------------------------------------------------------------------------- helpers
def _float(value: Any) -> float | None:
    try:
        if value is None or value == "":
            return None
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            value = value[0]
        f = float(value)
        return f if np.isfinite(f) else None
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    f = _float(value)
    return int(f) if f is not None else None


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(vals) != n or not all(np.isfinite(vals)):
        return None
    return vals


def _spacing(value: Any) -> tuple[float, float] | None:
    """A Pixel Spacing pair, or None where it is missing, malformed or not positive (some CR/DX
    exports write ``0\\0`` for "unknown")."""
    ps = _floats(value, 2)
    if ps is None or ps[0] <= 0 or ps[1] <= 0:
        return None
    return (ps[0], ps[1])


def _plain(value: Any) -> Any:
    """A DICOM value as a JSON-friendly Python value."""
    if isinstance(value, (pydicom.multival.MultiValue, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (pydicom.valuerep.DSfloat, pydicom.valuerep.DSdecimal)):
        return float(value)
    if isinstance(value, pydicom.valuerep.IS):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    return str(value)


def _geometry_from(item: Dataset | None, base: FrameGeometry) -> FrameGeometry:
    """Update ``base`` with a functional-groups item (per-frame or shared)."""
    if item is None:
        return base
    geo = FrameGeometry(**base.__dict__)
    pos_seq = item.get("PlanePositionSequence")
    if pos_seq:
        geo.position = _floats(pos_seq[0].get("ImagePositionPatient"), 3)  # type: ignore[assignment]
    ori_seq = item.get("PlaneOrientationSequence")
    if ori_seq:
        geo.orientation = _floats(ori_seq[0].get("ImageOrientationPatient"), 6)
    px_seq = item.get("PixelMeasuresSequence")
    if px_seq:
        ps = _spacing(px_seq[0].get("PixelSpacing"))
        if ps:
            geo.pixel_spacing = ps
        geo.slice_thickness = _float(px_seq[0].get("SliceThickness")) or geo.slice_thickness
    tr_seq = item.get("PixelValueTransformationSequence")
    if tr_seq:
        geo.slope = _float(tr_seq[0].get("RescaleSlope")) or 1.0
        geo.intercept = _float(tr_seq[0].get("RescaleIntercept")) or 0.0
    fc_seq = item.get("FrameContentSequence")
    if fc_seq:
        fc = fc_seq[0]
        idx = fc.get("DimensionIndexValues")
        stack = fc.get("StackID")
        temporal = fc.get("TemporalPositionIndex")
        key: list[Any] = []
        if stack is not None:
            key.append(("stack", str(stack)))
        if temporal is not None:
            key.append(("time", int(temporal)))
        if not key and idx is not None:
            vals = list(idx) if isinstance(idx, (list, pydicom.multival.MultiValue)) else [idx]
            key.append(("dim", tuple(int(v) for v in vals[:-1])))
        geo.temporal_key = tuple(key)
    return geo


_EXPLICIT_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                      b"UT", b"UV"}
_PIXEL_TAGS = {_PIXEL_DATA_TAG, 0x7FE00008, 0x7FE00009}  # Pixel Data, Float and Double Float Pixel Data
MAX_ENCAPSULATED_ITEMS = 1_000_000  # item headers checked per file (one seek each)
_ITEM_TAG = 0xFFFEE000
_SEQ_DELIMITER_TAG = 0xFFFEE0DD
DEFLATED_TRANSFER_SYNTAX = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN_TRANSFER_SYNTAX = "1.2.840.10008.1.2.2"


@dataclass
class PixelElement:
    """Where the pixel data element of a file lies, from its element header (and item headers)."""

    tag: int
    offset: int  # file offset of the value (of the first item, for encapsulated data)
    length: int | None  # value length; None for encapsulated (undefined length) data
    fragments: int = 0  # encapsulated: items after the Basic Offset Table
    end: int = 0  # encapsulated: file offset after the last item
    delimited: bool = True  # encapsulated: the Sequence Delimitation Item is present


def scan_pixel_element(fp: Any, ts: str, size: int) -> tuple[PixelElement | None, str | None]:
    """Read the pixel data element header at the current position of ``fp``.

    pydicom leaves the file positioned at the start of the Pixel Data element when it stops before
    pixels.  Returns ``(element, problem)``: ``element`` is None when the next element is not pixel
    data (or the file ends); ``problem`` says what is structurally wrong (data cut short, damaged
    fragment headers).  Encapsulated data is checked item header by item header, seeking over the
    fragments, so a truncated compressed file is found without reading its pixels.
    """
    start = fp.tell()
    big = ts == BIG_ENDIAN_TRANSFER_SYNTAX
    end_char = ">" if big else "<"
    head = fp.read(8)
    if len(head) < 4:
        return None, None
    group, elem = struct.unpack(end_char + "HH", head[:4])
    tag = group << 16 | elem
    if tag not in _PIXEL_TAGS:
        return None, None
    if len(head) < 8:
        return None, f"the file ends inside the header of the Pixel Data element at byte {start}"
    # Some writers encode the data set in implicit VR under an explicit-VR transfer syntax (pydicom
    # reads them); an explicit VR is two upper-case letters.
    explicit = ts != "1.2.840.10008.1.2" and head[4:5].isupper() and head[5:6].isupper()
    if not explicit:  # implicit VR: tag, 4-byte length
        (length,) = struct.unpack(end_char + "I", head[4:8])
        offset = start + 8
    elif head[4:6] in _EXPLICIT_LONG_VRS:
        ext = fp.read(4)
        if len(ext) < 4:
            return None, f"the file ends inside the header of the Pixel Data element at byte {start}"
        (length,) = struct.unpack(end_char + "I", ext)
        offset = start + 12
    else:  # a short-length VR (broken writers); 2-byte length
        (length,) = struct.unpack(end_char + "H", head[6:8])
        offset = start + 8
    if length != 0xFFFFFFFF:
        element = PixelElement(tag, offset, length)
        if offset + length > size:
            return element, (f"pixel data is truncated: the header declares {length} bytes but the "
                             f"file holds only {max(size - offset, 0)}")
        return element, None
    # Encapsulated: Basic Offset Table item, one or more fragment items, Sequence Delimitation Item.
    element = PixelElement(tag, offset, None)
    pos = offset
    items = 0
    while True:
        if items > MAX_ENCAPSULATED_ITEMS:  # stop checking; the decoder will judge the rest
            element.fragments = items - 1
            element.end = pos
            return element, None
        fp.seek(pos)
        item = fp.read(8)
        if len(item) == 0:
            element.delimited = False
            break
        if len(item) < 8:
            return element, (f"encapsulated pixel data is truncated: the file ends inside an item "
                             f"header at byte {pos}")
        group, elem, item_len = struct.unpack("<HHI", item)
        item_tag = group << 16 | elem
        if item_tag == _SEQ_DELIMITER_TAG:
            break
        if item_tag != _ITEM_TAG or item_len == 0xFFFFFFFF:
            return element, (f"encapsulated pixel data is damaged: expected an item at byte {pos}, "
                             f"found tag ({group:04X},{elem:04X})")
        if pos + 8 + item_len > size:
            return element, (f"encapsulated pixel data is truncated: fragment {items} needs "
                             f"{item_len} bytes from byte {pos + 8}, the file ends at byte {size}")
        items += 1
        pos += 8 + item_len
    element.fragments = max(items - 1, 0)
    element.end = pos
    if element.fragments == 0:
        return element, "encapsulated pixel data holds no compressed frame"
    return element, None


_SMALL_READ = 1 << 20  # reads up to this size need no bound (see BoundedFile)


class BoundedFile:
    """A read-only binary file whose reads never ask for more bytes than are left.

    pydicom reads an element value with one ``read(length)``; Python allocates the whole requested
    length first, so a corrupt or random 4-byte length (a non-DICOM file read with ``force``, a damaged
    header) would allocate up to 4 GiB for a file of a few kilobytes.  Capping each read of more than
    1 MiB at the bytes left in the file bounds memory by the file size (or 1 MiB).  Smaller reads (nearly
    all: one per header element) go straight to the file, which keeps header parsing as fast as on a
    plain file (the position check cost a third of the parse).
    """

    def __init__(self, path: str) -> None:
        self._fp = open(path, "rb")  # noqa: SIM115 - closed by close() / the context manager
        self.name = path
        self.size = os.fstat(self._fp.fileno()).st_size

    def read(self, n: int | None = -1) -> bytes:
        if n is not None and 0 <= n <= _SMALL_READ:
            return self._fp.read(n)
        left = max(self.size - self._fp.tell(), 0)
        if n is None or n < 0 or n > left:
            n = left
        return self._fp.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fp.seek(offset, whence)

    def tell(self) -> int:
        return self._fp.tell()

    def fileno(self) -> int:
        return self._fp.fileno()

    def close(self) -> None:
        self._fp.close()

    @property
    def closed(self) -> bool:
        return self._fp.closed

    def __enter__(self) -> BoundedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# A data set without the Part 10 preamble starts with an element of group 0002 (meta) or 0008
# (identifying), in either byte order.  Anything else is not parsed at all.
_BARE_DATASET_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


def read_record(path: str | os.PathLike[str]) -> InstanceRecord:
    """Read one file's header into an :class:`InstanceRecord`.

    Raises :class:`InputError` naming the file for anything that is not a readable DICOM image: empty,
    not DICOM, a header that cannot be parsed, an image whose pixel data is missing or cut short, an
    absurd image size.  DICOM objects that are not images (reports, plans, presentation states) give a
    record with ``has_pixels`` False.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise InputError(path, f"cannot open file ({exc.strerror})") from None
    if size == 0:
        raise InputError(path, "file is empty (0 bytes)", "re-export or re-send it")
    try:
        with BoundedFile(path) as fp, warnings.catch_warnings():
            # Read tolerantly: public files carry small standard violations (see docs/dicom.md).
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=_INDEXED_TAGS)
            except InvalidDicomError:
                # Files without the 128-byte preamble and 'DICM' (old ACR-NEMA style exports) are
                # still DICOM data sets; accept them only if they parse into a DICOM object.
                fp.seek(0)
                if fp.read(2) not in _BARE_DATASET_STARTS:
                    raise NotDicomError(
                        path, "not a DICOM file (no 'DICM' marker and it does not start like a "
                              "DICOM data set)"
                    ) from None
                fp.seek(0)
                try:
                    ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
                except Exception as exc:
                    msg = (f"not a DICOM file (no 'DICM' marker and it does not parse as a DICOM "
                           f"data set: {type(exc).__name__}: {exc})")
                    raise NotDicomError(path, msg) from None
                if not _looks_like_dicom_object(ds):
                    raise NotDicomError(
                        path, "not a DICOM file (no 'DICM' marker and no DICOM object in it)"
                    ) from None
            ts = str(getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID", "") or "")
            if not ts:
                # pydicom guesses the encoding of files without meta; record what it used.
                ts = (
                    "1.2.840.10008.1.2"
                    if ds.is_implicit_VR and ds.is_little_endian
                    else "1.2.840.10008.1.2.1"
                    if ds.is_little_endian
                    else BIG_ENDIAN_TRANSFER_SYNTAX
                )
            if ts == DEFLATED_TRANSFER_SYNTAX:
                # The data set is compressed as a whole: file offsets mean nothing; decoding checks.
                element, problem, at_eof = None, None, False
                with BoundedFile(path) as whole:
                    deflated_pixels = "PixelData" in pydicom.dcmread(whole, force=True)
            else:
                element, problem = scan_pixel_element(fp, ts, size)
                at_eof = element is None and fp.tell() >= size
                deflated_pixels = False
    except InputError:
        raise
    except Exception as exc:  # pydicom raises many types for broken files
        raise InputError(path, f"unreadable DICOM header, truncated or damaged "
                               f"({type(exc).__name__}: {exc})",
                         "re-export or re-send it") from None
    if problem:
        raise InputError(path, problem, "re-export or re-send it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _record_from_dataset(path, ds, ts, element, deflated_pixels, at_eof)
    except InputError:
        raise
    except Exception as exc:  # sequences are parsed lazily, when first used
        raise InputError(path, f"damaged DICOM header ({type(exc).__name__}: {exc})",
                         "the file is damaged; re-export or re-send it") from None


def _looks_like_dicom_object(ds: Dataset) -> bool:
    """Whether a data set read with ``force`` is a DICOM object rather than bytes of another file."""
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class and all(part.isdigit() for part in sop_class.split(".")):
        return True
    return "Rows" in ds and "SOPInstanceUID" in ds


def _sop_class(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = str(ds.get("SOPClassUID", "") or "")
    if not uid and meta is not None:
        uid = str(meta.get("MediaStorageSOPClassUID", "") or "")
    return uid.strip()


def _record_from_dataset(
    path: str, ds: Dataset, ts: str, element: PixelElement | None, deflated_pixels: bool,
    at_eof: bool,
) -> InstanceRecord:
    h = _FastHeader(ds)
    rows = _int(h.get("Rows")) or 0
    cols = _int(h.get("Columns")) or 0
    samples = _int(h.get("SamplesPerPixel")) or 1
    bits_allocated = _int(h.get("BitsAllocated")) or 0
    photometric = str(h.get("PhotometricInterpretation", "")).strip().upper()
    frames = _frame_count(path, ds, element, rows, cols, samples, bits_allocated, photometric)
    if rows and cols and rows * cols * frames * samples > MAX_VOXELS:
        raise InputError(
            path,
            f"absurd image size {rows} x {cols} x {frames} frames x {samples} samples "
            f"(more than {MAX_VOXELS} values)",
            "the header is corrupt; this file is skipped",
        )
    has_element = element is not None or deflated_pixels
    if has_element and (rows <= 0 or cols <= 0):
        msg = (f"has Pixel Data but no valid image size (Rows {h.get('Rows', 'missing')}, "
               f"Columns {h.get('Columns', 'missing')})")
        raise InputError(path, msg, "the header is incomplete or damaged; it cannot be read as an image")
    if rows > 0 and cols > 0 and not has_element:
        problem = ("has an image header but the file ends before any Pixel Data: it is truncated, "
                   "or a damaged length in its header runs over the pixel data" if at_eof
                   else "has an image header (Rows x Columns) but no Pixel Data element")
        raise InputError(path, problem, "re-export or re-send it")
    if has_element:
        _check_pixel_description(path, ds, samples, bits_allocated, photometric)
    if not has_element:
        sop_class = _sop_class(ds)
        if not sop_class:
            msg = "has no SOP Class UID and no image: an incomplete DICOM object (truncated or damaged?)"
            raise InputError(path, msg, "re-export or re-send it")
        name = str(UID(sop_class).name) if UID(sop_class).is_valid else sop_class
        if "Image Storage" in name:
            msg = f"is a {name} object without an image header or pixel data: truncated or damaged"
            raise InputError(path, msg, "re-export or re-send it")
    if element is not None and element.length is not None and bits_allocated:
        per_pixel = 2 if (photometric == "YBR_FULL_422" and samples == 3) else samples
        expected = (rows * cols * frames * per_pixel * bits_allocated + 7) // 8
        if element.length < expected:
            msg = (f"pixel data is {element.length} bytes, expected {expected} (Rows {rows} x "
                   f"Columns {cols} x Frames {frames} x {samples} samples x {bits_allocated} bits): "
                   f"the file is truncated or its header is wrong")
            raise InputError(path, msg, "re-export or re-send it")
    native = element is not None and element.tag == _PIXEL_DATA_TAG and ts in NATIVE_TRANSFER_SYNTAXES
    offset = element.offset if native and element is not None else None
    length = element.length if native and element is not None else None
    image_type = tuple(str(v).upper() for v in (h.get("ImageType") or []))
    base = FrameGeometry(
        position=_floats(h.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        orientation=_floats(h.get("ImageOrientationPatient"), 6),
        pixel_spacing=None,
        slope=_float(h.get("RescaleSlope")) or 1.0,
        intercept=_float(h.get("RescaleIntercept")) or 0.0,
        slice_thickness=_float(h.get("SliceThickness")),
    )
    ps = _spacing(h.get("PixelSpacing")) or _spacing(h.get("ImagerPixelSpacing"))
    if ps:
        base.pixel_spacing = ps
    echo = _int(h.get("EchoNumbers"))
    temporal = _int(h.get("TemporalPositionIdentifier"))
    key: list[Any] = []
    if echo is not None:
        key.append(("echo", echo))
    if temporal is not None:
        key.append(("time", temporal))
    base.temporal_key = tuple(key)

    geometry: list[FrameGeometry] = []
    per_frame = h.get("PerFrameFunctionalGroupsSequence")
    shared = h.get("SharedFunctionalGroupsSequence")
    if per_frame is not None or shared is not None:
        shared_geo = _geometry_from(shared[0] if shared else None, base)
        if per_frame:
            geometry = [_geometry_from(item, shared_geo) for item in per_frame]
        else:
            geometry = [shared_geo] * frames
        if len(geometry) != frames:
            geometry = [shared_geo] * frames
    else:
        geometry = [base] * frames if frames > 1 and base.position is None else [base]
        if frames > 1 and base.position is not None:
            # A legacy multi-frame with one position (e.g. NM, some US): frames are not placed.
            geometry = [FrameGeometry(**{**base.__dict__, "position": None})] * frames

    mosaic = None
    if "MOSAIC" in image_type:
        mosaic = _int(ds.get((0x0019, 0x100A)).value) if (0x0019, 0x100A) in ds else None
        mosaic = mosaic or 0  # 0: a mosaic whose tile count has to come from the CSA header

    wc = h.get("WindowCenter")
    ww = h.get("WindowWidth")
    meta: dict[str, Any] = {}
    for kw, key_name in _META_KEYWORDS.items():
        val = h.get(kw)
        if val not in (None, ""):
            with contextlib.suppress(Exception):  # odd values are simply not copied
                meta[key_name] = _plain(val)
    if _spacing(h.get("PixelSpacing")) is None and _spacing(h.get("ImagerPixelSpacing")):
        meta["pixel_spacing_source"] = "ImagerPixelSpacing (at the detector, not corrected for magnification)"

    return InstanceRecord(
        path=path,
        sop_instance_uid=str(h.get("SOPInstanceUID", "")),
        sop_class_uid=str(h.get("SOPClassUID", "")),
        study_instance_uid=str(h.get("StudyInstanceUID", "")),
        series_instance_uid=str(h.get("SeriesInstanceUID", "")),
        series_number=_int(h.get("SeriesNumber")),
        modality=str(h.get("Modality", "OT") or "OT"),
        transfer_syntax=ts,
        rows=rows,
        columns=cols,
        frames=frames,
        samples_per_pixel=samples,
        bits_allocated=bits_allocated,
        bits_stored=_int(h.get("BitsStored")) or _int(h.get("BitsAllocated")) or 0,
        pixel_representation=_int(h.get("PixelRepresentation")) or 0,
        photometric=photometric,
        planar_configuration=_int(h.get("PlanarConfiguration")) or 0,
        image_type=image_type,
        instance_number=_int(h.get("InstanceNumber")),
        acquisition_number=_int(h.get("AcquisitionNumber")),
        has_pixels=has_element and rows > 0 and cols > 0,
        frame_geometry=geometry,
        window_center=_float(wc),
        window_width=_float(ww),
        gantry_tilt=_float(h.get("GantryDetectorTilt")),
        frame_time_ms=_float(h.get("FrameTime")),
        mosaic_images=mosaic,
        pixel_offset=offset,
        pixel_length=length,
        meta=meta,
    )


_COLOUR_PHOTOMETRIC = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"}


def _check_pixel_description(path: str, ds: Dataset, samples: int, bits_allocated: int,
                             photometric: str) -> None:
    """Refuse, from the header, pixel descriptions no decoder can honour (so a folder scan lists the
    file as an error instead of failing later when its series is loaded)."""
    problem = None
    bits_stored = _int(ds.get("BitsStored"))
    representation = _int(ds.get("PixelRepresentation")) or 0
    if bits_allocated != 1 and not (bits_allocated % 8 == 0 and 8 <= bits_allocated <= 64):
        problem = f"Bits Allocated {ds.get('BitsAllocated', 'missing')} is not 1 or 8, 16, 32, 64"
    elif bits_stored is not None and not 1 <= bits_stored <= bits_allocated:
        problem = f"Bits Stored {bits_stored} does not fit Bits Allocated {bits_allocated}"
    elif representation not in (0, 1):
        problem = f"Pixel Representation {representation} is neither 0 (unsigned) nor 1 (signed)"
    elif samples not in (1, 3):
        problem = f"Samples per Pixel {samples} is not supported (only 1 or 3)"
    elif samples == 3 and photometric not in _COLOUR_PHOTOMETRIC:
        problem = f"unsupported photometric interpretation {photometric!r} for 3 samples per pixel"
    elif samples == 1 and photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", ""):
        problem = f"unsupported photometric interpretation {photometric!r} for 1 sample per pixel"
    if problem:
        raise InputError(path, problem, "the header is damaged or the image type is not supported")


def _frame_count(path: str, ds: Dataset, element: PixelElement | None, rows: int, cols: int,
                 samples: int, bits_allocated: int, photometric: str) -> int:
    """Number of Frames, or 1 where absent.  A value that is not a positive number is replaced by
    what native pixel data holds when that is a whole number of frames, and refused otherwise."""
    raw = ds.get("NumberOfFrames")
    if raw is None or str(raw).strip() == "":
        return 1
    frames = _int(raw)
    if frames is not None and frames >= 1 and float(_float(raw) or 0).is_integer():
        return frames
    if element is not None and element.length and rows and cols and bits_allocated:
        per_pixel = 2 if (photometric == "YBR_FULL_422" and samples == 3) else samples
        frame_bytes = rows * cols * per_pixel * bits_allocated // 8
        if frame_bytes and element.length >= frame_bytes and element.length % frame_bytes in (0, 1):
            return element.length // frame_bytes
    msg = f"Number of Frames {str(raw)!r} is not a positive whole number"
    raise InputError(path, msg, "the header is damaged; re-export or re-send it")


def iter_files(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """All regular files under the given files and folders (recursively, hidden files skipped)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[str] = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(
                    os.path.join(root, f) for f in sorted(files) if not f.startswith(".")
                )
        elif os.path.exists(p):
            out.append(p)
        else:
            raise InputError(p, "no such file or folder")
    return out


def _safe_record(path: str) -> InstanceRecord | InputError:
    try:
        return read_record(path)
    except InputError as exc:
        return exc


# Below this many files the header index runs in this process: forking workers (tens of ms once
# torch is loaded) and sending records back costs more than it saves (measured in
# benchmarks/series_load.py: 64 CT files index faster with one worker).
_PARALLEL_MIN_FILES = 200


def _map_records(files: list[str], workers: int | None) -> Iterable[InstanceRecord | InputError]:
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    if n_workers <= 1 or len(files) < _PARALLEL_MIN_FILES:
        return map(_safe_record, files)
    # This process reads the first share itself while n_workers - 1 forked workers read the rest: one
    # process fewer to fork (a fork costs tens of ms once torch is loaded) and fewer records to send.
    own = len(files) // n_workers
    rest = files[own:]
    chunk = max(8, len(rest) // (n_workers * 4))
    pool = ProcessPoolExecutor(max_workers=n_workers - 1, mp_context=get_context("fork"))

    def gen() -> Iterable[InstanceRecord | InputError]:
        with pool:
            futures = pool.map(_safe_record, rest, chunksize=chunk)
            yield from map(_safe_record, files[:own])
            yield from futures

    return gen()


def index_paths(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DicomIndex:
    """Index files and folders from headers only and group the images into series.

    Files that are not DICOM, or are DICOM without pixel data (reports, presentation states), are not
    series; unreadable files are listed in ``errors``.  Series are keyed by Study Instance UID, Series
    Instance UID and Series Number (some tools re-number copies of one series without new UIDs).
    """
    files = iter_files(paths)
    groups: dict[tuple[str, str, int | None], list[InstanceRecord]] = {}
    errors: list[InputError] = []
    for i, res in enumerate(_map_records(files, workers), start=1):
        if isinstance(res, InputError):
            errors.append(res)
        elif res.has_pixels:
            key = (res.study_instance_uid, res.series_instance_uid, res.series_number)
            groups.setdefault(key, []).append(res)
        if progress is not None:
            progress(i, len(files))
    numbers_per_uid: dict[str, int] = {}
    for (_, uid, _) in groups:
        numbers_per_uid[uid] = numbers_per_uid.get(uid, 0) + 1
    series: list[SeriesEntry] = []
    for (study, uid, number), records in groups.items():
        series.append(
            SeriesEntry(study, uid, number, records[0].modality, records, numbers_per_uid[uid] > 1)
        )
    series.sort(key=lambda s: (s.study_instance_uid, s.series_number or 0, s.series_instance_uid))
    return DicomIndex(series=series, errors=errors, files_seen=len(files))

