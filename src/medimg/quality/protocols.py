"""What each acquisition protocol needs from an image, for :func:`medimg.quality.assess`.

These are quality requirements only (modality, a volume or not, slices, body part); the clinical
protocols that analyse images live in ``medimg.protocols``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BODY_PART_TERMS", "PROTOCOLS", "Requirements", "body_part_from_term"]


@dataclass(frozen=True)
class Requirements:
    """Quality requirements of one protocol.

    Parameters
    ----------
    modalities:
        DICOM modalities the protocol accepts.
    volume:
        Whether a 3-D volume is needed (a single slice or radiograph is not enough).
    min_slices:
        Fewest slices for a usable volume.
    max_slice_mm:
        Thickest acceptable slice spacing (``None``: any).
    body_parts:
        Accepted body parts (``"head"``, ``"chest"``, ``"abdomen"``, ``"eye"``, ...).
    coverage:
        Whether anatomy cut at the field-of-view edge is a problem (not for region-of-interest crops).
    background:
        Whether there is background beside the object to look for ghosts in (not in crops).
    """

    modalities: tuple[str, ...]
    volume: bool = False
    min_slices: int = 1
    max_slice_mm: float | None = None
    body_parts: tuple[str, ...] = ()
    coverage: bool = True
    background: bool = True


PROTOCOLS: dict[str, Requirements] = {
    "chest_ct": Requirements(("CT",), volume=True, min_slices=30, max_slice_mm=5.0,
                             body_parts=("chest",)),
    "abdomen_ct": Requirements(("CT",), volume=True, min_slices=30, max_slice_mm=5.0,
                               body_parts=("abdomen",)),
    "head_ct": Requirements(("CT",), volume=True, min_slices=20, max_slice_mm=5.0,
                            body_parts=("head",)),
    "brain_mri": Requirements(("MR",), volume=True, min_slices=16, max_slice_mm=7.0,
                              body_parts=("head",)),
    "chest_xray": Requirements(("CR", "DX", "DR"), body_parts=("chest",)),
    "retina": Requirements(("OP", "XC"), body_parts=("eye",)),
    # A crop around a region of interest: edges cut through anatomy on purpose.
    "roi": Requirements(("CT", "MR", "PT", "OT"), coverage=False, background=False),
}

#: DICOM Body Part Examined (and common variants) -> body part.
BODY_PART_TERMS: dict[str, str] = {
    "HEAD": "head", "BRAIN": "head", "SKULL": "head", "HEADNECK": "head",
    "CHEST": "chest", "THORAX": "chest", "LUNG": "chest", "HEART": "chest", "BREAST": "chest",
    "ABDOMEN": "abdomen", "ABD": "abdomen", "LIVER": "abdomen", "KIDNEY": "abdomen",
    "PELVIS": "abdomen", "ABDOMENPELVIS": "abdomen",
    "EYE": "eye", "RETINA": "eye", "FUNDUS": "eye",
}


def body_part_from_term(term: object) -> str | None:
    """Our body part for a DICOM Body Part Examined value (``None`` when unknown or whole body)."""
    if not term:
        return None
    key = "".join(ch for ch in str(term).upper() if ch.isalpha())
    return BODY_PART_TERMS.get(key)
