"""Surface meshes of segmented structures, for 3-D printing and planning.

``GET /api/studies/{uid}/mesh`` lists what can be meshed; ``GET /api/studies/{uid}/mesh/{name}.stl``
returns a **binary STL** of one structure (``lung_left``, ``airways``, ...) or finding (``F1``) of the
study's latest finished analysis: marching cubes (scikit-image, level 0.45) of its mask, padded by one
empty voxel on every side so that the surface is closed, vertices in the DICOM patient frame (LPS,
millimetres), triangles wound counter-clockwise seen from outside (outward normals), as 3-D printing
software expects.  ``?step=2`` (up to 4) samples every second voxel for a lighter mesh.

The mask comes from ``masks.npz`` beside the report (written by the analysis), or, for analyses made
before that file existed, from the segment of ``seg.dcm`` whose Tracking ID is the name.  Meshes are
cached in the analysis folder (``meshes/``) under server-generated names.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse

from ..report.load import MaskGrid, load_grid, load_mask
from . import worklist as wl
from .api import KnownStudy
from .auth import CurrentUser

if TYPE_CHECKING:
    from .app import MedimgServer

__all__ = ["binary_stl", "mask_surface", "router", "structure_mask"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Just under one half: where two voxels touch only along an edge or a corner, the trilinear saddle
#: value (exactly 0.5) is above the level, so the surface joins them there instead of pinching into a
#: non-manifold edge; every edge of the mesh is then shared by exactly two triangles.
_LEVEL = 0.45
_STL = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])


def mask_surface(mask: np.ndarray, grid: MaskGrid, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(vertices ``(n, 3)`` in LPS mm, faces ``(m, 3)`` vertex indices) of the closed surface of ``mask``."""
    from skimage.measure import marching_cubes

    where = np.argwhere(mask)
    if where.size == 0:
        msg = "the mask is empty; there is no surface"
        raise ValueError(msg)
    lo, hi = where.min(axis=0), where.max(axis=0) + 1
    # ``step`` empty voxels before, at least as many after, and a size of 1 + a multiple of ``step`` so
    # that the samples marching cubes takes (every ``step``-th voxel) start and end outside the mask
    size = hi - lo + 2 * step
    size += (-(size - 1)) % step
    crop = np.zeros(tuple(int(n) for n in size), dtype=np.float32)
    n = hi - lo
    crop[step:step + n[0], step:step + n[1], step:step + n[2]] = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    verts, faces, _normals, _values = marching_cubes(crop, level=_LEVEL, step_size=step, allow_degenerate=False)
    points = grid.index_to_patient(verts + (lo - step))
    faces = faces.astype(np.int64)
    # Outward normals: the signed volume of a closed surface is positive when its triangles are wound
    # counter-clockwise seen from outside; the index-to-patient map may mirror, so check and flip.
    a, b, c = points[faces[:, 0]], points[faces[:, 1]], points[faces[:, 2]]
    if float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) < 0:
        faces = faces[:, [0, 2, 1]]
    return points, faces


def binary_stl(points: np.ndarray, faces: np.ndarray, header: str = "medimg") -> bytes:
    """Binary STL of a triangle mesh (80-byte header, count, 50 bytes per triangle)."""
    tri = points[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    records = np.zeros(len(faces), dtype=_STL)
    records["normal"] = normals
    records["vertices"] = tri
    head = header.encode("ascii", "replace")[:80].ljust(80, b" ")
    return head + np.uint32(len(faces)).tobytes() + records.tobytes()


def _grid_of_volume(affine: np.ndarray, shape: tuple[int, ...]) -> MaskGrid:
    cols = np.asarray(affine, dtype=float)[:3, :3]
    spacing = np.linalg.norm(cols, axis=0)
    return MaskGrid((int(shape[0]), int(shape[1]), int(shape[2])), np.asarray(affine, dtype=float)[:3, 3].copy(),
                    spacing, cols / spacing)


def _from_seg(folder: Path, name: str) -> tuple[np.ndarray, MaskGrid] | None:
    path = folder / "seg.dcm"
    if not path.is_file():
        return None
    import highdicom as hd

    seg = hd.seg.segread(path)
    number = next((int(s.SegmentNumber) for s in seg.SegmentSequence if str(getattr(s, "TrackingID", "")) == name),
                  None)
    if number is None:
        return None
    vol = seg.get_volume(segment_numbers=[number], combine_segments=False)
    array = np.asarray(vol.array)
    if array.ndim == 4:
        array = array[..., 0]
    return array > 0, _grid_of_volume(vol.affine, array.shape)


def structure_mask(folder: Path, name: str) -> tuple[np.ndarray, MaskGrid, str] | None:
    """The mask of structure or finding ``name`` in an analysis folder, its grid and its key."""
    for key in (f"structure:{name}", f"finding:{name}"):
        found = load_mask(folder, key)
        if found is not None:
            return found[0], found[1], key
    if load_grid(folder) is None:
        from_seg = _from_seg(folder, name)
        if from_seg is not None:
            return from_seg[0], from_seg[1], f"segment:{name}"
    return None


def _names(folder: Path) -> list[dict[str, str]]:
    loaded = load_grid(folder)
    if loaded is not None:
        return [{"name": k.split(":", 1)[1], "kind": k.split(":", 1)[0]} for k in loaded[0]]
    path = folder / "seg.dcm"
    if path.is_file():
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return [{"name": str(s.TrackingID), "kind": "segment"} for s in ds.SegmentSequence if "TrackingID" in s]
    return []


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".mesh-", suffix=".stl", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def router(server: MedimgServer) -> APIRouter:
    r = APIRouter(prefix="/api/studies/{uid}")
    store = server.store

    def folder_of(uid: str) -> Path:
        found = wl.finished_analysis(store, uid)
        if found is None:
            raise HTTPException(404, f"study {uid} has no finished analysis, so nothing was segmented")
        return found[1]

    @r.get("/mesh")
    def meshes(_user: CurrentUser, uid: KnownStudy) -> dict[str, Any]:
        return {"study_uid": uid, "items": _names(folder_of(uid))}

    @r.get("/mesh/{name}.stl", response_class=FileResponse)
    def mesh(_user: CurrentUser, uid: KnownStudy, name: str,
             step: Annotated[int, Query(ge=1, le=4)] = 1) -> FileResponse:
        if not _NAME.fullmatch(name):
            raise HTTPException(400, f"structure name {name[:80]!r} is not valid")
        folder = folder_of(uid)
        found = structure_mask(folder, name)
        if found is None:
            listed = ", ".join(n["name"] for n in _names(folder)) or "none"
            raise HTTPException(404, f"the analysis of study {uid} has no segmented structure {name!r} "
                                     f"(it has: {listed})")
        mask, grid, key = found
        # cached under a name made here (the key's position in the sorted keys), never from the request
        keys = sorted(n["kind"] + ":" + n["name"] for n in _names(folder))
        slot = keys.index(key) if key in keys else len(keys)
        cache = folder / "meshes" / f"{slot:03d}-step{step}.stl"
        if not cache.is_file():
            points, faces = mask_surface(mask, grid, step)
            _write_atomic(cache, binary_stl(points, faces, f"medimg {name} LPS mm"))
        return FileResponse(cache, media_type="model/stl", filename=f"{name}.stl")

    return r
