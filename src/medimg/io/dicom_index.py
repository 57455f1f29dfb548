"""Index DICOM files from their headers only: one :class:`InstanceRecord` per file, grouped into series.

Headers are read with ``stop_before_pixels``; the file offset of the Pixel Data element is kept so native
(uncompressed) pixels can later be read without parsing the header again.  Unreadable files become
:class:`~medimg.errors.InputError` entries in :attr:`DicomIndex.errors`; they never stop the rest.
"""

from __future__ import annotations

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
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from ..errors import InputError, NotDicomError

__all__ = [
    "DicomIndex",
    "FrameGeometry",
    "InstanceRecord",
    "SeriesEntry",
    "index_paths",
    "iter_files",
    "read_record",
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


def _plain(value: Any) -> Any:
    """A DICOM value as a JSON-friendly Python value."""
    if isinstance(value, pydicom.multival.MultiValue):
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
        ps = _floats(px_seq[0].get("PixelSpacing"), 2)
        if ps:
            geo.pixel_spacing = (ps[0], ps[1])
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


def _pixel_element_location(fp: Any, ds: Dataset, ts: str) -> tuple[int | None, int | None]:
    """Offset and length of the native Pixel Data value, read right after ``stop_before_pixels``.

    pydicom leaves the file positioned at the start of the Pixel Data element when it stops.  Only the
    element header is read here (tag, VR, length); anything unexpected returns ``(None, None)`` and the
    pixels are read through pydicom instead.
    """
    if ts not in NATIVE_TRANSFER_SYNTAXES:
        return None, None
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return None, None
    group, elem = struct.unpack("<HH", head[:4])
    if (group << 16 | elem) != _PIXEL_DATA_TAG:
        return None, None
    if ts == "1.2.840.10008.1.2":  # implicit VR: tag, 4-byte length
        (length,) = struct.unpack("<I", head[4:8])
        offset = start + 8
    else:
        vr = head[4:6]
        if vr not in (b"OB", b"OW", b"UN", b"OV"):
            return None, None
        (length,) = struct.unpack("<I", head[8:12])
        offset = start + 12
    if length == 0xFFFFFFFF:  # undefined length is only legal for encapsulated data
        return None, None
    return offset, length


def read_record(path: str | os.PathLike[str]) -> InstanceRecord:
    """Read one file's header into an :class:`InstanceRecord`.

    Raises :class:`InputError` naming the file for anything that is not a readable DICOM image.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise InputError(path, f"cannot open file ({exc.strerror})") from None
    if size == 0:
        raise InputError(path, "file is empty (0 bytes)", "re-export or re-send it")
    try:
        with open(path, "rb") as fp, warnings.catch_warnings():
            # Read tolerantly: public files carry small standard violations (see docs/dicom.md).
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True)
            except InvalidDicomError:
                # Files without the 128-byte preamble and 'DICM' (old ACR-NEMA style exports) are
                # still DICOM data sets; accept them only if they parse and describe an image.
                fp.seek(0)
                ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
                if "Rows" not in ds or "SOPInstanceUID" not in ds:
                    raise NotDicomError(
                        path, "not a DICOM file (no 'DICM' marker and no image attributes)"
                    ) from None
            ts = str(getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID", ""))
            if not ts:
                # pydicom guesses the encoding of files without meta; record what it used.
                ts = (
                    "1.2.840.10008.1.2"
                    if ds.is_implicit_VR and ds.is_little_endian
                    else "1.2.840.10008.1.2.1"
                    if ds.is_little_endian
                    else "1.2.840.10008.1.2.2"
                )
            offset, length = _pixel_element_location(fp, ds, ts)
            has_pixels = offset is not None or _has_pixel_element(fp)
    except InputError:
        raise
    except Exception as exc:  # pydicom raises many types for broken files
        raise InputError(path, f"unreadable DICOM header ({type(exc).__name__}: {exc})",
                         "the file is damaged or not DICOM") from None
    return _record_from_dataset(path, ds, ts, offset, length, has_pixels)


def _has_pixel_element(fp: Any) -> bool:
    """Whether the next element in the file is a pixel data element (native or encapsulated)."""
    head = fp.read(4)
    if len(head) < 4:
        return False
    group, elem = struct.unpack("<HH", head)
    big_group, big_elem = struct.unpack(">HH", head)
    tags = {(group << 16) | elem, (big_group << 16) | big_elem}
    return bool(tags & {_PIXEL_DATA_TAG, 0x7FE00008, 0x7FE00009})


def _record_from_dataset(
    path: str, ds: Dataset, ts: str, offset: int | None, length: int | None, has_pixels: bool
) -> InstanceRecord:
    rows = _int(ds.get("Rows")) or 0
    cols = _int(ds.get("Columns")) or 0
    frames = _int(ds.get("NumberOfFrames")) or 1
    samples = _int(ds.get("SamplesPerPixel")) or 1
    if rows and cols and rows * cols * frames * samples > MAX_VOXELS:
        raise InputError(
            path,
            f"absurd image size {rows} x {cols} x {frames} frames x {samples} samples "
            f"(more than {MAX_VOXELS} values)",
            "the header is corrupt; this file is skipped",
        )
    image_type = tuple(str(v).upper() for v in (ds.get("ImageType") or []))
    base = FrameGeometry(
        position=_floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=None,
        slope=_float(ds.get("RescaleSlope")) or 1.0,
        intercept=_float(ds.get("RescaleIntercept")) or 0.0,
        slice_thickness=_float(ds.get("SliceThickness")),
    )
    ps = _floats(ds.get("PixelSpacing"), 2) or _floats(ds.get("ImagerPixelSpacing"), 2)
    if ps:
        base.pixel_spacing = (ps[0], ps[1])
    echo = _int(ds.get("EchoNumbers"))
    temporal = _int(ds.get("TemporalPositionIdentifier"))
    key: list[Any] = []
    if echo is not None:
        key.append(("echo", echo))
    if temporal is not None:
        key.append(("time", temporal))
    base.temporal_key = tuple(key)

    geometry: list[FrameGeometry] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
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

    wc = ds.get("WindowCenter")
    ww = ds.get("WindowWidth")
    meta: dict[str, Any] = {}
    for kw, key_name in _META_KEYWORDS.items():
        val = ds.get(kw)
        if val not in (None, ""):
            try:
                meta[key_name] = _plain(val)
            except Exception:  # pragma: no cover - odd values are simply not copied
                pass
    if "PixelSpacing" not in ds and "ImagerPixelSpacing" in ds:
        meta["pixel_spacing_source"] = "ImagerPixelSpacing (at the detector, not corrected for magnification)"

    return InstanceRecord(
        path=path,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        sop_class_uid=str(ds.get("SOPClassUID", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        series_number=_int(ds.get("SeriesNumber")),
        modality=str(ds.get("Modality", "OT") or "OT"),
        transfer_syntax=ts,
        rows=rows,
        columns=cols,
        frames=frames,
        samples_per_pixel=samples,
        bits_allocated=_int(ds.get("BitsAllocated")) or 0,
        bits_stored=_int(ds.get("BitsStored")) or _int(ds.get("BitsAllocated")) or 0,
        pixel_representation=_int(ds.get("PixelRepresentation")) or 0,
        photometric=str(ds.get("PhotometricInterpretation", "")).strip().upper(),
        planar_configuration=_int(ds.get("PlanarConfiguration")) or 0,
        image_type=image_type,
        instance_number=_int(ds.get("InstanceNumber")),
        acquisition_number=_int(ds.get("AcquisitionNumber")),
        has_pixels=has_pixels and rows > 0 and cols > 0,
        frame_geometry=geometry,
        window_center=_float(wc),
        window_width=_float(ww),
        gantry_tilt=_float(ds.get("GantryDetectorTilt")),
        frame_time_ms=_float(ds.get("FrameTime")),
        mosaic_images=mosaic,
        pixel_offset=offset,
        pixel_length=length,
        meta=meta,
    )


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


_PARALLEL_MIN_FILES = 48


def _map_records(files: list[str], workers: int | None) -> Iterable[InstanceRecord | InputError]:
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    if n_workers <= 1 or len(files) < _PARALLEL_MIN_FILES:
        return map(_safe_record, files)
    chunk = max(8, len(files) // (n_workers * 4))
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=get_context("fork"))

    def gen() -> Iterable[InstanceRecord | InputError]:
        with pool:
            yield from pool.map(_safe_record, files, chunksize=chunk)

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

