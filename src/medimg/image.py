"""``Image``: the one image type of medimg.

An :class:`Image` is a numpy array plus where it lies in the patient and what it is.

Conventions (one set, used everywhere; see docs/design.md):

* ``array`` is indexed ``(z, y, x)`` like SimpleITK's ``GetArrayFromImage``; colour or multi-channel
  images add a trailing channel axis ``(z, y, x, c)``.  A 2-D image (a radiograph, a photograph) has
  ``z == 1``.
* ``spacing`` is in millimetres **in array axis order** ``(z, y, x)`` -- the same order as ``shape``.
* ``origin`` is the patient coordinate (DICOM/ITK patient frame, LPS, mm) of the centre of voxel
  ``[0, 0, 0]``; it is a point, so it is written ``(x, y, z)`` = (Left, Posterior, Superior).
* ``direction`` is a 3x3 matrix whose **column a** is the LPS unit vector along array axis ``a``
  (column 0: the z/slice axis, column 2: the x/column axis).  Columns are unit length; they are
  orthogonal except for gantry-tilted CT, where the slice axis is kept exact as a sheared axis.
* ``affine`` maps a homogeneous array index ``(z, y, x, 1)`` to ``(x_LPS, y_LPS, z_LPS, 1)``.

SimpleITK and ITK order spacing and direction columns ``(x, y, z)``; :meth:`Image.to_sitk` and
:meth:`Image.from_sitk` convert.  nibabel uses RAS and index order ``(i, j, k) = (x, y, z)``;
:meth:`Image.to_nibabel` and :meth:`Image.from_nibabel` convert.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # pragma: no cover - typing only
    import nibabel
    import SimpleITK
    import torch

__all__ = ["AXIAL_IDENTITY", "Image", "LPS_TO_RAS"]

#: The default direction: SimpleITK's identity in medimg's (z, y, x) column order -- x along L,
#: y along P, z (slices) along S: an axial image as a scanner lays it out.
AXIAL_IDENTITY = np.eye(3)[:, ::-1].copy()
AXIAL_IDENTITY.flags.writeable = False

#: Flips the first two patient axes: LPS <-> RAS (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Permutes a homogeneous index (i, j, k, 1) = (x, y, z, 1) into (z, y, x, 1); its own inverse.
_IJK_TO_ZYX = np.array(
    [[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float
)


def _as_vector(value: Any, name: str) -> np.ndarray:
    vec = np.asarray(value, dtype=float).reshape(-1)
    if vec.shape != (3,) or not np.all(np.isfinite(vec)):
        msg = f"Image {name} must be three finite numbers, got {value!r}"
        raise ValueError(msg)
    return vec


class Image:
    """An image array with its geometry in the patient frame and the metadata analysis needs.

    Parameters
    ----------
    array:
        Voxel values, shape ``(z, y, x)`` or ``(z, y, x, c)``.
    spacing:
        Voxel size in mm along ``(z, y, x)``.
    origin:
        LPS position (mm) of the centre of the first voxel.
    direction:
        3x3 matrix; column ``a`` is the LPS unit vector of array axis ``a``.
    modality:
        DICOM modality code (``"CT"``, ``"MR"``, ``"CR"``, ``"DX"``, ``"US"``, ``"OP"``, ...) or ``"OT"``.
    meta:
        What analysis needs from the source: UIDs, rescale, window, photometric interpretation, body
        part, acquisition parameters, and ``warnings`` from the reader.  Keys are snake_case.
    history:
        What was done to the image since it was read, one ``{"name": ..., "params": {...}}`` per
        operation, so a report can state it.
    """

    array: np.ndarray
    spacing: np.ndarray
    origin: np.ndarray
    direction: np.ndarray
    modality: str
    meta: dict[str, Any]
    history: list[dict[str, Any]]

    def __init__(
        self,
        array: ArrayLike,
        spacing: ArrayLike = (1.0, 1.0, 1.0),
        origin: ArrayLike = (0.0, 0.0, 0.0),
        direction: ArrayLike | None = None,
        modality: str = "OT",
        meta: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        self.array = np.asarray(array)
        self.spacing = np.asarray(spacing, dtype=float)
        self.origin = np.asarray(origin, dtype=float)
        self.direction = (AXIAL_IDENTITY.copy() if direction is None
                          else np.asarray(direction, dtype=float))
        self.modality = modality
        self.meta = {} if meta is None else meta
        self.history = [] if history is None else history
        self._validate()

    def _validate(self) -> None:
        arr = self.array
        if arr.ndim == 2:
            arr = arr[np.newaxis]
        if arr.ndim not in (3, 4):
            msg = f"Image array must have shape (z, y, x) or (z, y, x, c), got shape {arr.shape}"
            raise ValueError(msg)
        if 0 in arr.shape:
            msg = f"Image array is empty (shape {arr.shape})"
            raise ValueError(msg)
        self.array = arr
        self.spacing = _as_vector(self.spacing, "spacing")
        if np.any(self.spacing <= 0):
            msg = f"Image spacing must be positive, got {tuple(self.spacing)}"
            raise ValueError(msg)
        self.origin = _as_vector(self.origin, "origin")
        direction = np.asarray(self.direction, dtype=float)
        if direction.shape != (3, 3) or not np.all(np.isfinite(direction)):
            msg = f"Image direction must be a finite 3x3 matrix, got {self.direction!r}"
            raise ValueError(msg)
        norms = np.linalg.norm(direction, axis=0)
        if np.any(norms < 1e-6) or abs(np.linalg.det(direction)) < 1e-6:
            msg = f"Image direction is singular: {direction.tolist()}"
            raise ValueError(msg)
        self.direction = direction / norms
        self.modality = str(self.modality or "OT")

    # ------------------------------------------------------------------ basic properties
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        z, y, x = self.array.shape[:3]
        return (int(z), int(y), int(x))

    @property
    def channels(self) -> int:
        return 1 if self.array.ndim == 3 else int(self.array.shape[3])

    @property
    def is_2d(self) -> bool:
        return self.array.shape[0] == 1

    @property
    def warnings(self) -> list[dict[str, str]]:
        """The reader's integrity warnings, ``[{"code": ..., "message": ...}]``."""
        return list(self.meta.get("warnings", []))

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix: homogeneous index ``(z, y, x, 1)`` -> LPS ``(x, y, z, 1)`` in mm."""
        aff = np.eye(4)
        aff[:3, :3] = self.direction * self.spacing[np.newaxis, :]
        aff[:3, 3] = self.origin
        return aff

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in mm^3 (exact for sheared grids too)."""
        return float(abs(np.linalg.det(self.direction * self.spacing[np.newaxis, :])))

    def copy(self) -> Image:
        return self.replace(array=self.array.copy())

    def replace(self, **changes: Any) -> Image:
        """A new Image with some fields changed; meta and history are copied, never shared."""
        fields: dict[str, Any] = {
            "array": self.array,
            "spacing": self.spacing.copy(),
            "origin": self.origin.copy(),
            "direction": self.direction.copy(),
            "modality": self.modality,
            "meta": copy.deepcopy(self.meta),
            "history": copy.deepcopy(self.history),
        }
        fields.update(changes)
        return Image(**fields)

    def with_step(self, name: str, **params: Any) -> Image:
        """Record an operation in ``history`` (in place) and return the image."""
        self.history.append({"name": name, "params": params})
        return self

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:g}" for s in self.spacing)
        return (
            f"Image(modality={self.modality!r}, shape={self.shape}, dtype={self.array.dtype}, "
            f"spacing=({sp}) mm)"
        )

    # ------------------------------------------------------------------ coordinates
    def index_to_patient(self, index: Any) -> np.ndarray:
        """Array indices ``(..., 3)`` in ``(z, y, x)`` order -> LPS points ``(..., 3)`` in mm."""
        idx = np.asarray(index, dtype=float)
        aff = self.affine
        return idx @ aff[:3, :3].T + aff[:3, 3]

    def patient_to_index(self, points: Any) -> np.ndarray:
        """LPS points ``(..., 3)`` in mm -> continuous array indices ``(..., 3)`` in ``(z, y, x)``."""
        pts = np.asarray(points, dtype=float)
        aff = self.affine
        inv = np.linalg.inv(aff[:3, :3])
        return (pts - aff[:3, 3]) @ inv.T

    # ------------------------------------------------------------------ SimpleITK
    @property
    def itk_spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in self.spacing[::-1])  # type: ignore[return-value]

    @property
    def itk_direction(self) -> tuple[float, ...]:
        """Row-major 3x3 direction as SimpleITK wants it (columns for x, y, z index axes)."""
        return tuple(float(v) for v in self.direction[:, ::-1].reshape(-1))

    def to_sitk(self) -> SimpleITK.Image:
        """A SimpleITK image with the same voxels and geometry (3-D; channels as a vector pixel)."""
        import SimpleITK as sitk

        arr = np.ascontiguousarray(self.array)
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        img = sitk.GetImageFromArray(arr, isVector=arr.ndim == 4)
        img.SetSpacing(self.itk_spacing)
        img.SetOrigin(tuple(float(v) for v in self.origin))
        img.SetDirection(self.itk_direction)
        return img

    @classmethod
    def from_sitk(
        cls, img: SimpleITK.Image, modality: str = "OT", meta: dict[str, Any] | None = None
    ) -> Image:
        """Build an Image from a 2-D or 3-D SimpleITK image (a 2-D image gets ``z == 1``)."""
        import SimpleITK as sitk

        dim = img.GetDimension()
        if dim not in (2, 3):
            msg = f"only 2-D and 3-D SimpleITK images are supported, got {dim}-D"
            raise ValueError(msg)
        arr = sitk.GetArrayFromImage(img)
        vector = img.GetNumberOfComponentsPerPixel() > 1
        spacing_itk = np.array(img.GetSpacing(), dtype=float)
        origin_itk = np.array(img.GetOrigin(), dtype=float)
        dir_itk = np.array(img.GetDirection(), dtype=float).reshape(dim, dim)
        if dim == 2:
            arr = arr[np.newaxis]
            d3 = np.eye(3)
            d3[:2, :2] = dir_itk
            dir_itk = d3
            spacing_itk = np.append(spacing_itk, 1.0)
            origin_itk = np.append(origin_itk, 0.0)
        if not vector and arr.ndim == 4:  # pragma: no cover - defensive
            vector = True
        return cls(
            array=arr,
            spacing=spacing_itk[::-1],
            origin=origin_itk,
            direction=dir_itk[:, ::-1],
            modality=modality,
            meta=dict(meta or {}),
        )

    # ------------------------------------------------------------------ nibabel (RAS)
    @property
    def ras_affine(self) -> np.ndarray:
        """nibabel affine: index ``(i, j, k) = (x, y, z)`` -> RAS mm."""
        return LPS_TO_RAS @ self.affine @ _IJK_TO_ZYX

    def to_nibabel(self) -> nibabel.Nifti1Image:
        """A NIfTI-1 image (array transposed to ``(x, y, z[, c])``, RAS affine in sform and qform)."""
        import nibabel as nib

        data = np.ascontiguousarray(np.swapaxes(self.array, 0, 2))
        if data.dtype == np.bool_:
            data = data.astype(np.uint8)
        img = nib.Nifti1Image(data, self.ras_affine)
        img.header.set_xyzt_units("mm")
        # update_affine=False keeps the float64 affine in memory (the header stores float32).
        img.set_sform(self.ras_affine, code=1, update_affine=False)
        img.set_qform(self.ras_affine, code=1, update_affine=False)
        return img

    @classmethod
    def from_nibabel(
        cls, img: nibabel.spatialimages.SpatialImage, modality: str = "OT",
        meta: dict[str, Any] | None = None,
    ) -> Image:
        """Build an Image from a nibabel image; a 4th data axis becomes the channel axis.

        Values are read with the header's scaling applied only when the scaling is not the identity,
        so integer NIfTI files stay integers.
        """
        # nibabel moves scl_slope/scl_inter from the header onto the data proxy when it loads.
        proxy = img.dataobj
        slope = getattr(proxy, "slope", None)
        inter = getattr(proxy, "inter", None)
        if slope in (None, 1.0) and inter in (None, 0.0):
            data = np.asanyarray(proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else proxy)
        else:
            data = np.asanyarray(proxy)
        while data.ndim > 4 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim == 2:
            data = data[:, :, np.newaxis]
        if data.ndim not in (3, 4):
            msg = f"only 2-D to 4-D NIfTI data is supported, got shape {data.shape}"
            raise ValueError(msg)
        arr = np.swapaxes(data, 0, 2)
        lps_ijk = LPS_TO_RAS @ np.asarray(img.affine, dtype=float)
        lps_zyx = lps_ijk @ _IJK_TO_ZYX
        lin = lps_zyx[:3, :3]
        spacing = np.linalg.norm(lin, axis=0)
        return cls(
            array=np.ascontiguousarray(arr),
            spacing=spacing,
            origin=lps_zyx[:3, 3],
            direction=lin / spacing,
            modality=modality,
            meta=dict(meta or {}),
        )

    # ------------------------------------------------------------------ torch / MONAI
    def to_tensor(self, dtype: Any = None) -> torch.Tensor:
        """A channel-first tensor ``(c, z, y, x)``; geometry stays on the Image (see from_tensor)."""
        import torch

        arr = self.array if self.array.ndim == 4 else self.array[..., np.newaxis]
        arr = np.moveaxis(arr, -1, 0)
        if arr.dtype == np.uint16:
            arr = arr.astype(np.int32)  # torch has no general uint16 support
        t = torch.from_numpy(np.ascontiguousarray(arr))
        return t.to(dtype) if dtype is not None else t

    @classmethod
    def from_tensor(cls, tensor: torch.Tensor, like: Image, **changes: Any) -> Image:
        """An Image with ``like``'s geometry and metadata and the voxels of a ``(c, z, y, x)`` tensor."""
        arr = tensor.detach().cpu().numpy()
        if arr.ndim != 4:
            msg = f"expected a (c, z, y, x) tensor, got shape {tuple(arr.shape)}"
            raise ValueError(msg)
        arr = np.moveaxis(arr, 0, -1)
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.shape[:3] != like.spatial_shape:
            msg = (
                f"tensor spatial shape {arr.shape[:3]} differs from the reference image's "
                f"{like.spatial_shape}; resample with medimg before converting back"
            )
            raise ValueError(msg)
        return like.replace(array=arr, **changes)

    def to_metatensor(self) -> Any:
        """A MONAI ``MetaTensor`` in MONAI's own convention: ``(c, x, y, z)`` with a RAS affine."""
        import torch
        from monai.data import MetaTensor

        arr = self.array if self.array.ndim == 4 else self.array[..., np.newaxis]
        arr = np.moveaxis(np.swapaxes(arr, 0, 2), -1, 0)  # (c, x, y, z)
        if arr.dtype == np.uint16:
            arr = arr.astype(np.int32)
        return MetaTensor(
            torch.from_numpy(np.ascontiguousarray(arr)),
            affine=torch.as_tensor(self.ras_affine, dtype=torch.float64),
            meta={"space": "RAS", "modality": self.modality},
        )

    @classmethod
    def from_metatensor(cls, tensor: Any, modality: str = "OT",
                        meta: dict[str, Any] | None = None) -> Image:
        """Inverse of :meth:`to_metatensor` (``(c, x, y, z)`` data, RAS affine)."""
        arr = np.asarray(tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else tensor)
        if arr.ndim != 4:
            msg = f"expected a (c, x, y, z) MetaTensor, got shape {arr.shape}"
            raise ValueError(msg)
        arr = np.swapaxes(np.moveaxis(arr, 0, -1), 0, 2)  # (z, y, x, c)
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
        affine = np.asarray(tensor.affine, dtype=float)
        space = str(getattr(tensor, "meta", {}).get("space", "RAS"))
        lps_ijk = affine if space.upper() == "LPS" else LPS_TO_RAS @ affine
        lps_zyx = lps_ijk @ _IJK_TO_ZYX
        lin = lps_zyx[:3, :3]
        spacing = np.linalg.norm(lin, axis=0)
        return cls(np.ascontiguousarray(arr), spacing, lps_zyx[:3, 3], lin / spacing,
                   modality, dict(meta or {}))
