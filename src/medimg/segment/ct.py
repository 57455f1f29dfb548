"""Chest CT anatomy: body, left and right lung, airways, and the lung zones.

Classical and fast (thresholds, connected components, morphology; no learned model):

1. body: :func:`medimg.preprocess.body_mask` (everything above -500 HU, table removed, holes filled);
2. air inside the body below :data:`AIR_HU`; its 3-D components that are large enough
   (:data:`MIN_LUNG_ML`) and whose interior is lung parenchyma, not gas (median above
   :data:`GAS_HU`), are lung;
3. airways: a trachea seed (a round, pure-air tube near the body's left-right centre in the top
   slices), grown with a rising threshold until the region leaks into the lung (volume jump);
4. left/right: the lung air without the airways; if both lungs are still one piece (anterior
   junction), in-plane erosion until they part, then each voxel goes back to its side;
5. each lung has the holes of every slice filled (vessels, nodules inside) and a small in-plane
   closing (:data:`CLOSE_MM`), so its volume is the organ's, not only its air.

Masks are boolean arrays on the image's grid.  Which side is left is decided in patient
coordinates (LPS: larger x is the patient's left), never by array columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..image import Image
from ..preprocess import StepError, body_mask
from ..preprocess.intensity import hu_check
from ..report.model import Code, Measurement, Provenance, Structure

__all__ = [
    "AIR_HU",
    "ChestSegmentation",
    "GAS_HU",
    "MIN_LUNG_ML",
    "STRUCTURE_CODES",
    "check_chest_ct",
    "lung_zone",
    "segment_chest",
]

VERSION = "0.1.0"
ALGORITHM = "medimg.segment.ct.segment_chest"

#: Below this HU a voxel inside the body is air or lung parenchyma (lung is about -850 HU, soft
#: tissue above -100 HU; -400 is the usual midpoint).
AIR_HU = -400.0
#: Interior (eroded) median below this is gas (bowel, stomach, pneumoperitoneum: about -1000 HU);
#: lung parenchyma is air mixed with tissue and blood, about -850 HU (-950 only in severe emphysema).
GAS_HU = -950.0
#: Interior erosion (mm, in-plane) before the gas/lung median is taken, to skip partial volume.
GAS_ERODE_MM = 3.0
#: Air components smaller than this are not lungs (a lung in view holds hundreds of mL).
MIN_LUNG_ML = 20.0
#: Air components at least this large are lung whatever their density (severe emphysema).
CERTAIN_LUNG_ML = 500.0
#: Trachea cross-section limits (mm^2): adult tracheal diameter is 13-25 mm.
TRACHEA_AREA_MM2 = (50.0, 800.0)
#: The trachea's centre lies within this distance (mm) of the body's left-right centre.
TRACHEA_OFFSET_MM = 40.0
#: Airway growing stops before the region exceeds this (mL), or when one 20 HU step adds more than
#: the region already holds and more than :data:`AIRWAY_JUMP_ML` (it leaked into the lung).
AIRWAY_MAX_ML = 300.0
AIRWAY_JUMP_ML = 25.0
#: In-plane closing radius (mm) of each lung mask: pleural vessels and tiny dents join the lung.
CLOSE_MM = 3.0
#: Largest in-plane erosion (mm) tried to part two lungs touching at the anterior junction.
SPLIT_MAX_MM = 12.0

#: SNOMED CT codes of the structures (the codes DICOM's anatomic-region context groups use):
#: 38266002 "Entire body as a whole", 44029006 "Left lung structure", 3341006 "Right lung
#: structure", 110726009 "Trachea and bronchus structure" (DICOM CID 4 TRACHEABRONCHUS).
STRUCTURE_CODES: dict[str, Code] = {
    "body": Code("38266002", "SCT", "Entire body as a whole"),
    "lung_left": Code("44029006", "SCT", "Left lung"),
    "lung_right": Code("3341006", "SCT", "Right lung"),
    "airways": Code("110726009", "SCT", "Trachea and bronchus"),
}

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)[np.newaxis]  # in-plane 4-neighbours
_PLANE = np.zeros((3, 3, 3), dtype=bool)
_PLANE[1] = _CROSS[0]  # a 3-D structure that connects only within a slice


@dataclass
class ChestSegmentation:
    """Boolean masks of a chest CT on the image's grid, with volumes and provenance.

    Attributes
    ----------
    body, lung_left, lung_right, airways:
        Boolean ``(z, y, x)`` masks; the lungs exclude the airways and each other.
    lungs_present:
        Whether any lung was found (False for a CT without lungs in view).
    voxel_volume_mm3:
        Volume of one voxel, for the volumes in :meth:`structures`.
    superior_range:
        Per lung (``"left"``/``"right"``), the patient S coordinates (mm) of its lowest and highest
        voxel centre, for :func:`lung_zone`.
    notes:
        What did not go as planned (no trachea found, lungs split at the midline, ...).
    provenance:
        Algorithm, version and the parameters it ran with.
    """

    body: np.ndarray
    lung_left: np.ndarray
    lung_right: np.ndarray
    airways: np.ndarray
    lungs_present: bool
    voxel_volume_mm3: float
    superior_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    provenance: Provenance = field(default_factory=lambda: Provenance(ALGORITHM, VERSION))

    @property
    def lungs(self) -> np.ndarray:
        """Both lungs as one mask."""
        return self.lung_left | self.lung_right

    def volume_ml(self, name: str) -> float:
        """Volume (mL) of ``"body"``, ``"lung_left"``, ``"lung_right"`` or ``"airways"``."""
        mask = getattr(self, name)
        return float(np.count_nonzero(mask)) * self.voxel_volume_mm3 / 1000.0

    def structures(self) -> list[Structure]:
        """One :class:`Structure` per mask, each with its volume (mL) and SNOMED CT code."""
        method = {
            "body": "voxels above -500 HU with holes filled, table removed; counted x voxel volume",
            "lung_left": "lung air below -400 HU without airways, holes filled per slice, "
                         f"{CLOSE_MM:g} mm in-plane closing; counted x voxel volume",
            "lung_right": "lung air below -400 HU without airways, holes filled per slice, "
                          f"{CLOSE_MM:g} mm in-plane closing; counted x voxel volume",
            "airways": "trachea and bronchi lumen grown from a trachea seed with a rising "
                       "threshold until it leaks; counted x voxel volume",
        }
        out = []
        for name in ("body", "lung_left", "lung_right", "airways"):
            volume = Measurement("volume", round(self.volume_ml(name), 1), "mL", method[name])
            out.append(Structure(name, STRUCTURE_CODES[name], [volume], self.provenance,
                                 mask=getattr(self, name)))
        return out


# ---------------------------------------------------------------------------------------- checks
def check_chest_ct(image: Image, step: str) -> None:
    """Raise :class:`~medimg.preprocess.StepError` (a ValueError) unless ``image`` is a 3-D CT in HU."""
    if image.modality.upper() != "CT":
        msg = (f"{step}: needs a CT in Hounsfield units, got modality {image.modality!r}; "
               f"give it a CT series (or set image.modality = 'CT' if it really is one)")
        raise StepError(msg)
    if image.channels != 1:
        msg = f"{step}: needs a single-channel CT, got {image.channels} channels; give it the CT volume"
        raise StepError(msg)
    if image.is_2d:
        msg = (f"{step}: needs a 3-D CT volume, got a single slice of shape {image.shape}; "
               f"give it the whole series (medimg.read(folder))")
        raise StepError(msg)
    ok, reason, _ = hu_check(image.array)
    if not ok:
        msg = (f"{step}: the values do not look like Hounsfield units ({reason}); convert them "
               f"first with medimg.preprocess.to_hu(image, slope=..., intercept=...)")
        raise StepError(msg)


# ---------------------------------------------------------------------------------------- helpers
def _disk(ry: float, rx: float) -> np.ndarray:
    """An in-plane ellipse (radii in voxels) as a ``(1, h, w)`` structure."""
    iy, ix = max(int(np.floor(ry)), 0), max(int(np.floor(rx)), 0)
    yy, xx = np.mgrid[-iy:iy + 1, -ix:ix + 1]
    disk = (yy / max(ry, 1e-6)) ** 2 + (xx / max(rx, 1e-6)) ** 2 <= 1.0
    return disk[np.newaxis]


def _superior_sign(image: Image) -> float:
    """+1 if the array's z axis runs towards the head (patient S), -1 if towards the feet, 0 if the
    slices are not axial enough to tell."""
    s = float(image.direction[2, 0])
    return 0.0 if abs(s) < 0.5 else float(np.sign(s))


def _lateral_mm(image: Image, index: np.ndarray) -> np.ndarray:
    """Patient-left coordinate (LPS x, mm) of ``(..., 3)`` indices."""
    return image.index_to_patient(index)[..., 0]


def _lung_components(image: Image, air: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The air components that are lung (big enough, parenchyma rather than gas)."""
    labels, count = ndimage.label(air)
    if count == 0:
        return np.zeros_like(air), ["no air inside the body"]
    vox_ml = image.voxel_volume / 1000.0
    sizes = np.bincount(labels.reshape(-1), minlength=count + 1)
    sizes[0] = 0
    big = np.flatnonzero(sizes * vox_ml >= MIN_LUNG_ML)
    notes: list[str] = []
    if big.size == 0:
        return np.zeros_like(air), [f"no air component inside the body reaches {MIN_LUNG_ML:g} mL"]
    r = GAS_ERODE_MM / image.spacing[1:]
    keep = np.zeros(count + 1, dtype=bool)
    objects = ndimage.find_objects(labels)
    for lab in big:
        sl = objects[lab - 1]
        # On every second row and column: the median needs a sample, not every voxel.
        comp = labels[sl][:, ::2, ::2] == lab
        interior = ndimage.binary_erosion(comp, structure=_disk(r[0] / 2, r[1] / 2))
        values = image.array[sl][:, ::2, ::2][interior]
        volume = sizes[lab] * vox_ml
        median = float(np.median(values)) if values.size else -1024.0
        if volume >= CERTAIN_LUNG_ML or median > GAS_HU:
            keep[lab] = True
        else:
            notes.append(f"an air component of {volume:.0f} mL with interior median {median:.0f} HU "
                         f"was taken for gas, not lung")
    return keep[labels], notes


def _smooth_inplane(array: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(array.astype(np.float32), sigma=(0.0, 1.0, 1.0))


def _find_trachea_seed(image: Image, lungs: np.ndarray, body: np.ndarray,
                       smooth: np.ndarray) -> tuple[int, int, int] | None:
    """A voxel inside the trachea: the first round pure-air tube near the body's left-right centre,
    searched from the top slice down, that lasts at least 10 mm along z."""
    up = _superior_sign(image)
    if up == 0.0:
        return None
    zs = np.flatnonzero(lungs.any(axis=(1, 2)))
    order = zs[::-1] if up > 0 else zs
    px_area = float(image.spacing[1] * image.spacing[2])
    need = max(2, int(np.ceil(10.0 / image.spacing[0])))
    body_cols = np.flatnonzero(body.any(axis=(0, 1)))
    centre_col = 0.5 * (body_cols[0] + body_cols[-1]) if body_cols.size else lungs.shape[2] / 2
    run: list[tuple[int, int, int]] = []
    for z in order[: max(need * 8, 40)]:
        pure = (smooth[z] < -900.0) & lungs[z]
        labels, count = ndimage.label(pure)
        hit = None
        for k, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            piece = labels[sl] == k
            area = piece.sum() * px_area
            if not TRACHEA_AREA_MM2[0] <= area <= TRACHEA_AREA_MM2[1]:
                continue
            h = (sl[0].stop - sl[0].start) * image.spacing[1]
            w = (sl[1].stop - sl[1].start) * image.spacing[2]
            col = 0.5 * (sl[1].start + sl[1].stop)
            if (area / (h * w) > 0.55 and max(h, w) < 2.0 * min(h, w)
                    and abs(col - centre_col) * image.spacing[2] < TRACHEA_OFFSET_MM):
                vals = np.where(piece, smooth[z][sl], np.inf)
                yy, xx = np.unravel_index(int(np.argmin(vals)), vals.shape)
                hit = (int(z), int(yy + sl[0].start), int(xx + sl[1].start))
                break
        run = [*run, hit] if hit is not None else []
        if len(run) >= need:
            return run[len(run) // 2]
    return None


def _grow_airways(image: Image, seed: tuple[int, int, int], lungs: np.ndarray,
                  smooth: np.ndarray) -> tuple[np.ndarray, float]:
    """Connected threshold region from ``seed``, threshold raised in 20 HU steps until it leaks."""
    import SimpleITK as sitk

    sl = ndimage.find_objects(lungs.astype(np.uint8))[0]
    sub = np.where(lungs[sl], smooth[sl], np.float32(1000.0))
    img = sitk.GetImageFromArray(np.ascontiguousarray(sub))
    local = [seed[2] - sl[2].start, seed[1] - sl[1].start, seed[0] - sl[0].start]
    vox_ml = image.voxel_volume / 1000.0
    best = np.zeros(sub.shape, dtype=bool)
    best_thr = float("nan")
    previous = 0.0
    start = float(np.floor(sub[seed[0] - sl[0].start, local[1], local[0]] / 10.0) * 10.0 + 10.0)
    for thr in np.arange(max(start, -990.0), -690.0, 20.0):
        grown = sitk.ConnectedThreshold(img, seedList=[local], lower=-4000.0, upper=float(thr))
        region = sitk.GetArrayFromImage(grown).astype(bool)
        volume = float(region.sum()) * vox_ml
        if volume > AIRWAY_MAX_ML or volume - previous > max(previous, AIRWAY_JUMP_ML):
            break
        best, best_thr, previous = region, float(thr), volume
    out = np.zeros(lungs.shape, dtype=bool)
    out[sl] = best
    return out, best_thr


def _assign_sides(image: Image, lungs: np.ndarray, body: np.ndarray,
                  notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Split lung air into (left, right) masks; see the module docstring."""
    if not lungs.any():
        return np.zeros_like(lungs), np.zeros_like(lungs)
    box = ndimage.find_objects(lungs.astype(np.uint8))[0]
    offset = np.array([s.start for s in box], dtype=float)
    sub = lungs[box]
    labels, count = ndimage.label(sub)
    sizes = np.bincount(labels.reshape(-1))
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    markers = np.zeros(sub.shape, dtype=np.uint8)
    if count >= 2 and sizes[order[1]] >= 0.05 * sizes.sum():
        markers[labels == order[0]] = 1
        markers[labels == order[1]] = 2
    else:
        main = labels == order[0]
        eroded = main
        step_mm = float(min(image.spacing[1], image.spacing[2]))
        for it in range(1, int(SPLIT_MAX_MM / step_mm) + 1):
            eroded = ndimage.binary_erosion(eroded, structure=_CROSS)
            lab2, n2 = ndimage.label(eroded)
            if n2 < 2:
                continue
            s2 = np.bincount(lab2.reshape(-1))
            s2[0] = 0
            o2 = np.argsort(s2)[::-1]
            if s2[o2[1]] >= 0.1 * s2[o2[0]]:
                markers[lab2 == o2[0]] = 1
                markers[lab2 == o2[1]] = 2
                _grow_back(markers, main, it + 1)
                break
    if markers.max() < 2:
        # One lung in view, or two that never part: decide by the side of each voxel.
        return _split_at_midline(image, lungs, body, notes)
    # Which marker is the patient's left: the one with the larger LPS x.
    c1 = np.array(ndimage.center_of_mass(markers == 1)) + offset
    c2 = np.array(ndimage.center_of_mass(markers == 2)) + offset
    x1, x2 = float(_lateral_mm(image, c1)), float(_lateral_mm(image, c2))
    left_id = 1 if x1 > x2 else 2
    left_sub = markers == left_id
    right_sub = markers == 3 - left_id
    # Everything else (small pieces, apices cut off by the airways) goes to the nearer side.
    rest = sub & ~left_sub & ~right_sub
    if rest.any():
        mid = 0.5 * (x1 + x2)
        lab_r, n_r = ndimage.label(rest)
        centres = np.array(ndimage.center_of_mass(rest, lab_r, range(1, n_r + 1))).reshape(-1, 3)
        is_left = np.concatenate([[False], _lateral_mm(image, centres + offset) > mid])
        left_sub |= is_left[lab_r] & rest
        right_sub |= ~is_left[lab_r] & rest
    left = np.zeros_like(lungs)
    right = np.zeros_like(lungs)
    left[box] = left_sub
    right[box] = right_sub
    return left, right


def _grow_back(markers: np.ndarray, mask: np.ndarray, iterations: int) -> None:
    """Geodesic in-plane growth of labels 1 and 2 inside ``mask``, alternating, in place."""
    for _ in range(iterations):
        for lab in (1, 2):
            free = mask & (markers == 0)
            if not free.any():
                return
            grow = ndimage.binary_dilation(markers == lab, structure=_CROSS) & free
            markers[grow] = lab


def _split_at_midline(image: Image, lungs: np.ndarray, body: np.ndarray,
                      notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sides by the body's midline (LPS x of the body's centre): one lung when nearly all of the
    lung air lies on one side of it, otherwise the air is cut at the midline."""
    zyx = np.argwhere(lungs)
    x = _lateral_mm(image, zyx)
    body_zyx = np.argwhere(body[:, ::4, ::4]) * np.array([1, 4, 4])
    midline = float(np.median(_lateral_mm(image, body_zyx))) if body_zyx.size else float(np.median(x))
    is_left = x > midline
    left = np.zeros_like(lungs)
    right = np.zeros_like(lungs)
    share = float(is_left.mean())
    if share >= 0.95 or share <= 0.05:
        (left if share >= 0.95 else right)[lungs] = True
        notes.append("one lung in view; its side is where it lies from the body's midline")
    else:
        left[tuple(zyx[is_left].T)] = True
        right[tuple(zyx[~is_left].T)] = True
        notes.append("the lungs did not part by erosion; split at the body's midline")
    return left, right


def _fill(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Holes filled in every slice, then a small in-plane closing, holes filled again."""
    if not mask.any():
        return mask
    sl = ndimage.find_objects(mask.astype(np.uint8))[0]
    r = CLOSE_MM / spacing[1:]
    pad = (0, int(np.ceil(r[0])) + 1, int(np.ceil(r[1])) + 1)
    sub = np.pad(mask[sl], [(p, p) for p in pad])
    sub = ndimage.binary_fill_holes(sub, structure=_PLANE)
    sub = ndimage.binary_closing(sub, structure=_disk(r[0], r[1]))
    sub = ndimage.binary_fill_holes(sub, structure=_PLANE)
    out = np.zeros_like(mask)
    out[sl] = sub[:, pad[1]:sub.shape[1] - pad[1], pad[2]:sub.shape[2] - pad[2]]
    return out


def _superior_range(image: Image, mask: np.ndarray) -> tuple[float, float] | None:
    if not mask.any():
        return None
    zyx = np.argwhere(mask[:, ::4, ::4]) * np.array([1, 4, 4])
    s = image.index_to_patient(zyx)[:, 2]
    return float(s.min()), float(s.max())


# ---------------------------------------------------------------------------------------- public
def segment_chest(image: Image) -> ChestSegmentation:
    """Segment the body, the left and right lung and the airways of a chest CT (values in HU).

    Parameters
    ----------
    image:
        A 3-D CT in Hounsfield units (as :func:`medimg.read` returns it).

    Returns
    -------
    ChestSegmentation
        Masks on the image's grid; ``lungs_present`` is False (and the lung masks empty) when no
        lung is in view, e.g. an abdominal CT below the lung bases.

    Raises
    ------
    ValueError
        (:class:`~medimg.preprocess.StepError`) for 2-D images, non-CT images or values not in HU.
    """
    step = "segment_chest"
    check_chest_ct(image, step)
    notes: list[str] = []
    body = body_mask(image)
    air = (image.array < AIR_HU) & body
    lung_air, gas_notes = _lung_components(image, air)
    notes.extend(gas_notes)
    airways = np.zeros_like(body)
    airway_threshold = float("nan")
    empty = np.zeros_like(body)
    params: dict[str, Any] = {
        "air_hu": AIR_HU, "gas_hu": GAS_HU, "min_lung_ml": MIN_LUNG_ML,
        "certain_lung_ml": CERTAIN_LUNG_ML, "close_mm": CLOSE_MM, "split_max_mm": SPLIT_MAX_MM,
        "airway_max_ml": AIRWAY_MAX_ML,
    }
    if not lung_air.any():
        notes.append("no lungs in view")
        prov = Provenance(ALGORITHM, VERSION, {**params, "notes": notes})
        return ChestSegmentation(body, empty, empty.copy(), airways, False, image.voxel_volume,
                                 {}, notes, prov)
    smooth = _smooth_inplane(image.array)
    seed = _find_trachea_seed(image, lung_air, body, smooth)
    if seed is None:
        notes.append("no trachea found (not in view, or slices not axial): airways left empty")
    else:
        airways, airway_threshold = _grow_airways(image, seed, lung_air, smooth)
    ring = ndimage.binary_dilation(airways, structure=_CROSS) if airways.any() else airways
    left_air, right_air = _assign_sides(image, lung_air & ~ring, body, notes)
    left = _fill(left_air, image.spacing)
    right = _fill(right_air, image.spacing) & ~left
    left &= body & ~airways
    right &= body & ~airways
    ranges = {side: r for side, m in (("left", left), ("right", right))
              if (r := _superior_range(image, m)) is not None}
    params.update({"trachea_seed": list(seed) if seed else None,
                   "airway_threshold_hu": airway_threshold, "notes": notes})
    prov = Provenance(ALGORITHM, VERSION, params)
    present = bool(left.any() or right.any())
    return ChestSegmentation(body, left, right, airways, present, image.voxel_volume, ranges,
                             notes, prov)


def lung_zone(seg: ChestSegmentation, image: Image, index: Any, side: str) -> str | None:
    """``"upper"``, ``"middle"`` or ``"lower"``: the third of the lung's height (patient S axis)
    holding the point at array ``index`` ``(z, y, x)``; None if that lung is not segmented."""
    rng = seg.superior_range.get(side)
    if rng is None:
        return None
    lo, hi = rng
    s = float(image.index_to_patient(np.asarray(index, dtype=float))[2])
    if hi - lo <= 0:
        return "middle"
    frac = (s - lo) / (hi - lo)
    return "lower" if frac < 1 / 3 else ("middle" if frac < 2 / 3 else "upper")
