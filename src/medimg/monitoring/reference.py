"""Training references for drift monitoring: the input features (:mod:`.features`) of the data each
shipped model was trained on, and of the chest CT protocol's calibration set, summarised in a small
JSON file per protocol (``medimg/monitoring/references/PROTOCOL.json``, shipped as package data).

    python -m medimg.monitoring.reference [--data DIR] [--out DIR] [--check] [PROTOCOL ...]

regenerates them from the real data (``--data``, default ``$MEDIMG_DATA`` or ``../shared/data``);
``--check`` compares instead of writing and exits 1 when a committed file differs.

=============  ================  ====================================================================
protocol       model             reference data
=============  ================  ====================================================================
chest_ct       lung detector     ct/lung-pet-ct-dx-A0001 series-2 and series-3: the two reconstructions
                                 (kernels L and B, 5 mm, Philips Brilliance16) the protocol was
                                 calibrated on -- one patient, so numeric features use the range rule
chest_xray     cxr-pneumonia     xray/pneumoniamnist.npz split train (4708 images)
breast_us      us-breast         us/breastmnist.npz splits train and val (624 images: the model's
                                 10-fold cross-validation pool)
retina         retina-vessels    retina/drive/training/images (20: the 17 training + 3 validation)
=============  ================  ====================================================================

A feature is summarised by its kind: categorical ones by their ``counts``; numeric ones (settings
included) by ``n``, ``min``, ``max``, ``mean``, ``std`` and either their sorted ``values`` (up to
:data:`MAX_VALUES`) or :data:`QUANTILES` evenly spaced quantiles.  A feature the data does not record
(MedMNIST and DRIVE keep no DICOM header) has ``n = 0`` and a ``note`` saying so.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .drift import feature_kind
from .features import CATEGORICAL, PIXEL_DOMAIN, PIXEL_STATS, PROTOCOL_MODELS, describe, pixel_stats

__all__ = ["FORMAT", "MAX_VALUES", "QUANTILES", "REFERENCES", "build", "load_reference", "main",
           "reference_dir", "summarise"]

FORMAT = "medimg-drift-reference/1"
MAX_VALUES = 200
QUANTILES = 101

_NO_HEADER = "not recorded in the training data ({what} keeps no DICOM header)"

#: protocol -> (data path under the data folder, split, features compared, notes on features the
#: data does not record)
REFERENCES: dict[str, dict[str, Any]] = {
    "chest_ct": {
        "data": "ct/lung-pet-ct-dx-A0001", "split": "series-2, series-3",
        "features": ("scanner", "kernel", "slice_thickness", "kvp", "pixel_spacing", *PIXEL_STATS),
        "notes": {},
        "description": "the chest CT protocol's calibration set: one patient, two reconstructions (kernels L "
                       "and B) of one 5 mm Philips Brilliance16 acquisition",
    },
    "chest_xray": {
        "data": "xray/pneumoniamnist.npz", "split": "train",
        "features": ("scanner", "kvp", "pixel_spacing", *PIXEL_STATS),
        "notes": {k: _NO_HEADER.format(what="PneumoniaMNIST") for k in ("scanner", "kvp", "pixel_spacing")},
        "description": "the training split of PneumoniaMNIST (paediatric chest X-rays, one centre)",
    },
    "breast_us": {
        "data": "us/breastmnist.npz", "split": "train+val",
        "features": ("scanner", "pixel_spacing", *PIXEL_STATS),
        "notes": {k: _NO_HEADER.format(what="BreastMNIST") for k in ("scanner", "pixel_spacing")},
        "description": "the training and validation splits of BreastMNIST (breast ultrasound, one public "
                       "dataset), pooled for the model's 10-fold cross-validation",
    },
    "retina": {
        "data": "retina/drive", "split": "training",
        "features": ("scanner", "rows", *PIXEL_STATS, "fov_fraction"),
        "notes": {"scanner": "not recorded in the training data (DRIVE's TIFF files keep no header; the "
                             "dataset names a Canon CR5 non-mydriatic 3CCD camera)"},
        "description": "the 20 DRIVE training images (17 for training, 3 for calibration)",
    },
}

_UNITS = {"slice_thickness": "mm", "kvp": "kV", "pixel_spacing": "mm", "rows": "{pixels}",
          "fov_fraction": "1"}


def reference_dir() -> Path:
    return Path(__file__).resolve().parent / "references"


def _data_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    env = os.environ.get("MEDIMG_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _g(x: float) -> float:
    return float(f"{x:.6g}")


def summarise(name: str, values: Sequence[Any], unit: str = "", note: str = "") -> dict[str, Any]:
    """The reference summary of one feature over the reference rows (module docstring)."""
    if name in CATEGORICAL:
        counts: dict[str, int] = {}
        for v in values:
            if v is not None:
                counts[str(v)] = counts.get(str(v), 0) + 1
        out: dict[str, Any] = {"kind": "categorical", "n": sum(counts.values()), "counts": dict(sorted(counts.items()))}
        if not counts:
            out["note"] = note or "not recorded in the reference data"
        return out
    nums = np.sort(np.asarray([float(v) for v in values if v is not None], dtype=np.float64))
    out = {"kind": feature_kind(name), "unit": unit, "n": int(nums.size)}
    if nums.size == 0:
        out["note"] = note or "not recorded in the reference data"
        return out
    out.update(min=_g(nums[0]), max=_g(nums[-1]), mean=_g(nums.mean()), std=_g(nums.std()))
    if nums.size <= MAX_VALUES:
        out["values"] = [_g(v) for v in nums]
    else:
        out["quantiles"] = [_g(v) for v in np.quantile(nums, np.linspace(0.0, 1.0, QUANTILES))]
    return out


# ---------------------------------------------------------------------------------------- rows
def _ct_rows(data: Path) -> list[dict[str, Any]]:
    from ..io.dicom import index, load_series

    idx = index(data / REFERENCES["chest_ct"]["data"])
    entries = sorted(idx.series, key=lambda e: e.series_number or 0)
    if len(entries) != 2:
        msg = f"{data / REFERENCES['chest_ct']['data']}: expected the 2 series of the calibration study, found {len(entries)}"
        raise RuntimeError(msg)
    return [describe(None, load_series(e), "chest_ct") for e in entries]


def _classifier_rows(data: Path, protocol: str) -> list[dict[str, Any]]:
    from ..io.datasets import load_npz
    from ..models import load
    from ..models.contract import prepare

    spec = REFERENCES[protocol]
    contract = load(PROTOCOL_MODELS[protocol]).contract
    images = [a for split in spec["split"].split("+") for a in load_npz(data / spec["data"], split).images]
    rows = []
    for arr in images:  # as the protocol does: the whole image, prepared as the network's input
        rows.append(dict(pixel_stats(prepare(np.asarray(arr), contract))))
    return rows


def _retina_rows(data: Path) -> list[dict[str, Any]]:
    from ..io import read

    folder = data / REFERENCES["retina"]["data"] / "training" / "images"
    files = sorted(folder.glob("*.tif"))
    if len(files) != 20:
        msg = f"{folder}: expected the 20 DRIVE training images, found {len(files)}"
        raise RuntimeError(msg)
    return [describe(None, read(p).replace(modality="OP"), "retina") for p in files]


_ROWS: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
    "chest_ct": _ct_rows,
    "chest_xray": lambda d: _classifier_rows(d, "chest_xray"),
    "breast_us": lambda d: _classifier_rows(d, "breast_us"),
    "retina": _retina_rows,
}


def build(protocol: str, data: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The reference of ``protocol`` computed from the real data (module docstring)."""
    if protocol not in REFERENCES:
        msg = f"no drift reference is defined for protocol {protocol!r}; use one of {', '.join(REFERENCES)}"
        raise ValueError(msg)
    spec = REFERENCES[protocol]
    rows = _ROWS[protocol](_data_dir(os.fspath(data) if data else None))
    bad = [r["error"] for r in rows if "error" in r]
    if bad:
        msg = f"{protocol}: features of {len(bad)} reference image(s) could not be computed; first: {bad[0]}"
        raise RuntimeError(msg)
    domain, px_unit = PIXEL_DOMAIN[protocol]
    features = {}
    for name in spec["features"]:
        unit = px_unit if name in PIXEL_STATS else _UNITS.get(name, "")
        features[name] = summarise(name, [r.get(name) for r in rows], unit, spec["notes"].get(name, ""))
    return {
        "format": FORMAT,
        "protocol": protocol,
        "model": PROTOCOL_MODELS[protocol],
        "data": spec["data"],
        "split": spec["split"],
        "description": spec["description"],
        "n": len(rows),
        "pixel_statistics_of": domain,
        "generated_by": f"python -m medimg.monitoring.reference {protocol}",
        "features": features,
    }


@functools.cache
def _read(path: str, mtime: float) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def load_reference(protocol: str, folder: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The shipped reference of ``protocol`` (``None`` when it has none)."""
    p = Path(folder) if folder else reference_dir()
    f = p / f"{protocol}.json"
    if not f.is_file():
        return None
    ref = _read(str(f), f.stat().st_mtime)
    if ref.get("format") != FORMAT:
        msg = f"{f}: format {ref.get('format')!r}, expected {FORMAT!r}; regenerate it with python -m medimg.monitoring.reference"
        raise ValueError(msg)
    return ref


def _dump(ref: dict[str, Any]) -> str:
    """Indented JSON with each list of numbers on one line (small, and diffs stay readable)."""
    text = json.dumps(ref, indent=1)
    return re.sub(r"\[\s*([-+0-9.eE,\s]+?)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m medimg.monitoring.reference", description=__doc__.split("\n\n")[0])
    ap.add_argument("protocols", nargs="*", help=f"protocols (default: all of {', '.join(REFERENCES)})")
    ap.add_argument("--data", help="the real data folder (default: $MEDIMG_DATA or ../shared/data)")
    ap.add_argument("--out", help="where to write (default: the package's references folder)")
    ap.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else reference_dir()
    unknown = [p for p in args.protocols if p not in REFERENCES]
    if unknown:
        print(f"error: unknown protocol {unknown[0]!r}; use one of {', '.join(REFERENCES)}", file=sys.stderr)
        return 2
    differ = []
    for protocol in args.protocols or list(REFERENCES):
        text = _dump(build(protocol, args.data))
        path = out / f"{protocol}.json"
        if args.check:
            same = path.is_file() and path.read_text(encoding="utf-8") == text
            print(f"{path}: {'up to date' if same else 'DIFFERS'}")
            if not same:
                differ.append(protocol)
            continue
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"{path}: {len(text)} bytes")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
