"""NPZ files: MedMNIST-style image datasets and plain volume archives.

Two kinds of ``.npz`` are read:

* **Datasets** in the MedMNIST layout: arrays ``{split}_images`` of shape ``(n, y, x)`` (grey),
  ``(n, y, x, 3)`` (colour) or ``(n, z, y, x)`` (3-D sets), and ``{split}_labels`` of shape
  ``(n, k)``, for splits such as ``train``, ``val`` and ``test``.  :func:`list_splits` names the
  splits, :func:`load_npz` loads one as an :class:`NpzDataset`, whose :meth:`NpzDataset.image`
  gives one sample as an :class:`~medimg.image.Image`.

  >>> ds = load_npz("pneumoniamnist.npz", "test")
  >>> len(ds), ds.labels[0], ds.image(0).shape
  (624, array([1], dtype=uint8), (1, 28, 28))

* **Volumes**: archives of named arrays without geometry, such as voxelmorph's ``test_scan.npz``
  (``vol``: a T1 MR volume, ``seg``: its label map, both ``(160, 192, 224)`` float64).
  :func:`load_npz_volume` returns one array as an Image.  The array's axes are taken as
  ``(z, y, x)`` as stored, values keep their stored type (voxelmorph stores its labels as float64:
  cast them yourself), and since the file has no geometry the spacing is the one you pass (1 mm
  by default), the origin 0 and the direction SimpleITK's identity
  (:data:`medimg.image.AXIAL_IDENTITY`); ``meta["warnings"]`` says so.

  >>> t1 = load_npz_volume("test_scan.npz", "vol", modality="MR")
  >>> labels = load_npz_volume("test_scan.npz", "seg")

Files are opened with ``allow_pickle=False``: an NPZ never runs code.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..image import Image

__all__ = [
    "NpzDataset",
    "is_dataset_npz",
    "list_splits",
    "load_npz",
    "load_npz_volume",
    "npz_keys",
]

PathLike = str | os.PathLike[str]

_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True, eq=False)
class NpzDataset:
    """One split of a MedMNIST-style dataset.

    Parameters
    ----------
    images:
        ``(n, y, x)``, ``(n, y, x, c)`` (c = 3) or ``(n, z, y, x)`` samples, as stored.
    labels:
        ``(n, ...)`` labels, as stored (MedMNIST: ``(n, 1)`` class indices, ``(n, k)`` multi-label).
    split:
        The split name (``"train"``, ``"val"``, ``"test"``).
    path:
        The file the split came from.
    modality:
        DICOM modality code given to the images (``"DX"`` for chest X-rays, ``"US"``, ...).
    """

    images: np.ndarray
    labels: np.ndarray
    split: str
    path: Path
    modality: str = "OT"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def image(self, i: int) -> Image:
        """Sample ``i`` as an Image with 1 mm spacing (2-D samples get ``z == 1``).

        ``meta`` holds the source path, split, index and label.
        """
        n = len(self)
        if not -n <= i < n:
            msg = f"sample {i} does not exist in split {self.split!r} of {n} samples"
            raise IndexError(msg)
        arr = self.images[i]
        colour = arr.ndim == 3 and arr.shape[-1] in (3, 4) and self.images.ndim == 4
        if arr.ndim == 2 or colour:
            arr = arr[np.newaxis]
        meta: dict[str, Any] = {
            "source_path": str(self.path),
            "split": self.split,
            "index": int(i) % n,
            "label": np.asarray(self.labels[i]).tolist(),
        }
        return Image(np.ascontiguousarray(arr), modality=self.modality,
                     meta=meta)


def _open(path: PathLike) -> Any:
    """``np.load`` of an NPZ archive, with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such file" if not p.exists() else "is not a file")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty (0 bytes)", "re-export or copy it again")
    if not zipfile.is_zipfile(p):
        msg = "not an NPZ file (not a zip archive of .npy arrays)"
        raise InputError(p, msg, "save it with numpy.savez or numpy.savez_compressed")
    try:
        archive = np.load(p, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        msg = f"not a readable NPZ file ({type(exc).__name__}: {exc})"
        raise InputError(p, msg, "the file is truncated or damaged") from None
    if not hasattr(archive, "files"):  # a plain .npy renamed .npz
        msg = "holds a single .npy array, not an NPZ archive"
        raise InputError(p, msg, "load it with numpy.load")
    return archive


def _array(archive: Any, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        msg = f"array {key!r} cannot be read ({type(exc).__name__}: {exc})"
        raise InputError(path, msg, "the file is truncated, damaged or holds Python objects") from None


def npz_keys(path: PathLike) -> list[str]:
    """The names of the arrays in an NPZ file, in file order."""
    with _open(path) as archive:
        return list(archive.files)


def _splits(keys: Sequence[str]) -> list[str]:
    found = [k[: -len("_images")] for k in keys if k.endswith("_images")]
    splits = [s for s in found if f"{s}_labels" in keys]
    return sorted(splits, key=lambda s: (_SPLIT_ORDER.get(s, 3), s))


def is_dataset_npz(path: PathLike) -> bool:
    """Whether the NPZ file has at least one MedMNIST-style split (``{split}_images`` and labels)."""
    return bool(_splits(npz_keys(path)))


def list_splits(path: PathLike) -> list[str]:
    """The splits of a MedMNIST-style NPZ (train, val, test first, then others by name)."""
    return _splits(npz_keys(path))


def load_npz(path: PathLike, split: str = "train", *, modality: str = "OT") -> NpzDataset:
    """Load one split of a MedMNIST-style NPZ dataset.

    Parameters
    ----------
    path:
        The ``.npz`` file.
    split:
        ``"train"``, ``"val"``, ``"test"`` or another split the file holds.
    modality:
        DICOM modality code for the images (``"DX"``, ``"US"``, ...).

    Raises
    ------
    InputError
        Not an NPZ file, no such split (the message lists the splits there are), or images and
        labels of different lengths.
    """
    p = Path(path)
    with _open(p) as archive:
        splits = _splits(archive.files)
        if split not in splits:
            if splits:
                msg, hint = f"has no split {split!r}", f"choose one of {', '.join(splits)}"
            else:
                msg = f"is not a dataset NPZ (arrays: {', '.join(archive.files) or 'none'})"
                hint = "for a volume use medimg.io.datasets.load_npz_volume"
            raise InputError(p, msg, hint)
        images = _array(archive, f"{split}_images", p)
        labels = _array(archive, f"{split}_labels", p)
    if images.ndim not in (3, 4) or labels.shape[:1] != images.shape[:1]:
        msg = (f"split {split!r} has images of shape {images.shape} and labels of shape "
               f"{labels.shape}; expected (n, y, x[, c]) images and n labels")
        raise InputError(p, msg, "the file does not follow the MedMNIST layout")
    return NpzDataset(images=images, labels=labels, split=split, path=p, modality=modality)


def load_npz_volume(
    path: PathLike,
    key: str | None = None,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    modality: str = "OT",
) -> Image:
    """One array of an NPZ archive as an Image (see the module docstring for the conventions).

    Parameters
    ----------
    path:
        The ``.npz`` file.
    key:
        The array to read.  When None: the only array of the file, or ``"vol"`` (voxelmorph's name
        for the image) when the file has one.
    spacing:
        Voxel size in mm along ``(z, y, x)``; the file does not store one.
    modality:
        DICOM modality code for the image.

    Raises
    ------
    InputError
        Not an NPZ file, no such array, no ``key`` given and no single choice, or an array that is
        not 2-D or 3-D (optionally with a trailing channel axis of at most 4).
    """
    p = Path(path)
    with _open(p) as archive:
        keys = list(archive.files)
        if _splits(keys) and key is None:
            msg = f"is an image dataset with splits {', '.join(_splits(keys))}, not one volume"
            raise InputError(p, msg, "use medimg.io.datasets.load_npz(path, split)")
        if key is None:
            if len(keys) == 1:
                key = keys[0]
            elif "vol" in keys:
                key = "vol"
            else:
                msg = f"holds {len(keys)} arrays ({', '.join(keys) or 'none'}) and none was chosen"
                raise InputError(p, msg, "pass key= with one of them")
        elif key not in keys:
            msg = f"has no array {key!r} (arrays: {', '.join(keys)})"
            raise InputError(p, msg, "pass key= with one of them")
        arr = _array(archive, key, p)
    channels_last = arr.ndim == 4 and arr.shape[-1] <= 4
    if (arr.ndim not in (2, 3) and not channels_last) or arr.size == 0:
        msg = f"array {key!r} has shape {arr.shape}; expected a 2-D or 3-D image"
        raise InputError(p, msg, "choose another key= or reshape it first")
    meta: dict[str, Any] = {
        "source_path": str(p),
        "npz_key": key,
        "npz_other_keys": [k for k in keys if k != key],
        "warnings": [{
            "code": "no_geometry",
            "message": "the NPZ file stores no geometry: axes taken as (z, y, x), spacing "
                       f"{tuple(float(s) for s in spacing)} mm, origin 0, SimpleITK's identity "
                       "direction",
        }],
    }
    return Image(np.ascontiguousarray(arr), spacing=spacing,
                 modality=modality, meta=meta)
