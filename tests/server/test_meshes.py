"""Surface meshes (server/meshes.py) of the structures the analysis of the real chest CT segmented:
``GET /api/studies/{uid}/mesh/{name}.stl`` is a binary STL whose bounding box matches the mask's extent
in patient coordinates (LPS mm), closed (every edge shared by exactly two triangles), wound outward
(its signed volume is the mask's volume); the same surface from the SEG when masks.npz is absent;
listing, caching, bad names and the session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from workstation_helpers import analysed_ct, signed_in

from medimg.report.load import MASKS_FILE, load_mask
from medimg.server import worklist as wl
from medimg.server.meshes import mask_surface, structure_mask

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_meshes")]


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory, ct_files: list[Path]) -> Iterator[tuple[Any, str, httpx.Client]]:
    with analysed_ct(tmp_path_factory.mktemp("meshes"), ct_files) as (server, uid), signed_in(server, "tom") as c:
        yield server, uid, c


def read_stl(data: bytes) -> tuple[str, np.ndarray, np.ndarray]:
    """(header, normals (n, 3), triangles (n, 3, 3)) of a binary STL; checks its length."""
    count = int(np.frombuffer(data[80:84], dtype="<u4")[0])
    assert len(data) == 84 + 50 * count
    rec = np.frombuffer(data[84:], dtype=np.dtype([("n", "<f4", (3,)), ("v", "<f4", (3, 3)), ("a", "<u2")]))
    return data[:80].decode("ascii").strip(), rec["n"].astype(float), rec["v"].astype(float)


def edge_counts(triangles: np.ndarray) -> np.ndarray:
    """How many triangles share each undirected edge (vertices identified by their coordinates)."""
    _, inverse = np.unique(np.round(triangles.reshape(-1, 3), 3), axis=0, return_inverse=True)
    faces = inverse.reshape(-1, 3)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return counts


def signed_volume(triangles: np.ndarray) -> float:
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def folder_of(server: Any, uid: str) -> Path:
    found = wl.finished_analysis(server.store, uid)
    assert found is not None
    return found[1]


def test_lung_mesh_matches_the_mask_in_patient_coordinates(ct: tuple[Any, str, httpx.Client]) -> None:
    server, uid, c = ct
    r = c.get(f"/api/studies/{uid}/mesh/lung_left.stl")
    assert r.status_code == 200 and r.headers["content-type"] == "model/stl"
    assert 'filename="lung_left.stl"' in r.headers["content-disposition"]
    header, normals, tri = read_stl(r.content)
    assert header == "medimg lung_left LPS mm"
    assert len(tri) > 10000
    mask, grid = load_mask(folder_of(server, uid), "structure:lung_left") or (None, None)
    assert mask is not None and grid is not None
    centres = grid.index_to_patient(np.argwhere(mask))
    lo, hi = centres.min(axis=0), centres.max(axis=0)
    # the surface lies between a voxel's centre and its empty neighbour's: within one voxel of the
    # extent of the voxel centres along each patient axis (spacing mapped through the direction)
    voxel = np.abs(grid.direction * grid.spacing).max(axis=1)
    points = tri.reshape(-1, 3)
    assert np.all(points.min(axis=0) >= lo - voxel) and np.all(points.min(axis=0) <= lo)
    assert np.all(points.max(axis=0) <= hi + voxel) and np.all(points.max(axis=0) >= hi)
    right = load_mask(folder_of(server, uid), "structure:lung_right")
    assert right is not None  # LPS: x grows to the patient's left
    assert points[:, 0].mean() > grid.index_to_patient(np.argwhere(right[0]))[:, 0].mean() + 50
    # closed: every edge is shared by exactly two triangles
    assert set(edge_counts(tri).tolist()) == {2}
    # wound outward: positive signed volume, the mask's volume to within a few per cent
    mask_volume = float(mask.sum() * np.prod(grid.spacing))
    assert signed_volume(tri) == pytest.approx(mask_volume, rel=0.05)
    # the stored normals are unit vectors agreeing with the winding
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)
    assert np.all(np.einsum("ij,ij->i", cross, normals) > 0)


def test_a_finding_mesh_and_a_coarser_step(ct: tuple[Any, str, httpx.Client]) -> None:
    server, uid, c = ct
    fine = read_stl(c.get(f"/api/studies/{uid}/mesh/F1.stl").content)[2]
    coarse = read_stl(c.get(f"/api/studies/{uid}/mesh/F1.stl", params={"step": 2}).content)[2]
    assert 0 < len(coarse) < len(fine) / 2
    for tri in (fine, coarse):
        assert set(edge_counts(tri).tolist()) == {2}
        assert signed_volume(tri) > 0
    mask, grid = load_mask(folder_of(server, uid), "finding:F1") or (None, None)
    assert mask is not None and grid is not None
    assert signed_volume(fine) == pytest.approx(float(mask.sum() * np.prod(grid.spacing)), rel=0.05)
    cached = sorted(p.name for p in (folder_of(server, uid) / "meshes").iterdir())
    assert len(cached) >= 2 and all(p.endswith(".stl") for p in cached)  # F1 at step 1 and step 2
    assert c.get(f"/api/studies/{uid}/mesh/F1.stl").content == c.get(f"/api/studies/{uid}/mesh/F1.stl").content


def test_the_seg_gives_the_same_surface_when_masks_npz_is_absent(ct: tuple[Any, str, httpx.Client],
                                                                   tmp_path: Path) -> None:
    server, uid, _c = ct
    folder = folder_of(server, uid)
    copy = tmp_path / "analysis"
    copy.mkdir()
    shutil.copy2(folder / "seg.dcm", copy / "seg.dcm")
    assert not (copy / MASKS_FILE).exists()
    from_seg = structure_mask(copy, "airways")
    from_npz = structure_mask(folder, "airways")
    assert from_seg is not None and from_npz is not None
    assert from_seg[2] == "segment:airways" and from_npz[2] == "structure:airways"
    assert int(from_seg[0].sum()) == int(from_npz[0].sum())
    a, fa = mask_surface(from_seg[0], from_seg[1])
    b, fb = mask_surface(from_npz[0], from_npz[1])
    assert len(fa) == len(fb)
    assert np.allclose(a.min(axis=0), b.min(axis=0), atol=1e-3) and np.allclose(a.max(axis=0), b.max(axis=0), atol=1e-3)
    assert signed_volume(a[fa]) == pytest.approx(signed_volume(b[fb]), rel=1e-6)


def test_listing_bad_names_unknown_structures_and_the_session(ct: tuple[Any, str, httpx.Client]) -> None:
    server, uid, c = ct
    listed = c.get(f"/api/studies/{uid}/mesh").json()["items"]
    assert [(i["kind"], i["name"]) for i in listed] == [
        ("structure", "body"), ("structure", "lung_left"), ("structure", "lung_right"), ("structure", "airways"),
        ("finding", "F1")]
    r = c.get(f"/api/studies/{uid}/mesh/liver.stl")
    assert r.status_code == 404 and "no segmented structure 'liver'" in r.json()["error"]
    assert "lung_left" in r.json()["error"]
    assert c.get(f"/api/studies/{uid}/mesh/.hidden.stl").status_code == 400
    assert c.get(f"/api/studies/{uid}/mesh/lung_left.stl", params={"step": 9}).status_code == 400
    assert c.get("/api/studies/1.2.3/mesh/lung_left.stl").status_code == 404
    with httpx.Client(base_url=f"http://127.0.0.1:{server.config.http_port}") as anon:
        assert anon.get(f"/api/studies/{uid}/mesh/lung_left.stl").status_code == 401
