"""Datasets for training and evaluation: NPZ (MedMNIST), folders of images (and masks), CSV manifests.

Every source gives the same two shapes of data, already prepared as the model's input contract says
(:func:`medimg.models.contract.prepare`):

* :class:`ClassData`: ``x`` ``(n, c, y, x)`` float32 and integer labels ``y``.
* :class:`SegData`: lists of ``(c, y, x)`` images, ``(y, x)`` binary masks and field-of-view masks.

Sources (``data.source``, or ``auto`` from the path):

* ``npz``: a MedMNIST-style file; splits by name.
* ``folder``, classification: class subfolders (``root/normal/*.png``, ``root/pneumonia/*.png``),
  optionally under split folders (``root/train/normal/...``).  Without split folders, ``val`` and
  ``test`` are drawn from the images, stratified and seeded (``data.val_fraction`` each).
* ``folder``, segmentation: ``images/`` with ``masks/`` (or ``labels/``, ``1st_manual/``) and an
  optional field-of-view folder ``mask/`` or ``fov/``, optionally under split folders
  (``training/``, ``test/`` as DRIVE has them).  Files pair by the first number in their names, or
  by equal names.
* ``csv``: columns ``image`` and ``label`` (classification) or ``mask`` (segmentation), optional
  ``fov`` and ``split``; paths relative to the CSV file.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.contract import Contract, prepare

__all__ = ["ClassData", "SegData", "load_split", "read_array"]

_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp"}
_SPLIT_DIRS = {"train": ("train", "training"), "val": ("val", "validation", "valid"),
               "test": ("test", "testing")}
_MASK_DIRS = ("masks", "labels", "1st_manual", "manual", "segmentations")
_FOV_DIRS = ("fov", "mask", "roi")


@dataclass
class ClassData:
    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class SegData:
    images: list[np.ndarray]
    masks: list[np.ndarray]
    fovs: list[np.ndarray]
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def read_array(path: Path) -> np.ndarray:
    """A raster file as ``(y, x)`` or ``(y, x, 3)`` (medimg.io.raster; errors name the file)."""
    from ..io.raster import read_raster

    return read_raster(path).array[0]


def _to_channels(arr: np.ndarray, channels: str) -> np.ndarray:
    if channels == "grey" and arr.ndim == 3:
        rgb = arr[..., :3].astype(np.float32)
        grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return grey.astype(arr.dtype) if arr.dtype == np.uint8 else grey
    if channels == "rgb" and arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=-1)
    if channels == "rgb" and arr.ndim == 3 and arr.shape[-1] == 4:
        return arr[..., :3]
    return arr


def _key(path: Path) -> str:
    m = re.search(r"\d+", path.stem)
    if m is None:
        return path.stem
    return m.group(0).lstrip("0") or "0"


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_EXT and p.is_file())


def _split_dir(root: Path, split: str) -> Path | None:
    for name in _SPLIT_DIRS.get(split, (split,)):
        if (root / name).is_dir():
            return root / name
    return None


def _has_split_dirs(root: Path) -> bool:
    return any(_split_dir(root, s) for s in ("train", "test"))


def _draw(n_items: list[int], labels: np.ndarray | None, split: str, frac: float,
          seed: int = 0) -> np.ndarray:
    """Indices of ``split`` when a source has no split of its own: seeded, stratified when labelled."""
    n = len(n_items)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if labels is not None \
        else [np.arange(n)]
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for g in groups:
        g = rng.permutation(g)
        k = max(1, round(frac * len(g))) if len(g) > 2 else 0
        parts["val"] += g[:k].tolist()
        parts["test"] += g[k:2 * k].tolist()
        parts["train"] += g[2 * k:].tolist()
    if split not in parts:
        raise InputError(None, f"split {split!r} does not exist", "use train, val or test")
    return np.array(sorted(parts[split]), dtype=int)


def _class_folder(root: Path, split: str, dcfg: dict[str, Any]) -> tuple[list[Path], np.ndarray, list[str]]:
    if split == "all":
        base: Path | None = root
    else:
        base = _split_dir(root, split) if _has_split_dirs(root) else root
    if base is None:
        raise InputError(root, f"has no {split!r} folder", "add it or drop the split folders")
    folders = {p.name.lower(): p.name for p in base.iterdir() if p.is_dir()}
    classes = dcfg.get("classes") or sorted(folders.values())
    if len(classes) < 2:
        msg = "needs at least two class subfolders (e.g. normal/, pneumonia/)"
        raise InputError(base, msg, "put each class's images in its own subfolder")
    paths: list[Path] = []
    labels: list[int] = []
    for i, c in enumerate(classes):
        name = folders.get(str(c).lower())  # NORMAL/ and normal/ are the same class
        if name is None:
            msg = f"has no class folder {c!r} (folders: {', '.join(sorted(folders.values())) or 'none'})"
            raise InputError(base, msg, "name the class folders as the model's classes")
        files = _images_in(base / name)
        paths += files
        labels += [i] * len(files)
    y = np.array(labels, dtype=np.int64)
    if split != "all" and not _has_split_dirs(root):
        idx = _draw(list(range(len(paths))), y, split, float(dcfg["val_fraction"]))
        paths, y = [paths[i] for i in idx], y[idx]
    return paths, y, list(classes)


def _seg_folder(root: Path, split: str, dcfg: dict[str, Any]) -> list[tuple[Path, Path, Path | None]]:
    base = root
    drawn = False
    if split == "all":
        pass
    elif _has_split_dirs(root):
        sub = _split_dir(root, split)
        if sub is None and split == "val":
            sub, drawn = _split_dir(root, "train"), True
        elif split == "train" and _split_dir(root, "val") is None:
            drawn = True
        if sub is None:
            raise InputError(root, f"has no {split!r} folder", "add it or drop the split folders")
        base = sub
    else:
        drawn = True
    img_dir = base / "images"
    if not img_dir.is_dir():
        raise InputError(base, "has no images/ folder", "put images in images/ and masks in masks/")
    mask_dir = next((base / d for d in _MASK_DIRS if (base / d).is_dir()), None)
    if mask_dir is None:
        raise InputError(base, f"has no mask folder ({', '.join(_MASK_DIRS)})",
                         "put the ground-truth masks in masks/")
    fov_dir = next((base / d for d in _FOV_DIRS if (base / d).is_dir() and base / d != mask_dir), None)
    masks = {_key(p): p for p in _images_in(mask_dir)}
    fovs = {_key(p): p for p in _images_in(fov_dir)} if fov_dir else {}
    items = []
    for p in _images_in(img_dir):
        k = _key(p)
        if k not in masks:
            raise InputError(p, f"has no mask in {mask_dir}", "name masks with the image's number")
        items.append((p, masks[k], fovs.get(k)))
    if drawn:
        # A source without its own split: the last val_fraction of the (sorted) images is val.
        n_val = max(1, round(float(dcfg["val_fraction"]) * len(items)))
        if split == "val":
            items = items[-n_val:]
        elif split == "train":
            items = items[:-n_val]
        elif not _has_split_dirs(root):
            raise InputError(root, "has no test/ folder", "add one for a test split")
    return items


def _csv_rows(path: Path, split: str) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read the CSV manifest ({exc})") from None
    if not rows or "image" not in rows[0]:
        raise InputError(path, "manifest needs an 'image' column", "add a header row: image,label[,split]")
    if "split" in rows[0]:
        rows = [r for r in rows if r["split"] == split]
        if not rows:
            raise InputError(path, f"has no rows of split {split!r}")
    return rows


def _source(dcfg: dict[str, Any]) -> str:
    src = dcfg.get("source", "auto")
    if src != "auto":
        return str(src)
    p = Path(dcfg["path"])
    if p.suffix.lower() == ".npz":
        return "npz"
    if p.suffix.lower() == ".csv":
        return "csv"
    if p.is_dir():
        return "folder"
    raise InputError(p, "is neither an NPZ file, a CSV manifest nor a folder", "check data.path")


def load_split(dcfg: dict[str, Any], task: str, split: str, contract: Contract) -> ClassData | SegData:
    """One split of the dataset described by ``dcfg`` (the config's ``[data]`` table)."""
    path = Path(dcfg["path"])
    if not path.exists():
        raise InputError(path, "dataset does not exist", "check data.path (or the DATA argument)")
    src = _source(dcfg)
    limit = dcfg.get("limit")
    if task == "classification":
        if src == "npz":
            from ..io.datasets import load_npz

            ds = load_npz(path, split)
            arrays = list(ds.images)
            y = np.asarray(ds.labels).reshape(len(ds), -1)[:, 0].astype(np.int64)
            n_cls = int(max(int(y.max()) + 1, len(dcfg.get("classes") or [])))
            classes = list(dcfg.get("classes") or [str(i) for i in range(n_cls)])
            ids = [f"{split}:{i}" for i in range(len(ds))]
        else:
            if src == "csv":
                rows = _csv_rows(path, split)
                if "label" not in rows[0]:
                    raise InputError(path, "classification manifest needs a 'label' column")
                names = sorted({r["label"] for r in rows}) if not dcfg.get("classes") else dcfg["classes"]
                paths = [path.parent / r["image"] for r in rows]
                y = np.array([list(names).index(r["label"]) for r in rows], dtype=np.int64)
                classes = list(names)
            else:
                paths, y, classes = _class_folder(path, split, dcfg)
            if not paths:
                raise InputError(path, f"split {split!r} has no images")
            arrays = [read_array(p) for p in paths]
            ids = [str(p) for p in paths]
        if limit:
            arrays, y, ids = arrays[:limit], y[:limit], ids[:limit]
        x = np.stack([prepare(_to_channels(a, contract.channels), contract) for a in arrays])
        return ClassData(x=x, y=y, classes=classes, ids=ids)
    # segmentation
    if src == "csv":
        rows = _csv_rows(path, split)
        if "mask" not in rows[0]:
            raise InputError(path, "segmentation manifest needs a 'mask' column")
        items = [(path.parent / r["image"], path.parent / r["mask"],
                  path.parent / r["fov"] if r.get("fov") else None) for r in rows]
    elif src == "folder":
        items = _seg_folder(path, split, dcfg)
    else:
        raise InputError(path, "segmentation data must be a folder or a CSV manifest")
    if limit:
        items = items[:limit]
    images, masks, fovs = [], [], []
    for ip, mp, fp in items:
        arr = _to_channels(read_array(ip), contract.channels)
        m = read_array(mp)
        m = (m[..., 0] if m.ndim == 3 else m) > 0
        if m.shape != arr.shape[:2]:
            raise InputError(mp, f"mask is {m.shape}, image {ip.name} is {arr.shape[:2]}",
                             "masks must match their images")
        f = read_array(fp) if fp else np.ones(m.shape, dtype=bool)
        f = (f[..., 0] if f.ndim == 3 else f) > 0
        images.append(prepare(arr, contract))
        masks.append(m.astype(np.uint8))
        fovs.append(f)
    return SegData(images=images, masks=masks, fovs=fovs, ids=[str(i[0]) for i in items])
