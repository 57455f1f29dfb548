"""Lung nodules and masses in a chest CT: candidates, false-positive reduction, characterisation.

The method (classical; every threshold is a physical quantity, see docs/protocols/chest_ct.md):

1. **Working grid.**  The chest (the lungs' box plus 15 mm) is block-averaged to about
   :data:`WORK_MM` mm pixels and, for thin slices, :data:`WORK_Z_MM` mm slices, then lightly
   smoothed in-plane: fast, and CT noise drops.
2. **Thoracic cavity.**  Per slice, the convex hull of both lungs: it holds the lungs, what touches
   them (pleura, mediastinum) and lesions that push the lung away, but not the chest wall outside.
3. **Tissue.**  In the cavity, solid tissue: above :data:`SOLID_IN_LUNG_HU` inside the lung mask,
   above :data:`SOLID_OUT_LUNG_HU` outside it (fat, at about -100 HU, then parts the mediastinal
   organs), and below :data:`BONE_HU`.  Ground-glass opacities (between :data:`GGO_HU` and
   the solid threshold) inside the lung that touch no solid tissue are a second kind of candidate.
4. **Split into blobs.**  The distance to the tissue's edge is computed (mm) and the tissue split by
   a watershed from its local maxima; neighbouring pieces whose saddle is nearly as deep as the
   lower peak (less than :data:`DYNAMICS` of it) are merged back.  A nodule fused to a vessel, or a
   mass pressed on the aorta or the chest wall, so becomes its own piece.
5. **False-positive reduction**, per piece:

   * *lung contact*: at least :data:`MIN_LUNG_CONTACT` of its surface inside the cavity faces
     lung; the mediastinum and the diaphragm face mostly other tissue;
   * *blob, not tube* (Hessian), for nodule-sized pieces (up to :data:`HESSIAN_MAX_MM`): at the
     piece's own scale the eigenvalues of the Hessian at its centre are all negative and the
     smallest in magnitude is at least :data:`MIN_BLOBNESS` of the largest (a ball gives 1, a
     vessel about 0).  The Hessian is taken on the lung's view of the chest (tissue outside the
     hull set to lung), so a nodule on the pleura is judged by its own shape: a half ball, which
     needs only :data:`MIN_WALL_BLOBNESS`;
   * *compact*, for masses (whose intensity profile is shaped by what they press on): thickness
     (twice the largest inscribed radius) at least :data:`MIN_COMPACTNESS` of the
     equivalent-sphere diameter;
   * *solid, not branching*: the outline fills at least :data:`MIN_SOLIDITY` of its convex hull
     (the vessel tree at the hilum does not);
   * *size*: a long axis from :data:`MIN_DIAMETER_MM` to :data:`MAX_DIAMETER_MM`;
   * *not the diaphragm*: a piece whose footprint continues into solid tissue on the slice below,
     with no lung under it, is the dome of the liver or spleen cut by a slice.

6. **Outline and measurements** on the full-resolution image: the piece, grown into the partial-
   volume rim (not into neighbouring tissue pieces), cut at the half-way HU between the lesion's
   core and the lung around it, trimmed of vessel stubs (nodules only), with the tissue it
   encloses against bone; :func:`medimg.quantify.lesion.lesion_measurements` measures it.
7. **Probability**: a product of smooth memberships of the criteria above (see
   :func:`_probability`); it orders the findings and is **not calibrated against pathology**.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..image import Image
from ..preprocess import StepError
from ..quantify.lesion import lesion_measurements
from ..report.model import Code, Finding, Location, Measurement, Provenance
from ..segment.ct import ChestSegmentation, check_chest_ct, lung_zone

__all__ = ["LESION_CODES", "detect_lung_lesions"]

VERSION = "0.1.0"
ALGORITHM = "medimg.detect.lung_nodules.detect_lung_lesions"

#: In-plane pixel size (mm) of the working grid, and the slice spacing it aims at: thin slices
#: are averaged in pairs or more (a 1.25 mm CT works on 2.5 mm slices).
WORK_MM = 1.6
WORK_Z_MM = 2.5
#: Solid tissue inside the lung mask: above -300 HU (the usual solid / ground-glass boundary).
SOLID_IN_LUNG_HU = -300.0
#: Solid tissue outside the lung mask: above -100 HU, so that mediastinal fat (-100 HU and less)
#: separates the mediastinal organs from each other and from a lesion.
SOLID_OUT_LUNG_HU = -100.0
#: Ground glass: above -750 HU (lung parenchyma is about -850 HU) and below the solid threshold.
GGO_HU = -750.0
#: Margin (mm) of the full-resolution box around a lesion, so that the bone it abuts is in view.
WALL_MM = 8.0
#: Largest radius (mm) of the in-plane opening that trims vessels and strips off a lesion.
OPEN_MAX_MM = 2.0
#: Bone and calcium: above 300 HU (ribs, spine; calcified granulomas are benign and not reported).
BONE_HU = 300.0
#: Two touching pieces are one when the saddle between them is less than this share of the lower
#: peak's depth below it (relative dynamics of the distance map).
DYNAMICS = 0.25
#: At least this share of a piece's surface faces lung.
MIN_LUNG_CONTACT = 0.5
#: Hessian blobness (smallest over largest eigenvalue magnitude, all negative) at least this: no
#: axis much more than 1.5 times another (a 2:1 ellipsoid, a vessel segment, scores under 0.5).
MIN_BLOBNESS = 0.55
#: Pieces with at least this share of their surface on the chest wall (outside the lungs' hull)
#: are juxtapleural: seen from the lung they are half balls (blobness about 0.45-0.5; a plate of
#: pleural thickening, a rib cut obliquely, under 0.4), so they need MIN_WALL_BLOBNESS only.
WALL_SHARE = 0.15
MIN_WALL_BLOBNESS = 0.4
#: Pieces with an equivalent-sphere diameter above this (masses) are judged by shape, not by the
#: Hessian: a mass's intensity profile is shaped by what it presses on.
HESSIAN_MAX_MM = 30.0
#: Thickness over equivalent-sphere diameter at least this for large pieces (sphere 1, plate ~0.3).
MIN_COMPACTNESS = 0.5
#: A lesion fills at least this share of its 3-D convex hull (a ball 1, a spiculated mass about
#: 0.5-0.6, a branching vessel tree at the hilum under 0.3).
MIN_SOLIDITY = 0.4
#: Long axis limits (mm): below 5 mm thick-slice CT cannot tell nodules from vessels; above 150 mm
#: a "lesion" is the mediastinum or a collapsed lobe rather than a mass.
MIN_DIAMETER_MM = 5.0
MAX_DIAMETER_MM = 150.0
#: A nodule is below 30 mm (Fleischner glossary); a mass is 30 mm or more.
MASS_MM = 30.0
#: Characterisation by the share of voxels of the lesion above -300 HU (solid component).
SOLID_SHARE = 0.8
GGO_SHARE = 0.1

#: SNOMED CT: 427359005 "Solitary nodule of lung" and 309529002 "Lung mass" (findings).
LESION_CODES: dict[str, Code] = {
    "nodule": Code("427359005", "SCT", "Solitary nodule of lung"),
    "mass": Code("309529002", "SCT", "Lung mass"),
}


@dataclass
class _Grid:
    """The working grid: a crop of the image, block-averaged by ``factors`` (z, y, x)."""

    offset: np.ndarray  # (z, y, x) start of the crop on the image grid
    factors: np.ndarray  # (z, y, x) block size in image voxels
    spacing: np.ndarray  # working voxel size (mm)
    hu: np.ndarray  # block means, float32
    smooth: np.ndarray  # lightly smoothed block means
    lungs: np.ndarray  # uint8: 0 none, 1 left, 2 right (block majority)

    def up(self, mask: np.ndarray) -> np.ndarray:
        """A working-grid array repeated onto the image grid's voxels."""
        fz, fy, fx = (int(v) for v in self.factors)
        return np.repeat(np.repeat(np.repeat(mask, fz, axis=0), fy, axis=1), fx, axis=2)

    def image_slices(self, sl: tuple[slice, ...]) -> tuple[slice, ...]:
        """The image-grid box covered by a working-grid box."""
        return tuple(slice(int(o + s.start * f), int(o + s.stop * f))
                     for o, s, f in zip(self.offset, sl, self.factors, strict=True))


_PLANE = np.zeros((3, 3, 3), dtype=bool)
_PLANE[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]  # connects only within a slice


def _disk(ry: float, rx: float) -> np.ndarray:
    """An in-plane ellipse (radii in voxels) as a ``(1, h, w)`` structure."""
    iy, ix = int(np.floor(ry)), int(np.floor(rx))
    yy, xx = np.mgrid[-iy:iy + 1, -ix:ix + 1]
    return ((yy / max(ry, 1e-6)) ** 2 + (xx / max(rx, 1e-6)) ** 2 <= 1.0)[np.newaxis]


def _working_grid(image: Image, seg: ChestSegmentation) -> _Grid:
    f = max(1, int(round(WORK_MM / float(min(image.spacing[1], image.spacing[2])))))
    fz = max(1, int(round(WORK_Z_MM / float(image.spacing[0]))))
    factors = np.array([fz, f, f])
    lungs = seg.lungs
    box = ndimage.find_objects(lungs.astype(np.uint8))[0]
    margin = np.array([fz, *(2 * [int(np.ceil(15.0 / float(min(image.spacing[1:]))))])])
    start = np.maximum(np.array([b.start for b in box]) - margin, 0)
    stop = np.minimum(np.array([b.stop for b in box]) + margin, np.array(image.spatial_shape))
    stop = start + (stop - start) // factors * factors
    crop = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))

    def block_sum(a: np.ndarray, dtype: type) -> np.ndarray:
        d, h, w = a.shape
        return a.reshape(d // fz, fz, h // f, f, w // f, f).sum(axis=(1, 3, 5), dtype=dtype)

    n = float(fz * f * f)
    hu = block_sum(image.array[crop], np.float32) / np.float32(n)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[block_sum(seg.lung_left[crop], np.int32) > n / 2] = 1
    labels[block_sum(seg.lung_right[crop], np.int32) > n / 2] = 2
    smooth = ndimage.gaussian_filter(hu, sigma=(0.0, 0.7, 0.7))
    return _Grid(start, factors, image.spacing * factors, hu, smooth, labels)


def _cavity(lungs: np.ndarray) -> np.ndarray:
    """Per slice, the convex hull of the lung pixels."""
    from skimage.morphology import convex_hull_image

    out = np.zeros(lungs.shape, dtype=bool)
    for z in np.flatnonzero(lungs.sum(axis=(1, 2)) >= 4):
        out[z] = convex_hull_image(lungs[z])
    return out


def _pieces(tissue: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Watershed pieces of ``tissue`` and the distance map (mm) they were cut on."""
    from skimage.segmentation import watershed

    dist = ndimage.distance_transform_edt(tissue, sampling=spacing).astype(np.float32)
    peaks = (dist == ndimage.maximum_filter(dist, size=3)) & (dist > 0)
    markers, _ = ndimage.label(peaks)
    pieces = watershed(-dist, markers, mask=tissue)
    return _merge_shallow(pieces, dist), dist


def _merge_shallow(pieces: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Merge neighbouring pieces whose saddle lies within :data:`DYNAMICS` of the lower peak."""
    n = int(pieces.max())
    if n < 2:
        return pieces
    peak = np.asarray(ndimage.maximum(dist, pieces, np.arange(n + 1)), dtype=float)
    peak[0] = 0.0
    pairs, values = [], []
    for axis in range(3):
        a = np.moveaxis(pieces, axis, 0)
        d = np.moveaxis(dist, axis, 0)
        lo, hi = a[:-1], a[1:]
        sel = (lo > 0) & (hi > 0) & (lo != hi)
        pairs.append(np.stack([lo[sel], hi[sel]], axis=1))
        values.append(np.minimum(d[:-1][sel], d[1:][sel]))
    pair = np.sort(np.concatenate(pairs), axis=1).astype(np.int64)
    if pair.size == 0:
        return pieces
    key = pair[:, 0] * (n + 1) + pair[:, 1]
    keys, inverse = np.unique(key, return_inverse=True)
    saddle = np.zeros(len(keys))
    np.maximum.at(saddle, inverse, np.concatenate(values))
    parent = np.arange(n + 1)
    top = peak.copy()

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for e in np.argsort(-saddle):
        ra, rb = root(int(keys[e] // (n + 1))), root(int(keys[e] % (n + 1)))
        if ra != rb and saddle[e] >= (1.0 - DYNAMICS) * min(top[ra], top[rb]):
            parent[rb] = ra
            top[ra] = max(top[ra], top[rb])
    roots = np.array([root(i) for i in range(n + 1)])
    _, relabel = np.unique(roots, return_inverse=True)
    return relabel[pieces].astype(np.int32)


def _face_shares(pieces: np.ndarray, sides: list[np.ndarray], spacing: np.ndarray
                 ) -> tuple[list[np.ndarray], np.ndarray]:
    """Per piece: the share of its surface area facing each mask of ``sides``, and the share
    facing other pieces."""
    n = int(pieces.max())
    # One empty layer around, so that faces at the array's border see nothing (np.roll wraps).
    pieces = np.pad(pieces, 1)
    sides = [np.pad(side, 1) for side in sides]
    area = np.array([spacing[1] * spacing[2], spacing[0] * spacing[2], spacing[0] * spacing[1]])
    total = np.zeros(n + 1)
    facing = [np.zeros(n + 1) for _ in sides]
    other = np.zeros(n + 1)
    for axis in range(3):
        for shift in (1, -1):
            nb = np.roll(pieces, shift, axis=axis)
            face = (pieces > 0) & (nb != pieces)
            total += np.bincount(pieces[face], minlength=n + 1) * area[axis]
            for acc, side in zip(facing, sides, strict=True):
                nb_side = np.roll(side, shift, axis=axis)
                acc += np.bincount(pieces[face & nb_side], minlength=n + 1) * area[axis]
            other += np.bincount(pieces[face & (nb > 0)], minlength=n + 1) * area[axis]
    total[total == 0] = 1.0
    return [acc / total for acc in facing], other / total


def _blobness(hu: np.ndarray, point: np.ndarray, radius_mm: float, spacing: np.ndarray) -> float:
    """Smallest over largest Hessian eigenvalue magnitude at ``point`` at scale radius/sqrt(3) (the
    scale at which a ball of that radius answers most); 0 unless all three are negative."""
    sigma = max(radius_mm / np.sqrt(3.0), float(spacing[1]))
    sv = np.maximum(sigma / spacing, 0.5)
    half = np.ceil(4.0 * sv).astype(int)
    lo = np.maximum(point - half, 0)
    hi = np.minimum(point + half + 1, hu.shape)
    sub = hu[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    centre = tuple(point - lo)
    hess = np.zeros((3, 3))
    for i in range(3):
        for j in range(i, 3):
            order = [0, 0, 0]
            order[i] += 1
            order[j] += 1
            value = ndimage.gaussian_filter(sub, sv, order=order, mode="nearest")[centre]
            hess[i, j] = hess[j, i] = value / (spacing[i] * spacing[j])
    ev = np.linalg.eigvalsh(hess)  # ascending: ev[0] most negative
    if ev[2] >= 0:
        return 0.0
    return float(ev[2] / ev[0])


@dataclass
class _Candidate:
    label: int
    kind: str  # "solid" or "ggo" (how it was found)
    lung_contact: float
    on_wall: float
    attached: float
    blobness: float | None
    compactness: float
    eq_diameter: float
    peak: np.ndarray


def _diaphragm_dome(pieces: np.ndarray, lab: int, sl: tuple[slice, ...], grid: _Grid,
                    inferior_step: int) -> bool:
    """Whether the piece is the dome of the liver or spleen cut by a slice: on the slice below its
    lowest one its footprint is mostly solid tissue outside the lungs, and under its whole
    footprint there is mostly no lung further down (it sits on the diaphragm, not in a lobe)."""
    z_low = sl[0].start if inferior_step < 0 else sl[0].stop - 1
    z_next = z_low + inferior_step
    if not 0 <= z_next < pieces.shape[0]:
        return False
    foot = pieces[z_low, sl[1], sl[2]] == lab
    below = ((grid.smooth[z_next, sl[1], sl[2]] > SOLID_OUT_LUNG_HU)
             & (grid.lungs[z_next, sl[1], sl[2]] == 0))
    if below[foot].mean() <= 0.5:
        return False
    shadow = np.asarray((pieces[sl] == lab).any(axis=0))
    under = slice(0, z_low) if inferior_step < 0 else slice(z_low + 1, pieces.shape[0])
    lung_under = np.asarray((grid.lungs[under, sl[1], sl[2]] > 0).any(axis=0))
    return bool(lung_under[shadow].mean() < 0.5)


def _candidates(grid: _Grid, inferior_step: int
                ) -> tuple[list[_Candidate], np.ndarray, np.ndarray, np.ndarray]:
    lungs = grid.lungs > 0
    sm = grid.smooth
    cavity = _cavity(lungs)
    solid = cavity & (sm < BONE_HU) & (((sm > SOLID_IN_LUNG_HU) & lungs)
                                       | ((sm > SOLID_OUT_LUNG_HU) & ~lungs))
    pieces, dist = _pieces(solid, grid.spacing)
    n_solid = int(pieces.max())
    # Ground glass in the lung that touches no solid tissue: its own pieces, numbered after.
    hazy = lungs & (sm > GGO_HU) & ~solid
    hazy_lab, n_hazy = ndimage.label(hazy)
    if n_hazy:
        touching = np.unique(hazy_lab[ndimage.binary_dilation(solid) & hazy])
        keep = np.ones(n_hazy + 1, dtype=bool)
        keep[touching] = False
        keep[0] = False
        ggo = keep[hazy_lab]
        ggo_lab, n_ggo = ndimage.label(ggo)
        pieces = np.where(ggo, ggo_lab + n_solid, pieces).astype(np.int32)
        dist = np.where(ggo, ndimage.distance_transform_edt(ggo, sampling=grid.spacing),
                        dist).astype(np.float32)
    occupied = pieces > 0
    lung_side = ndimage.binary_dilation(lungs, structure=np.ones((1, 3, 3), bool),
                                        iterations=2) & ~occupied
    (lung_share, on_wall), attached = _face_shares(pieces, [lung_side, ~cavity], grid.spacing)
    # The hull's edge is where the analysis stops, not anatomy: lung contact is measured on the
    # surface inside the cavity (a lesion on the chest wall is not penalised for its wall side).
    contact = lung_share / np.maximum(1.0 - on_wall, 1e-9)
    n = int(pieces.max())
    counts = np.bincount(pieces.reshape(-1), minlength=n + 1)
    eq_d = (6.0 * counts * float(np.prod(grid.spacing)) / np.pi) ** (1.0 / 3.0)
    peak_r = np.asarray(ndimage.maximum(dist, pieces, np.arange(n + 1)), dtype=float)
    min_d = MIN_DIAMETER_MM
    objects = ndimage.find_objects(pieces)
    # The Hessian sees the chest as the lung does: the wall outside the hull becomes lung, so a
    # nodule on the pleura is judged by its own shape; vessels and mediastinum stay.
    lung_view = np.where(cavity, grid.hu, np.float32(-850.0))
    out: list[_Candidate] = []
    for lab in range(1, n + 1):
        sl = objects[lab - 1]
        if sl is None or eq_d[lab] < 0.8 * min_d or contact[lab] < MIN_LUNG_CONTACT:
            continue
        # The long axis of a piece cannot exceed the diagonal of its box: skip the hopeless.
        ext = np.array([s.stop - s.start for s in sl]) * grid.spacing
        if float(np.hypot(ext[1], ext[2])) < min_d or eq_d[lab] > MAX_DIAMETER_MM:
            continue
        piece = pieces[sl] == lab
        if _diaphragm_dome(pieces, lab, sl, grid, inferior_step):
            continue
        piece = pieces[sl] == lab
        local = np.array(ndimage.maximum_position(np.where(piece, dist[sl], 0.0)))
        point = local + np.array([s.start for s in sl])
        compact = 2.0 * peak_r[lab] / max(eq_d[lab], 1e-9)
        kind = "ggo" if lab > n_solid else "solid"
        blob = None
        if eq_d[lab] <= HESSIAN_MAX_MM:
            blob = _blobness(lung_view, point, max(peak_r[lab], 0.5 * eq_d[lab]), grid.spacing)
            # On the chest wall the lung sees a half ball: flatter than a ball, not a plate.
            wall = on_wall[lab] >= WALL_SHARE
            if blob < (MIN_WALL_BLOBNESS if wall else MIN_BLOBNESS):
                continue
        elif compact < MIN_COMPACTNESS:
            continue
        out.append(_Candidate(lab, kind, float(contact[lab]), float(on_wall[lab]),
                              float(attached[lab]), blob,
                              float(compact), float(eq_d[lab]), point))
    return out, pieces, dist, cavity


def _full_mask(image: Image, grid: _Grid, pieces: np.ndarray, cavity: np.ndarray,
               labels: list[int]) -> tuple[np.ndarray, float]:
    """The lesion on the image grid: its pieces, grown one working voxel into what is not tissue
    of another piece, cut at the half-way HU between its core and the lung around it, trimmed by
    an in-plane opening, with the tissue it encloses against bone (:func:`_pockets`).  Also
    returns the solidity of the outline before trimming."""
    own = np.isin(pieces, labels)
    ring = np.ones((1, 3, 3), bool)
    grown = ndimage.binary_dilation(own, structure=ring) & ((pieces == 0) | own)
    box = ndimage.find_objects(grown.astype(np.uint8))[0]
    pad = int(np.ceil(WALL_MM / float(grid.spacing[1])))
    sl = (box[0], slice(max(box[1].start - pad, 0), box[1].stop + pad),
          slice(max(box[2].start - pad, 0), box[2].stop + pad))
    full_sl = grid.image_slices(sl)
    region = grid.up(grown[sl])
    core_w = grid.up(own[sl])
    hu = ndimage.gaussian_filter(image.array[full_sl].astype(np.float32), sigma=(0.0, 0.5, 0.5))
    lung = (grid.lungs[sl] > 0) & (pieces[sl] == 0)
    lung_full = grid.up(lung)
    core = float(np.percentile(hu[core_w], 75))
    around = float(np.median(hu[lung_full])) if lung_full.any() else -850.0
    edge = 0.5 * (core + min(around, core - 100.0))
    mask = region & (hu > edge) & (hu < BONE_HU)
    solidity = _solidity(mask, image.spacing) if mask.any() else 0.0
    # For nodules an in-plane opening cuts vessels and bronchial walls thinner than a tenth of the
    # nodule's size (one pixel to OPEN_MAX_MM); masses keep their spicules, which belong to their
    # diameter.
    eq_d = (6.0 * np.count_nonzero(core_w) * image.voxel_volume / np.pi) ** (1.0 / 3.0)
    px = float(min(image.spacing[1:]))
    opened = mask
    if eq_d < MASS_MM:
        r = np.clip(0.1 * eq_d, px, OPEN_MAX_MM) / image.spacing[1:]
        opened = ndimage.binary_opening(mask, structure=_disk(r[0], r[1]))
    if opened[core_w].any():
        mask = opened
    lab, n = ndimage.label(mask)
    if n > 1:
        hits = np.bincount(lab[core_w & mask], minlength=n + 1)
        hits[0] = 0
        mask = lab == int(np.argmax(hits))
    # Calcium inside the lesion (above the bone threshold) is part of it: fill holes per slice.
    mask = ndimage.binary_fill_holes(mask, structure=_PLANE)
    mask |= _pockets(mask, hu, edge, lung_full)
    out = np.zeros(image.spatial_shape, dtype=bool)
    out[full_sl] = mask
    return out, solidity


def _pockets(mask: np.ndarray, hu: np.ndarray, edge: float, lung: np.ndarray) -> np.ndarray:
    """Tissue enclosed, in a slice, between the lesion and bone (a mass pressed into the
    paravertebral gutter or against a rib reaches the bone), each pocket at most half the
    lesion's area on that slice."""
    bone = hu >= BONE_HU
    both = mask | bone
    pocket = ndimage.binary_fill_holes(both, structure=_PLANE) & ~both & (hu > edge) & ~lung
    labels, n = ndimage.label(pocket, structure=_PLANE)
    if n == 0:
        return pocket
    size = np.bincount(labels.reshape(-1), minlength=n + 1)
    z_of = np.asarray(ndimage.minimum(np.indices(labels.shape)[0], labels, np.arange(n + 1)))
    z_of = np.nan_to_num(z_of).astype(int)
    area = mask.sum(axis=(1, 2))[z_of]
    touching = np.zeros(n + 1, dtype=bool)
    touching[np.unique(labels[ndimage.binary_dilation(mask, structure=_PLANE)])] = True
    keep = touching & (size <= 0.5 * area)
    keep[0] = False
    return keep[labels]


def _solidity(mask: np.ndarray, spacing: np.ndarray) -> float:
    """Volume over the volume of the convex hull of the voxels' corners (3-D)."""
    from scipy.spatial import ConvexHull, QhullError

    sl = ndimage.find_objects(mask.astype(np.uint8))[0]
    sub = mask[sl]
    edge = sub & ~ndimage.binary_erosion(sub)
    corners = np.array([[a, b, c] for a in (-0.5, 0.5) for b in (-0.5, 0.5) for c in (-0.5, 0.5)])
    points = ((np.argwhere(edge)[:, np.newaxis, :] + corners) * spacing).reshape(-1, 3)
    try:
        hull = ConvexHull(points)
    except QhullError:
        return 1.0
    return float(np.count_nonzero(sub) * np.prod(spacing) / hull.volume)


def _probability(c: _Candidate, long_axis: float) -> float:
    """Product of smooth memberships in [0, 1]; a ranking score, not a calibrated probability."""

    def rise(x: float, x0: float, x1: float) -> float:
        return float(np.clip((x - x0) / (x1 - x0), 0.0, 1.0))

    contact = 0.5 + 0.5 * rise(c.lung_contact, MIN_LUNG_CONTACT, 0.9)
    if c.blobness is None:
        shape = 0.5 + 0.5 * rise(c.compactness, MIN_COMPACTNESS, 0.9)
    elif c.on_wall >= WALL_SHARE:
        shape = 0.5 + 0.5 * rise(c.blobness, MIN_WALL_BLOBNESS, 0.6)
    else:
        shape = 0.5 + 0.5 * rise(c.blobness, MIN_BLOBNESS, 0.8)
    # Vessel mimics are small: the larger a compact lesion, the less likely it is one.
    size = 0.5 + 0.5 * rise(long_axis, MIN_DIAMETER_MM, MASS_MM)
    return round(contact * shape * size, 3)


def _characterise(image: Image, mask: np.ndarray) -> tuple[str, float]:
    values = image.array[mask]
    solid = float(np.mean(values > SOLID_IN_LUNG_HU)) if values.size else 0.0
    if solid >= SOLID_SHARE:
        return "solid", solid
    if solid <= GGO_SHARE:
        return "ground-glass", solid
    return "part-solid", solid


def _side(seg: ChestSegmentation, mask: np.ndarray, image: Image, centroid: np.ndarray) -> str:
    """The lung the lesion touches most (within about 5 mm); by position when it touches neither."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    pad = np.ceil(5.0 / image.spacing).astype(int)
    pad[0] = 1
    sl = tuple(slice(max(b.start - p, 0), b.stop + p) for b, p in zip(box, pad, strict=True))
    near = ndimage.binary_dilation(mask[sl], structure=np.ones((3, 1 + 2 * pad[1], 1 + 2 * pad[2]),
                                                                 bool))
    left = int(np.count_nonzero(seg.lung_left[sl] & near))
    right = int(np.count_nonzero(seg.lung_right[sl] & near))
    if left != right:
        return "left" if left > right else "right"
    x = float(image.index_to_patient(centroid)[0])
    centres = [float(image.index_to_patient(np.array(ndimage.center_of_mass(m)))[0])
               for m in (seg.lung_left, seg.lung_right) if m.any()]
    return "left" if x > float(np.mean(centres)) else "right"


def detect_lung_lesions(image: Image, seg: ChestSegmentation) -> list[Finding]:
    """Find nodules and masses in the lungs of a chest CT.

    Parameters
    ----------
    image:
        The 3-D CT in HU that ``seg`` was made from.
    seg:
        :func:`medimg.segment.ct.segment_chest` of ``image``.

    Returns
    -------
    list[Finding]
        Sorted by probability (highest first), ids ``"F1"``, ``"F2"``, ...; each with a mask on the
        image grid, location, measurements, characterisation and provenance.  Empty when no lungs
        are in view.
    """
    step = "detect_lung_lesions"
    check_chest_ct(image, step)
    if seg.lung_left.shape != image.spatial_shape:
        msg = (f"{step}: the segmentation's grid {seg.lung_left.shape} is not the image's "
               f"{image.spatial_shape}; segment this image with segment_chest(image) first")
        raise StepError(msg)
    if not seg.lungs_present:
        return []
    grid = _working_grid(image, seg)
    up = float(image.direction[2, 0])
    inferior_step = -1 if up >= 0 else 1
    candidates, pieces, _, cavity = _candidates(grid, inferior_step)
    # Touching accepted pieces are one lesion.
    accepted = np.isin(pieces, [c.label for c in candidates])
    groups, n_groups = ndimage.label(accepted, structure=np.ones((3, 3, 3), bool))
    by_label = {c.label: c for c in candidates}
    params = _parameters()
    results: list[tuple[float, Finding]] = []
    for g in range(1, n_groups + 1):
        labels = [int(v) for v in np.unique(pieces[groups == g]) if int(v) in by_label]
        members = [by_label[lab] for lab in labels]
        mask, solidity = _full_mask(image, grid, pieces, cavity, labels)
        if not mask.any():
            continue
        measurements, diam = lesion_measurements(image, mask, hu=True)
        if not MIN_DIAMETER_MM <= diam.long_mm <= MAX_DIAMETER_MM:
            continue
        if solidity < MIN_SOLIDITY:
            continue
        best = max(members, key=lambda c: c.eq_diameter)
        prob = _probability(best, diam.long_mm)
        kind = "mass" if diam.long_mm >= MASS_MM else "nodule"
        texture, solid_share = _characterise(image, mask)
        measurements.append(Measurement(
            "solid_fraction", round(solid_share, 3), "1",
            f"share of lesion voxels above {SOLID_IN_LUNG_HU:g} HU"))
        centroid = np.array(ndimage.center_of_mass(mask))
        side = _side(seg, mask, image, centroid)
        zyx = np.argwhere(mask)
        bbox = (*[int(v) for v in zyx.min(axis=0)], *[int(v) + 1 for v in zyx.max(axis=0)])
        location = Location(
            side=side, zone=lung_zone(seg, image, centroid, side), structure="lung",
            centroid_index=tuple(round(float(v), 2) for v in centroid),  # type: ignore[arg-type]
            centroid_patient=tuple(round(float(v), 2)  # type: ignore[arg-type]
                                   for v in image.index_to_patient(centroid)),
            bbox_index=bbox,  # type: ignore[arg-type]
        )
        evidence: dict[str, Any] = {
            "kind": "features", "lung_contact": round(best.lung_contact, 3),
            "chest_wall_share": round(best.on_wall, 3),
            "attached_share": round(best.attached, 3),
            "blobness": None if best.blobness is None else round(best.blobness, 3),
            "compactness": round(best.compactness, 3), "solidity": round(solidity, 3),
            "found_as": best.kind,
            "long_axis_slice": diam.z, "long_axis_ends": diam.long_ends,
            "short_axis_ends": diam.short_ends,
        }
        finding = Finding(
            id="", kind=kind, code=LESION_CODES[kind], location=location,
            measurements=measurements, probability=prob,
            provenance=Provenance(ALGORITHM, VERSION, params),
            characterisation={"type": texture}, evidence=[evidence], mask=mask,
        )
        results.append((prob, finding))
    results.sort(key=lambda r: (-r[0], -(r[1].measurement("volume").value  # type: ignore[union-attr]
                                          )))
    findings = [f for _, f in results]
    for i, f in enumerate(findings, start=1):
        f.id = f"F{i}"
    return findings


def _parameters() -> dict[str, Any]:
    return {
        "work_mm": WORK_MM, "work_z_mm": WORK_Z_MM, "wall_mm": WALL_MM, "open_max_mm": OPEN_MAX_MM, "solid_in_lung_hu": SOLID_IN_LUNG_HU,
        "solid_out_lung_hu": SOLID_OUT_LUNG_HU, "ggo_hu": GGO_HU, "bone_hu": BONE_HU,
        "dynamics": DYNAMICS, "min_lung_contact": MIN_LUNG_CONTACT, "min_blobness": MIN_BLOBNESS,
        "wall_share": WALL_SHARE, "min_wall_blobness": MIN_WALL_BLOBNESS,
        "hessian_max_mm": HESSIAN_MAX_MM, "min_compactness": MIN_COMPACTNESS,
        "min_solidity": MIN_SOLIDITY,
        "min_diameter_mm": MIN_DIAMETER_MM, "max_diameter_mm": MAX_DIAMETER_MM,
        "mass_mm": MASS_MM, "solid_share": SOLID_SHARE, "ggo_share": GGO_SHARE,
        "probability": "product of memberships (lung contact, blobness or compactness, size); "
                       "a ranking score, not calibrated against pathology",
    }
