"""Read a written report back: :class:`~medimg.report.model.Report` from ``report.json``, and its masks
from ``masks.npz``.

``report.json`` deliberately leaves the masks out (they live on the analysed image's grid); to review,
sign and rewrite a report later -- or to build a surface mesh of a structure -- the server also keeps
them beside it: :func:`save_masks` writes ``masks.npz`` when the analysis writes its outputs, holding
every structure's and finding's mask (bit-packed, compressed) and the grid (shape, origin, spacing,
direction in LPS millimetres).  :func:`read_report` puts both together.

Reading is tolerant only where the schema is (optional fields); a document that does not follow its
schema version is refused with the same one-line error as the writer's.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..image import Image
from ..quality.report import Check, QualityReport
from .json_writer import validate_report_dict
from .model import (
    Code,
    Comparison,
    Finding,
    FindingReview,
    Location,
    Measurement,
    Provenance,
    Recommendation,
    Report,
    Review,
    Structure,
    StudyInfo,
    Triage,
)

__all__ = ["MASKS_FILE", "MaskGrid", "load_grid", "load_mask", "load_masks", "read_report", "report_from_dict",
           "save_masks"]

MASKS_FILE = "masks.npz"


def _code(d: dict[str, Any] | None) -> Code | None:
    return Code(d["value"], d["scheme"], d["meaning"]) if d else None


def _prov(d: dict[str, Any]) -> Provenance:
    return Provenance(d["algorithm"], d["version"], dict(d.get("parameters") or {}), d.get("model_card"))


def _measurement(d: dict[str, Any]) -> Measurement:
    value = d.get("value")
    return Measurement(d["name"], float("nan") if value is None else float(value), d["unit"], d["method"],
                       _code(d.get("code")))


def _triple(v: Any) -> tuple[float, float, float] | None:
    if v is None:
        return None
    return (float(v[0]), float(v[1]), float(v[2]))


def _location(d: dict[str, Any]) -> Location:
    bbox = d.get("bbox_index")
    return Location(side=d.get("side"), zone=d.get("zone"), structure=d.get("structure"),
                    centroid_index=_triple(d.get("centroid_index")),
                    centroid_patient=_triple(d.get("centroid_patient")),
                    bbox_index=tuple(int(x) for x in bbox) if bbox else None)  # type: ignore[arg-type]


def _finding(d: dict[str, Any]) -> Finding:
    return Finding(id=d["id"], kind=d["kind"], code=_code(d.get("code")), location=_location(d["location"]),
                   measurements=[_measurement(m) for m in d["measurements"]],
                   probability=float("nan") if d.get("probability") is None else float(d["probability"]),
                   provenance=_prov(d["provenance"]), characterisation=dict(d.get("characterisation") or {}),
                   evidence=list(d.get("evidence") or []), status=d.get("status", "ai"))


def _quality(d: dict[str, Any] | None) -> QualityReport | None:
    if d is None:
        return None
    checks = [Check(c["name"], c["status"], c.get("value"), c.get("threshold"), c["reason"], c.get("unit", ""))
              for c in d["checks"]]
    return QualityReport(checks=checks, kind=d.get("kind", ""), protocol=d.get("protocol"), source=d.get("source"))


def _review(d: dict[str, Any] | None) -> Review | None:
    if d is None:
        return None
    imp = d.get("impression") or {}
    return Review(state=d["state"], signed_by=d.get("signed_by", ""), signed_by_name=d.get("signed_by_name", ""),
                  signed_by_role=d.get("signed_by_role", ""), signed_at=d.get("signed_at"),
                  impression_ai=imp.get("ai", ""), impression_edited=bool(imp.get("edited")),
                  impression_by=imp.get("by", ""),
                  findings=[FindingReview(**f) for f in d.get("findings", [])])


def report_from_dict(doc: dict[str, Any]) -> Report:
    """The :class:`Report` of a ``report.json`` document (validated against its schema version)."""
    validate_report_dict(doc)
    study = StudyInfo(**doc["study"])
    structures = [Structure(s["name"], _code(s.get("code")), [_measurement(m) for m in s["measurements"]],
                            _prov(s["provenance"])) for s in doc["structures"]]
    comparisons = [Comparison(c["finding_id"], c["prior_study_uid"], c.get("prior_finding_id"),
                              [_measurement(m) for m in c["changes"]], c["summary"]) for c in doc["comparisons"]]
    recommendations = [Recommendation(r["guideline"], r["category"], r["text"], r["rule"], list(r["finding_ids"]),
                                      _prov(r["provenance"]), r.get("applicable", True))
                       for r in doc["recommendations"]]
    triage = Triage(doc["triage"]["priority"], doc["triage"]["reason"]) if doc.get("triage") else None
    return Report(
        study=study, protocol=doc["protocol"], status=doc["status"], quality=_quality(doc.get("quality")),
        structures=structures, findings=[_finding(f) for f in doc["findings"]], comparisons=comparisons,
        recommendations=recommendations, triage=triage, refusal=doc.get("refusal"),
        impression=doc.get("impression", ""), preprocessing=list(doc.get("preprocessing") or []),
        steps=[_prov(p) for p in doc.get("steps") or []], timings=dict(doc.get("timings") or {}),
        created=doc["created"], medimg_version=doc.get("medimg_version", ""), disclaimer=doc["disclaimer"],
        review=_review(doc.get("review")),
    )


# ---------------------------------------------------------------------------------------- masks
@dataclass(frozen=True)
class MaskGrid:
    """The grid the masks lie on: the analysed image's shape and geometry (LPS mm)."""

    shape: tuple[int, int, int]  # (z, y, x)
    origin: np.ndarray  # (3,) patient position of voxel (0, 0, 0)
    spacing: np.ndarray  # (3,) (z, y, x) mm
    direction: np.ndarray  # (3, 3) columns: patient directions of the (z, y, x) index axes

    def index_to_patient(self, index: Any) -> np.ndarray:
        """Patient (LPS mm) coordinates of (z, y, x) indices (``(..., 3)``), as :meth:`Image.index_to_patient`."""
        idx = np.asarray(index, dtype=float)
        return self.origin + (idx * self.spacing) @ self.direction.T

    def patient_to_index(self, points: Any) -> np.ndarray:
        pts = np.asarray(points, dtype=float)
        return ((pts - self.origin) @ np.linalg.inv(self.direction).T) / self.spacing


def save_masks(report: Report, image: Image | None, folder: str | os.PathLike[str]) -> Path | None:
    """Write ``masks.npz`` (every non-empty mask of ``report`` and the grid of ``image``) into
    ``folder`` atomically; ``None`` (nothing written) when there is no 3-D image or no mask."""
    if image is None or image.array.ndim != 3:
        return None
    items: list[tuple[str, np.ndarray]] = [(f"structure:{s.name}", s.mask) for s in report.structures
                                           if s.mask is not None]
    items += [(f"finding:{f.id}", f.mask) for f in report.findings if f.mask is not None]
    items = [(k, m) for k, m in items if m.shape == image.spatial_shape and m.any()]
    if not items:
        return None
    arrays: dict[str, np.ndarray] = {
        "keys": np.array(json.dumps([k for k, _ in items])),
        "shape": np.asarray(image.spatial_shape, dtype=np.int64),
        "origin": np.asarray(image.origin, dtype=np.float64),
        "spacing": np.asarray(image.spacing, dtype=np.float64),
        "direction": np.asarray(image.direction, dtype=np.float64),
    }
    for i, (_key, mask) in enumerate(items):
        arrays[f"mask{i}"] = np.packbits(np.asarray(mask, dtype=bool).ravel())
    out = Path(folder)
    fd, tmp = tempfile.mkstemp(prefix=".masks-", suffix=".npz", dir=out)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out / MASKS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out / MASKS_FILE


def load_grid(folder: str | os.PathLike[str]) -> tuple[list[str], MaskGrid] | None:
    """The keys and the grid of ``folder/masks.npz`` without reading the masks, or ``None``."""
    path = Path(folder) / MASKS_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["keys"])), _grid(z, path)


def _grid(z: Any, path: Path) -> MaskGrid:
    shape = tuple(int(v) for v in z["shape"])
    if len(shape) != 3:
        msg = f"{path}: the grid has {len(shape)} dimensions, expected 3; the file is damaged"
        raise ValueError(msg)
    return MaskGrid((shape[0], shape[1], shape[2]), np.array(z["origin"], dtype=float),
                    np.array(z["spacing"], dtype=float), np.array(z["direction"], dtype=float).reshape(3, 3))


def load_mask(folder: str | os.PathLike[str], key: str) -> tuple[np.ndarray, MaskGrid] | None:
    """One mask of ``folder/masks.npz`` (``"structure:<name>"`` or ``"finding:<id>"``) and its grid;
    ``None`` when there is no such mask."""
    path = Path(folder) / MASKS_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        keys = json.loads(str(z["keys"]))
        if key not in keys:
            return None
        grid = _grid(z, path)
        bits = z[f"mask{keys.index(key)}"]
    return np.unpackbits(bits, count=int(np.prod(grid.shape))).astype(bool).reshape(grid.shape), grid


def load_masks(folder: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], MaskGrid] | None:
    """The masks of ``folder/masks.npz`` by key (``"structure:<name>"``, ``"finding:<id>"``) and their
    grid, or ``None`` when the folder has no masks file."""
    path = Path(folder) / MASKS_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        keys = json.loads(str(z["keys"]))
        grid = _grid(z, path)
        n = int(np.prod(grid.shape))
        masks = {k: np.unpackbits(z[f"mask{i}"], count=n).astype(bool).reshape(grid.shape)
                 for i, k in enumerate(keys)}
    return masks, grid


def read_report(folder: str | os.PathLike[str]) -> Report:
    """The report of an output folder (``report.json``), with the masks of ``masks.npz`` when present."""
    folder = Path(folder)
    path = folder / "report.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"{path}: cannot read the report ({exc.strerror})"
        raise FileNotFoundError(msg) from None
    report = report_from_dict(doc)
    loaded = load_masks(folder)
    if loaded is not None:
        masks, _grid = loaded
        for s in report.structures:
            s.mask = masks.get(f"structure:{s.name}")
        for f in report.findings:
            f.mask = masks.get(f"finding:{f.id}")
    return report
