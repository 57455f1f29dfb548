"""What the DICOM writers (SR, SEG) share: checked source headers, codes, UIDs, equipment.

Strict when writing: public files carry small violations (PITFALLS: a Referenced Study Sequence item
without its SOP Class UID, retired name forms, malformed dates), and highdicom copies the Patient and
Study modules of the first source image verbatim.  So the writers never hand highdicom the source
files' own headers: :func:`clean_header` builds a new dataset holding only the attributes listed in
``_KEEP``, each checked against its value representation (and enumerated values where the standard
has them) and dropped -- or emptied when it is Type 2 -- if it fails.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code as PydicomCode

from ..image import Image
from .model import Code, Finding, Structure

__all__ = [
    "DEVICE",
    "DicomContext",
    "SourceFrames",
    "clean_header",
    "finding_codes",
    "load_sources",
    "measurement_concept",
    "structure_codes",
    "to_code",
    "unit_code",
]


@dataclass(frozen=True)
class Device:
    manufacturer: str = "medimg"
    model_name: str = "medimg"
    serial_number: str = "0"


DEVICE = Device()

# Attributes copied from a source header (after checking); Type 2 ones are always present, maybe empty.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")
_KEEP = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "Modality", "SeriesNumber", "InstanceNumber", "FrameOfReferenceUID", "PositionReferenceIndicator",
    *_TYPE2, "StudyDescription", "PatientAge", "PatientSize", "PatientWeight",
    "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "AcquisitionDate", "AcquisitionTime",
    "Rows", "Columns", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient",
    "SliceThickness", "SpacingBetweenSlices", "BodyPartExamined", "PatientPosition",
)
_ENUMS = {"PatientSex": {"M", "F", "O"}}
_POSITIVE = {"SliceThickness", "SpacingBetweenSlices", "PatientSize", "PatientWeight"}
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def _vm_ok(keyword: str, n: int) -> bool:
    vm = pydicom.datadict.dictionary_VM(keyword)
    if vm in ("1-n", "1-N"):
        return n >= 1
    if "-" in vm:
        lo, hi = vm.split("-")
        return int(lo) <= n and (hi in ("n", "N") or n <= int(hi))
    return n == int(vm)


def _valid(keyword: str, elem: pydicom.DataElement) -> bool:
    if elem.VR == "SQ":
        return False  # no sequences are copied
    value = elem.value
    items = list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]
    if not _vm_ok(keyword, len(items)):
        return False
    for item in items:
        raw = str(item) if elem.VR in ("IS", "DS") else item
        try:
            pydicom.valuerep.validate_value(elem.VR, raw, pydicom.config.RAISE)
        except (ValueError, TypeError):
            return False
        if elem.VR == "UI" and not (isinstance(item, str) and len(item) <= 64 and _UID.match(item)):
            return False
        if keyword in _ENUMS and item not in _ENUMS[keyword]:
            return False
        if keyword in _POSITIVE and not float(item) > 0:
            return False
        if elem.VR == "PN":
            text = str(item)
            # At most 5 components per group, 3 groups; no control characters.
            if any(g.count("^") > 4 for g in text.split("=")) or text.count("=") > 2 or \
                    any(ord(ch) < 32 for ch in text):
                return False
    return True


def clean_header(ds: Dataset) -> Dataset:
    """A new dataset with the ``_KEEP`` attributes of ``ds`` that pass their checks."""
    out = Dataset()
    for keyword in _KEEP:
        if keyword not in ds:
            if keyword in _TYPE2:
                setattr(out, keyword, "")
            continue
        elem = ds[keyword]
        if elem.value is None or elem.value == "":
            if keyword in _TYPE2:
                setattr(out, keyword, "")
            continue
        if _valid(keyword, elem):
            value = elem.value
            if elem.VR == "PN" and "^" not in str(value) and "=" not in str(value):
                # A one-component name is a family name; the trailing caret says so (PS3.5 6.2.1.2).
                value = f"{value}^"
            out.add_new(elem.tag, elem.VR, value)
        elif keyword in _TYPE2:
            setattr(out, keyword, "")
    return out


@dataclass
class SourceFrames:
    """The checked headers of the source images, one per z plane of the analysed image (in z order)."""

    headers: list[Dataset]
    aligned: bool  # True: plane z of the image *is* source frame z (same rows, columns, geometry)
    why_not_aligned: str = ""

    @property
    def first(self) -> Dataset:
        return self.headers[0]


def load_sources(image: Image, fmt: str) -> SourceFrames:
    """Read and check the headers of the DICOM files ``image`` was read from.

    Raises ``ValueError`` (one line naming ``fmt``) when the image does not come from DICOM files.
    """
    paths = image.meta.get("source_paths") or []
    uids = image.meta.get("sop_instance_uids") or []
    if not paths or not uids:
        msg = (f"{fmt}: the image carries no meta['source_paths'] / meta['sop_instance_uids']; DICOM "
               "outputs reference the source images, so read the series with medimg.read from DICOM")
        raise ValueError(msg)
    by_uid: dict[str, Dataset] = {}
    ds: Dataset
    for p in paths:
        try:
            ds = pydicom.dcmread(Path(p), stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            msg = f"{fmt}: cannot read the source file {p} ({exc}); DICOM outputs need the source files in place"
            raise ValueError(msg) from None
        by_uid[str(ds.SOPInstanceUID)] = ds
    missing = [u for u in uids if u not in by_uid]
    if missing:
        msg = (f"{fmt}: {len(missing)} SOP Instance UID(s) of the image are not among its source files "
               f"(first {missing[0]}); the image meta does not match the files")
        raise ValueError(msg)
    raw = [by_uid[u] for u in uids]
    headers = [clean_header(ds) for ds in raw]
    for h, ds in zip(headers, raw, strict=True):
        for key in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            if key not in h:
                msg = f"{fmt}: source file of {ds.get('SOPInstanceUID', '?')} has an invalid {key}; cannot reference it"
                raise ValueError(msg)
        if "FrameOfReferenceUID" not in h:
            msg = f"{fmt}: source image {h.SOPInstanceUID} has no valid Frame of Reference UID; cannot place outputs"
            raise ValueError(msg)
    aligned, why = _check_alignment(image, raw)
    return SourceFrames(headers=headers, aligned=aligned, why_not_aligned=why)


def _check_alignment(image: Image, raw: Sequence[Dataset]) -> tuple[bool, str]:
    nz, ny, nx = image.spatial_shape
    if len(raw) != nz:
        return False, f"{len(raw)} source images for {nz} planes"
    row_dir = image.direction[:, 2]  # along a row: the x (column index) axis
    col_dir = image.direction[:, 1]
    tol = 1e-3 * float(min(image.spacing))
    for z, ds in enumerate(raw):
        try:
            rows, cols = int(ds.Rows), int(ds.Columns)
            iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
            ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
            ps = np.asarray(ds.PixelSpacing, dtype=float)
        except (AttributeError, TypeError, ValueError):
            return False, f"plane {z} lacks geometry attributes"
        if (rows, cols) != (ny, nx):
            return False, f"plane {z} is {rows}x{cols}, the image {ny}x{nx}"
        if not (np.allclose(iop[:3], row_dir, atol=1e-4) and np.allclose(iop[3:], col_dir, atol=1e-4)):
            return False, f"plane {z} orientation differs"
        if not np.allclose(ps, image.spacing[1:], atol=tol):
            return False, f"plane {z} pixel spacing differs"
        if not np.allclose(ipp, image.index_to_patient([z, 0, 0]), atol=max(tol, 1e-3)):
            return False, f"plane {z} position differs"
    return True, ""


# ------------------------------------------------------------------ codes
def to_code(code: Code) -> PydicomCode:
    return PydicomCode(code.value, code.scheme, code.meaning)


SCT_LUNG = Code("39607008", "SCT", "Lung")
SCT_LEFT = Code("7771000", "SCT", "Left")
SCT_RIGHT = Code("24028007", "SCT", "Right")
SCT_ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")
SCT_ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically Abnormal Structure")
SCT_LESION = Code("52988006", "SCT", "Lesion")

# Combined "side + organ" concepts -> (organ, laterality), the form DICOM segment types prefer.
_SIDED = {
    "44029006": (SCT_LUNG, SCT_LEFT),  # Left lung structure
    "3341006": (SCT_LUNG, SCT_RIGHT),  # Right lung structure
}
_STRUCTURE_BY_NAME = {
    "lung": SCT_LUNG, "lungs": SCT_LUNG, "lung_left": SCT_LUNG, "lung_right": SCT_LUNG,
    "left_lung": SCT_LUNG, "right_lung": SCT_LUNG,
    "airways": Code("89187006", "SCT", "Airway structure"),
    "trachea": Code("44567001", "SCT", "Trachea"),
    "body": Code("38266002", "SCT", "Entire body"),
}
_FINDING_BY_KIND = {
    "nodule": Code("27925004", "SCT", "Nodule"),
    "mass": Code("4147007", "SCT", "Mass"),
    "lesion": SCT_LESION,
}


def _side(words: str | None) -> Code | None:
    w = (words or "").lower()
    if re.search(r"(^|[_\s])left($|[_\s])", w):
        return SCT_LEFT
    if re.search(r"(^|[_\s])right($|[_\s])", w):
        return SCT_RIGHT
    return None


def structure_codes(s: Structure) -> tuple[Code, Code | None]:
    """(segmented property type, laterality modifier or None) of an anatomical structure."""
    if s.code is not None and s.code.value in _SIDED and s.code.scheme == "SCT":
        return _SIDED[s.code.value]
    base = s.code or _STRUCTURE_BY_NAME.get(s.name.lower(), SCT_ANATOMICAL_STRUCTURE)
    return base, _side(s.name)


def finding_codes(f: Finding) -> tuple[Code, Code | None]:
    """(finding type, laterality of its site or None)."""
    base = f.code or _FINDING_BY_KIND.get(f.kind.lower(), SCT_LESION)
    return base, _side(f.location.side)


def finding_site(f: Finding) -> Code:
    """The anatomic site of a finding: its location's structure when known (lung by default)."""
    words = (f.location.structure or "lung").lower()
    return _STRUCTURE_BY_NAME.get(words, SCT_LUNG)


# Measurement names -> (concept, derivation or None); a measurement's own code wins.
_MEASUREMENTS: dict[str, tuple[Code, Code | None]] = {
    "long_axis_diameter": (Code("103339001", "SCT", "Long axis"), None),
    "short_axis_diameter": (Code("103340004", "SCT", "Short axis"), None),
    "diameter": (Code("81827009", "SCT", "Diameter"), None),
    "volume": (Code("118565006", "SCT", "Volume"), None),
    "mean_diameter": (Code("81827009", "SCT", "Diameter"), Code("373098007", "SCT", "Mean")),
    "mean_hu": (Code("112031", "DCM", "Attenuation Coefficient"), Code("373098007", "SCT", "Mean")),
    "max_hu": (Code("112031", "DCM", "Attenuation Coefficient"), Code("56851009", "SCT", "Maximum")),
    "min_hu": (Code("112031", "DCM", "Attenuation Coefficient"), Code("255605001", "SCT", "Minimum")),
    "std_hu": (Code("112031", "DCM", "Attenuation Coefficient"),
               Code("386136009", "SCT", "Standard Deviation")),
}
LOCAL_SCHEME = "99MEDIMG"

_UNITS = {"mm": "millimeter", "mm2": "square millimeter", "mm3": "cubic millimeter", "mL": "milliliter",
          "cm3": "cubic centimeter", "L": "liter", "[hnsf'U]": "Hounsfield unit", "1": "no units",
          "%": "percent", "d": "day"}


def measurement_concept(name: str, code: Code | None) -> tuple[Code, Code | None]:
    """(concept name, derivation) for a measurement; unknown names get a local ``99MEDIMG`` code."""
    if name in _MEASUREMENTS and (code is None or code == _MEASUREMENTS[name][0]):
        return _MEASUREMENTS[name]
    if code is not None:
        return code, None
    return Code(name[:16], LOCAL_SCHEME, name.replace("_", " ")), None


def unit_code(unit: str) -> Code:
    """The UCUM unit as a code (``[hnsf'U]`` for HU)."""
    return Code(unit, "UCUM", _UNITS.get(unit, unit))


# ------------------------------------------------------------------ identities
@dataclass
class DicomContext:
    """UIDs shared by SEG and SR so that the SR can point at the SEG's segments."""

    seg_series_uid: str = ""
    seg_sop_uid: str = ""
    sr_series_uid: str = ""
    sr_sop_uid: str = ""
    tracking_uids: dict[str, str] = field(default_factory=dict)  # "structure:<name>" / "finding:<id>"
    seg_series_number: int = 990
    sr_series_number: int = 991

    @classmethod
    def new(cls, keys: Sequence[str]) -> DicomContext:
        from highdicom import UID

        return cls(seg_series_uid=str(UID()), seg_sop_uid=str(UID()), sr_series_uid=str(UID()),
                   sr_sop_uid=str(UID()), tracking_uids={k: str(UID()) for k in keys})


def tracking_keys(structures: Sequence[Structure], findings: Sequence[Finding]) -> list[str]:
    return [f"structure:{s.name}" for s in structures] + [f"finding:{f.id}" for f in findings]


def short(text: str, limit: int = 64) -> str:
    """Fit a LO value (64 characters), without backslashes or control characters."""
    clean = "".join(ch for ch in text if ch >= " " and ch != "\\")
    return clean[:limit]


def medimg_version() -> str:
    from .. import __version__

    return __version__


def algorithm_parameters(params: dict[str, Any]) -> dict[str, str]:
    """Provenance parameters as the short strings DICOM algorithm identification holds."""
    return {short(str(k), 64): short(str(v), 64) for k, v in params.items()}
