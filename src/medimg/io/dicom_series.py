"""Build one :class:`~medimg.image.Image` from the instances of a series, honestly.

Slices are ordered by the projection of Image Position (Patient) on the slice normal from Image
Orientation (Patient) -- never by file name or Instance Number.  What is wrong with a series is reported
as named warnings on ``image.meta["warnings"]``; where no honest volume can be built a
:class:`~medimg.errors.SeriesError` says why.

Warning codes (stable; documented in docs/dicom.md):

``localizer_excluded``   scout/localizer images were left out of the volume
``mixed_orientation``    some slices have another orientation and were left out
``mixed_size``           some slices have another Rows x Columns and were left out
``multiple_volumes``     the series holds several volumes (echoes, phases); the first is used
``duplicate_positions``  several slices share a position; one per position is kept
``missing_slices``       gaps of whole slices; the gaps are filled by interpolation and listed
``uneven_spacing``       slice spacing varies; the volume is put on a regular grid that holds every
                         acquired slice where one exists (a step dividing every gap), else resampled
                         at the median spacing; computed planes are listed
``gantry_tilt``          slices are stacked along an axis that is not their normal (kept exact as a
                         sheared grid)
``mixed_rescale``        slices have different rescale slope/intercept (values are float32)
``no_geometry``          the images carry no patient position/orientation; geometry is nominal
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import numpy as np

from ..errors import InputError, SeriesError
from ..image import Image
from .dicom_index import FrameGeometry, InstanceRecord, SeriesEntry
from .dicom_pixels import (
    dataset_for,
    native_plane_dtype,
    read_frames,
    read_frames_safe,
    read_native_stack,
)

__all__ = ["SeriesSummary", "build_image", "summarize"]

ORIENTATION_TOL = 1e-3  # direction cosines equal within this are the same orientation
POSITION_TOL_MM = 0.01  # slices closer than this along the normal share a position
TILT_TOL_DEG = 0.1


@dataclass
class _Slice:
    record: InstanceRecord
    frame: int  # frame index inside the file
    geometry: FrameGeometry


@dataclass
class SeriesSummary:
    """What a series would load as, worked out from headers only (for listings such as `medimg info`)."""

    shape: tuple[int, ...]  # (z, y, x) or (z, y, x, c)
    spacing: tuple[float, float, float]  # (z, y, x) mm
    warnings: list[dict[str, str]]


def _warn(warnings: list[dict[str, str]], code: str, message: str) -> None:
    warnings.append({"code": code, "message": message})


def _orientation_key(o: tuple[float, ...] | None) -> tuple[int, ...] | None:
    if o is None:
        return None
    return tuple(int(round(v / ORIENTATION_TOL)) for v in o)


def _normal(orientation: tuple[float, ...]) -> np.ndarray:
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:], dtype=float)
    n = np.cross(row, col)
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        msg = f"Image Orientation (Patient) {orientation} has parallel row and column vectors"
        raise ValueError(msg)
    return n / norm


# ---------------------------------------------------------------------------------- pixel reading
def _load_pixels(
    records: list[InstanceRecord],
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> dict[str, np.ndarray]:
    """Frames of every record, by path; compressed files are decoded on several cores."""
    out: dict[str, np.ndarray] = {}
    compressed = [r for r in records if r.pixel_offset is None]
    native = [r for r in records if r.pixel_offset is not None]
    done = 0
    total = len(records)
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    if compressed and n_workers > 1 and len(compressed) >= 4:
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=get_context("fork")) as pool:
            futures = pool.map(read_frames_safe, compressed, chunksize=max(1, len(compressed) // (4 * n_workers)))
            # Read native files in this process while the pool decodes.  This process does not decode
            # a share of the compressed files itself: the decoders hold the GIL, which starves the
            # executor's feeding thread and leaves the workers idle (measured slower).
            for rec in native:
                out[rec.path] = read_frames(rec)
                done += 1
                if progress:
                    progress(done, total)
            for rec, res in zip(compressed, futures, strict=True):
                if isinstance(res, InputError):
                    raise res
                out[rec.path] = res
                done += 1
                if progress:
                    progress(done, total)
        return out
    for rec in native + compressed:
        out[rec.path] = read_frames(rec)
        done += 1
        if progress:
            progress(done, total)
    return out


# ---------------------------------------------------------------------------------- value mapping
def _apply_rescale(stack: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray,
                   warnings: list[dict[str, str]]) -> tuple[np.ndarray, dict[str, Any]]:
    """Stored values -> real values (HU for CT).  Integers stay integers where that is exact."""
    uniform = bool(np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0]))
    info: dict[str, Any] = {}
    if uniform:
        slope, inter = float(slopes[0]), float(intercepts[0])
        info = {"rescale_slope": slope, "rescale_intercept": inter}
        if slope == 1.0 and inter == 0.0:
            return stack, info
        if slope == 1.0 and float(inter).is_integer() and np.issubdtype(stack.dtype, np.integer):
            lo = int(stack.min()) + int(inter)
            hi = int(stack.max()) + int(inter)
            for dt in (np.int16, np.int32):
                if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
                    shifted: np.ndarray = stack.astype(dt, copy=False)
                    shifted += int(inter)
                    return shifted, info
        return (stack.astype(np.float32) * np.float32(slope) + np.float32(inter)), info
    _warn(warnings, "mixed_rescale",
          "slices have different rescale slope/intercept; values are returned as float32")
    shape = (-1,) + (1,) * (stack.ndim - 1)
    out = stack.astype(np.float32) * slopes.astype(np.float32).reshape(shape)
    out += intercepts.astype(np.float32).reshape(shape)
    return out, {"rescale_slope": None, "rescale_intercept": None}


def _invert_monochrome1(stack: np.ndarray, rec: InstanceRecord, meta: dict[str, Any]) -> np.ndarray:
    """MONOCHROME1 (low = white) to MONOCHROME2 convention, on stored values."""
    if rec.pixel_representation == 1:
        inv = -1 - stack.astype(np.int32)
        out = inv.astype(stack.dtype) if np.issubdtype(stack.dtype, np.signedinteger) else inv
    else:
        top = (1 << rec.bits_stored) - 1 if rec.bits_stored else int(stack.max())
        out = (top - stack.astype(np.int64)).astype(stack.dtype)
        if meta.get("window_center") is not None:
            meta["window_center"] = top - meta["window_center"]
    meta["inverted_from_monochrome1"] = True
    return out


# ---------------------------------------------------------------------------------- metadata
def _series_meta(entry: SeriesEntry, used: list[InstanceRecord]) -> dict[str, Any]:
    first = used[0]
    meta: dict[str, Any] = dict(first.meta)
    meta.update(
        study_instance_uid=entry.study_instance_uid,
        series_instance_uid=entry.series_instance_uid,
        series_number=entry.series_number,
        sop_class_uid=first.sop_class_uid,
        transfer_syntaxes=sorted({r.transfer_syntax for r in used}),
        photometric_interpretation=first.photometric,
        window_center=first.window_center,
        window_width=first.window_width,
        image_type=list(first.image_type),
        source_files=len(used),
        # Paths of the files the image was built from (for writers that reference the source
        # images, e.g. DICOM SR and SEG).  Never used to build new paths.
        source_paths=[r.path for r in used],
    )
    return meta


# ---------------------------------------------------------------------------------- builders
def _single_frames_image(rec: InstanceRecord, frames: np.ndarray, entry: SeriesEntry,
                         warnings: list[dict[str, str]]) -> Image:
    """A file whose frames are not placed in space: a 2-D image, or frames over time (cine)."""
    geo = rec.frame_geometry[0] if rec.frame_geometry else FrameGeometry()
    meta = _series_meta(entry, [rec])
    meta["sop_instance_uids"] = [rec.sop_instance_uid]
    dy, dx = geo.pixel_spacing or (1.0, 1.0)
    if geo.pixel_spacing is None:
        meta["pixel_spacing_known"] = False
    if rec.frames > 1:
        meta["frame_axis"] = "time" if rec.frame_time_ms else "frame"
        if rec.frame_time_ms:
            meta["frame_time_ms"] = rec.frame_time_ms
    if geo.orientation is not None:
        row = np.asarray(geo.orientation[:3])
        col = np.asarray(geo.orientation[3:])
        direction = np.column_stack([_normal(geo.orientation), col, row])
    else:
        direction = np.eye(3)
    origin = np.asarray(geo.position) if geo.position is not None else np.zeros(3)
    if geo.position is None and rec.modality in ("CT", "MR", "PT", "NM"):
        _warn(warnings, "no_geometry",
              f"{os.path.basename(rec.path)} has no Image Position (Patient); geometry is nominal")
    slopes = np.full(frames.shape[0], geo.slope)
    inters = np.full(frames.shape[0], geo.intercept)
    data = frames
    if rec.photometric == "MONOCHROME1":
        data = _invert_monochrome1(data, rec, meta)
    if frames.ndim == 3:
        data, resc = _apply_rescale(data, slopes, inters, warnings)
        meta.update(resc)
    z_spacing = geo.slice_thickness if (rec.frames == 1 and geo.slice_thickness) else 1.0
    meta["warnings"] = warnings
    return Image(data, spacing=(z_spacing, dy, dx), origin=origin, direction=direction,
                 modality=rec.modality, meta=meta)


def _mosaic_image(records: list[InstanceRecord], entry: SeriesEntry,
                  warnings: list[dict[str, str]]) -> Image:
    """Siemens mosaic: tiles of one file are the slices of a volume (geometry from the CSA header,
    read with nibabel's DICOM wrapper)."""
    import warnings as pywarnings

    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore")  # nibabel calls its DICOM wrappers experimental
        from nibabel.nicom import dicomwrappers

    volumes = []
    affine = None
    for rec in records:
        try:
            with pywarnings.catch_warnings():
                pywarnings.simplefilter("ignore")
                wrapper = dicomwrappers.wrapper_from_data(dataset_for(rec))
                data = np.asarray(wrapper.get_unscaled_data())  # (rows, columns, slices)
                if not data.dtype.isnative:  # big-endian files: native byte order out
                    data = data.astype(data.dtype.newbyteorder("="))
                aff = np.asarray(wrapper.affine, dtype=float)  # (row, column, slice) -> LPS
        except InputError:
            raise
        except Exception as exc:
            raise InputError(rec.path, f"Siemens mosaic cannot be unpacked ({exc})") from None
        if affine is not None and not np.allclose(aff, affine, atol=1e-3):
            raise SeriesError(rec.path, "mosaic files of one series have different geometry",
                              "read them one file at a time")
        affine = aff
        volumes.append(np.transpose(data, (2, 0, 1)))
    assert affine is not None
    # (row, column, slice) -> our (z, y, x) = (slice, row, column)
    lin = affine[:3, :3][:, [2, 0, 1]]
    spacing = np.linalg.norm(lin, axis=0)
    first = records[0]
    geo = first.frame_geometry[0]
    stack = np.stack(volumes, axis=-1) if len(volumes) > 1 else volumes[0]
    meta = _series_meta(entry, records)
    meta["sop_instance_uids"] = [r.sop_instance_uid for r in records]
    meta["mosaic"] = True
    if len(volumes) > 1:
        meta["channel_axis"] = "time"
    data, resc = _apply_rescale(stack, np.array([geo.slope]), np.array([geo.intercept]), warnings)
    meta.update(resc)
    meta["warnings"] = warnings
    return Image(data, spacing=spacing, origin=affine[:3, 3], direction=lin / spacing,
                 modality=first.modality, meta=meta)


def _select_slices(entry: SeriesEntry, warnings: list[dict[str, str]]) -> list[_Slice]:
    records = entry.instances
    localizers = [r for r in records if r.is_localizer]
    if localizers and len(localizers) < len(records):
        _warn(warnings, "localizer_excluded",
              f"{len(localizers)} localizer image(s) left out of the volume")
        records = [r for r in records if not r.is_localizer]
    slices = [
        _Slice(r, i, g)
        for r in records
        for i, g in enumerate(r.frame_geometry[: r.frames])
    ]
    groups: dict[tuple[Any, ...], list[_Slice]] = {}
    for s in slices:
        k = (_orientation_key(s.geometry.orientation), s.record.rows, s.record.columns,
             s.record.samples_per_pixel)
        groups.setdefault(k, []).append(s)
    if len(groups) > 1:
        ranked = sorted(groups.items(), key=lambda kv: len(kv[1]), reverse=True)
        (best_key, best), (_, second) = ranked[0], ranked[1]
        if len(best) == len(second):
            raise SeriesError(
                _series_name(entry),
                f"slices split evenly between {len(groups)} orientations/sizes "
                f"({len(best)} and {len(second)} slices); no single volume can be built",
                "split the series or read the files one at a time",
            )
        for key, members in ranked[1:]:
            if key[0] != best_key[0]:
                _warn(warnings, "mixed_orientation",
                      f"{len(members)} slice(s) with another orientation left out "
                      f"(localizers not marked as such?)")
            else:
                _warn(warnings, "mixed_size",
                      f"{len(members)} slice(s) of {key[1]}x{key[2]} left out "
                      f"(volume is {best_key[1]}x{best_key[2]})")
        slices = best
    keys = sorted({s.geometry.temporal_key for s in slices}, key=repr)
    if len(keys) > 1:
        counts = Counter(s.geometry.temporal_key for s in slices)
        # Only a real second volume if it repeats positions; echo numbers alone may just label slices.
        positions = {round(float(np.dot(s.geometry.position, _normal(s.geometry.orientation))), 2)
                     for s in slices if s.geometry.position and s.geometry.orientation}
        if len(positions) < len(slices):
            first_key = keys[0]
            _warn(warnings, "multiple_volumes",
                  f"the series holds {len(keys)} volumes ({', '.join(repr(k) for k in keys[:4])}"
                  f"{'...' if len(keys) > 4 else ''}); using the first ({counts[first_key]} slices)")
            slices = [s for s in slices if s.geometry.temporal_key == first_key]
    return slices


def _series_name(entry: SeriesEntry) -> str:
    folder = os.path.dirname(entry.instances[0].path)
    return f"series {entry.key} in {folder}"


def _volume_image(entry: SeriesEntry, slices: list[_Slice], warnings: list[dict[str, str]],
                  workers: int | None, progress: Callable[[int, int], None] | None,
                  header_only: bool = False) -> Image | SeriesSummary:
    orientation = slices[0].geometry.orientation
    assert orientation is not None
    normal = _normal(orientation)
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:], dtype=float)
    pos = np.array([s.geometry.position for s in slices], dtype=float)
    proj = pos @ normal
    order = np.argsort(proj, kind="stable")
    slices = [slices[i] for i in order]
    pos, proj = pos[order], proj[order]

    # Duplicate positions: keep the lowest (acquisition, instance) number at each position.
    keep: list[int] = []
    dropped = 0
    i = 0
    while i < len(slices):
        j = i
        while j + 1 < len(slices) and proj[j + 1] - proj[i] < POSITION_TOL_MM:
            j += 1
        group = list(range(i, j + 1))
        best = min(group, key=lambda k: (slices[k].record.acquisition_number or 0,
                                         slices[k].record.instance_number or 0, slices[k].frame))
        keep.append(best)
        dropped += len(group) - 1
        i = j + 1
    if dropped:
        _warn(warnings, "duplicate_positions",
              f"{dropped} slice(s) share a position with another; one per position is kept "
              f"(lowest acquisition/instance number)")
        slices = [slices[k] for k in keep]
        pos, proj = pos[keep], proj[keep]

    pixel_spacing = slices[0].geometry.pixel_spacing or (1.0, 1.0)
    n = len(slices)
    if n == 1:
        z_step = slices[0].geometry.slice_thickness or 1.0
        axis = normal
        grid_t = np.array([0.0])
        src_t = np.array([0.0])
    else:
        span = pos[-1] - pos[0]
        axis = span / np.linalg.norm(span)
        off_line = np.linalg.norm(np.cross(pos - pos[0], axis), axis=1)
        if off_line.max() > 0.1 + 1e-3 * float(np.linalg.norm(span)):
            raise SeriesError(
                _series_name(entry),
                f"slice positions do not lie on one line (off by up to {off_line.max():.2f} mm)",
                "the series mixes stacks; split it before building a volume",
            )
        tilt = math.degrees(math.acos(min(1.0, abs(float(np.dot(axis, normal))))))
        if tilt > TILT_TOL_DEG:
            _warn(warnings, "gantry_tilt",
                  f"slices are stacked {tilt:.2f} degrees off their normal (gantry tilt); the "
                  f"volume keeps exact geometry as a sheared grid; resample before analysis "
                  f"that assumes orthogonal axes")
        src_t = (pos - pos[0]) @ axis
        gaps = np.diff(src_t)
        z_step = float(np.median(gaps))
        tol = max(0.02 * z_step, POSITION_TOL_MM)
        irregular = np.abs(gaps - z_step) > tol
        grid_step = z_step
        if irregular.any():
            ratios = np.round(gaps / z_step)
            whole = (ratios >= 1) & (np.abs(gaps - ratios * z_step) <= tol)
            if bool(np.all(whole)):
                missing = int(np.sum(ratios - 1))
                _warn(warnings, "missing_slices",
                      f"{missing} slice(s) missing (gaps of {', '.join(f'{g:.2f}' for g in gaps[irregular][:5])} "
                      f"mm where the spacing is {z_step:.2f} mm); the gaps are filled by "
                      f"interpolation (see meta['interpolated_slices']); do not measure there")
            else:
                common = _common_step(gaps)
                if common is not None:
                    grid_step = common
                    _warn(warnings, "uneven_spacing",
                          f"slice spacing varies from {gaps.min():.3f} to {gaps.max():.3f} mm; the "
                          f"volume is put on a regular {grid_step:.3f} mm grid that holds every "
                          f"acquired slice; the planes between are interpolated (see "
                          f"meta['interpolated_slices'])")
                else:
                    _warn(warnings, "uneven_spacing",
                          f"slice spacing varies from {gaps.min():.3f} to {gaps.max():.3f} mm with no "
                          f"common step; the volume is resampled to a regular {z_step:.3f} mm grid by "
                          f"linear interpolation, so acquired slices off that grid are not kept as "
                          f"they are (see meta['interpolated_slices'])")
        count = int(round(src_t[-1] / grid_step)) + 1
        if irregular.any() and count > MAX_GRID_SUBDIVISION * n:
            raise SeriesError(
                _series_name(entry),
                f"slice gaps are too large for one volume: a regular {grid_step:.3f} mm grid would "
                f"need {count} planes for {n} acquired slices (gaps up to {gaps.max():.1f} mm)",
                "the series mixes separate stacks; split it or read the files one at a time",
            )
        grid_t = np.arange(count) * grid_step if irregular.any() else src_t
        z_step = grid_step

    if header_only:
        rec0 = slices[0].record
        chans = 3 if rec0.photometric == "PALETTE COLOR" else rec0.samples_per_pixel
        shape = (len(grid_t), rec0.rows, rec0.columns) + ((chans,) if chans > 1 else ())
        return SeriesSummary(shape, (z_step, pixel_spacing[0], pixel_spacing[1]), warnings)

    used_records = list(dict.fromkeys(s.record.path for s in slices))
    by_path = {s.record.path: s.record for s in slices}
    records = [s.record for s in slices]
    dtype = native_plane_dtype(records[0])
    if dtype is not None and all(
        native_plane_dtype(r) == dtype and (r.rows, r.columns, r.bits_stored)
        == (records[0].rows, records[0].columns, records[0].bits_stored) for r in records
    ):
        stack = read_native_stack(records)  # the common case: one uncompressed file per slice
        if progress:
            progress(len(records), len(records))
    else:
        frames = _load_pixels([by_path[p] for p in used_records], workers, progress)
        stack = np.stack([frames[s.record.path][s.frame] for s in slices])
    first = slices[0].record
    meta = _series_meta(entry, [by_path[p] for p in used_records])
    meta["sop_instance_uids"] = [s.record.sop_instance_uid for s in slices]
    if first.photometric == "MONOCHROME1":
        stack = _invert_monochrome1(stack, first, meta)
    if stack.ndim == 3:
        slopes = np.array([s.geometry.slope for s in slices])
        inters = np.array([s.geometry.intercept for s in slices])
        stack, resc = _apply_rescale(stack, slopes, inters, warnings)
        meta.update(resc)

    if len(grid_t) != len(src_t) or not np.allclose(grid_t, src_t):
        stack, interpolated = _regrid(stack, src_t, grid_t, z_step)
        meta["interpolated_slices"] = interpolated
        meta["sop_instance_uids_acquired"] = meta.pop("sop_instance_uids")

    meta["warnings"] = warnings
    direction = np.column_stack([axis, col, row])
    return Image(stack, spacing=(z_step, pixel_spacing[0], pixel_spacing[1]), origin=pos[0],
                 direction=direction, modality=first.modality, meta=meta)


MAX_GRID_SUBDIVISION = 4  # an uneven series is put on a grid at most this much finer than its smallest gap


def _common_step(gaps: np.ndarray) -> float | None:
    """The largest step that every gap is a whole multiple of (so a grid of that step holds every
    acquired slice), no finer than the smallest gap / MAX_GRID_SUBDIVISION and giving at most
    MAX_GRID_SUBDIVISION planes per acquired slice; None if there is none."""
    smallest = float(gaps.min())
    max_planes = MAX_GRID_SUBDIVISION * (len(gaps) + 1)
    for divisor in range(1, MAX_GRID_SUBDIVISION + 1):
        step = smallest / divisor
        tol = max(0.02 * step, POSITION_TOL_MM)
        multiples = np.round(gaps / step)
        if multiples.sum() + 1 > max_planes:
            return None
        if np.all(multiples >= 1) and np.all(np.abs(gaps - multiples * step) <= tol):
            return float(gaps.sum() / multiples.sum())
    return None


def _regrid(stack: np.ndarray, src_t: np.ndarray, grid_t: np.ndarray,
            step: float) -> tuple[np.ndarray, list[int]]:
    """Linear interpolation along z onto a regular grid; acquired planes are copied exactly."""
    tol = max(0.02 * step, POSITION_TOL_MM)
    is_int = np.issubdtype(stack.dtype, np.integer)
    out_dtype = np.float32 if is_int else stack.dtype
    out = np.empty((len(grid_t),) + stack.shape[1:], dtype=out_dtype)
    interpolated: list[int] = []
    for k, t in enumerate(grid_t):
        j = int(np.searchsorted(src_t, t))
        if j < len(src_t) and abs(src_t[j] - t) <= tol:
            out[k] = stack[j]
        elif j > 0 and abs(src_t[j - 1] - t) <= tol:
            out[k] = stack[j - 1]
        else:
            lo, hi = max(j - 1, 0), min(j, len(src_t) - 1)
            w = 0.0 if hi == lo else (t - src_t[lo]) / (src_t[hi] - src_t[lo])
            out[k] = (1 - w) * stack[lo].astype(np.float32) + w * stack[hi].astype(np.float32)
            interpolated.append(k)
    if is_int and not interpolated:
        out = out.astype(stack.dtype)
    return out, interpolated


def summarize(entry: SeriesEntry) -> SeriesSummary:
    """Shape, spacing and integrity warnings of a series from its headers, without reading pixels.

    Raises :class:`SeriesError` exactly where :func:`build_image` would.
    """
    result = build_image(entry, header_only=True)
    assert isinstance(result, SeriesSummary)
    return result


def _summary_unplaced(records: list[InstanceRecord], warnings: list[dict[str, str]]) -> SeriesSummary:
    rec = records[0]
    geo = rec.frame_geometry[0] if rec.frame_geometry else FrameGeometry()
    dy, dx = geo.pixel_spacing or (1.0, 1.0)
    chans = 3 if rec.photometric == "PALETTE COLOR" else rec.samples_per_pixel
    if rec.is_mosaic:
        n = rec.mosaic_images or 0
        tiles = math.ceil(math.sqrt(n)) if n else 1
        dz = float(rec.meta.get("spacing_between_slices") or geo.slice_thickness or 1.0)
        mosaic_shape: tuple[int, ...] = (n, rec.rows // tiles, rec.columns // tiles)
        if len(records) > 1:
            mosaic_shape += (len(records),)
        return SeriesSummary(mosaic_shape, (dz, dy, dx), warnings)
    dz = geo.slice_thickness if (rec.frames == 1 and geo.slice_thickness) else 1.0
    shape = (rec.frames, rec.rows, rec.columns) + ((chans,) if chans > 1 else ())
    return SeriesSummary(shape, (dz, dy, dx), warnings)


def build_image(entry: SeriesEntry, *, workers: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                header_only: bool = False) -> Image | SeriesSummary:
    """The Image of one indexed series (see the module docstring for what is checked).

    With ``header_only`` no pixel is read and a :class:`SeriesSummary` is returned instead.
    """
    warnings: list[dict[str, str]] = []
    records = entry.instances
    if header_only and (all(r.is_mosaic for r in records) or (
            len(records) == 1 and not any(g.position for g in records[0].frame_geometry))):
        return _summary_unplaced(records, warnings)
    if all(r.is_mosaic for r in records):
        return _mosaic_image(sorted(records, key=lambda r: (r.acquisition_number or 0,
                                                            r.instance_number or 0)),
                             entry, warnings)
    placed = [r for r in records if all(g.position is not None and g.orientation is not None
                                        for g in r.frame_geometry[: r.frames])]
    if len(records) == 1 and not placed:
        rec = records[0]
        frames = read_frames(rec)
        return _single_frames_image(rec, frames, entry, warnings)
    if not placed:
        raise SeriesError(
            _series_name(entry),
            f"{len(records)} images without Image Position/Orientation (Patient): they are "
            f"separate 2-D images, not a volume",
            "read them one file at a time",
        )
    if len(placed) < len(records):
        _warn(warnings, "no_geometry",
              f"{len(records) - len(placed)} image(s) without position/orientation left out")
        entry = SeriesEntry(entry.study_instance_uid, entry.series_instance_uid,
                            entry.series_number, entry.modality, placed, entry.split_by_number)
    slices = _select_slices(entry, warnings)
    return _volume_image(entry, slices, warnings, workers, progress, header_only)
