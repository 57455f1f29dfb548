"""Key images of a report: windowed slices with outlines, axes and labels drawn, as PNG bytes.

numpy does the windowing and the outlines; Pillow scales, draws lines and text and encodes PNG.  Images
are shown in the radiological convention (patient right on the left of the picture, anterior at the
top) whatever the storage order, and at true aspect (square millimetres).

For each finding there are two images: ``context`` (the whole slice, every structure outlined, the
finding outlined and boxed) and ``detail`` (a zoomed crop around the finding with its outline, its
long axis and its short axis drawn on the slice where the long axis is longest, labelled with the
report's millimetre values).  One ``overview`` image shows the slice where the structures are largest.

Each :class:`KeyImage` says how its pixels map to the slice (``crop``, ``mm_per_px``, flips) so tests
and other tools can find a voxel in the picture.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from ..image import Image
from .model import Finding, Report

__all__ = [
    "FINDING_COLOUR",
    "LONG_AXIS_COLOUR",
    "LUNG_WINDOW",
    "SHORT_AXIS_COLOUR",
    "STRUCTURE_COLOURS",
    "Axes2D",
    "KeyImage",
    "axes_on_slice",
    "key_images",
    "outline",
    "render_finding",
    "render_overview",
]

#: Lung window (level -600 HU, width 1500 HU) as (low, high).
LUNG_WINDOW = (-1350.0, 150.0)
FINDING_COLOUR = (255, 40, 40)
LONG_AXIS_COLOUR = (255, 225, 0)
SHORT_AXIS_COLOUR = (255, 140, 0)
STRUCTURE_COLOURS = [(60, 150, 255), (0, 215, 200), (200, 110, 255), (120, 220, 90), (255, 120, 210)]
_TEXT_BG = (0, 0, 0)


@dataclass
class KeyImage:
    """One rendered picture and how its pixels map to the analysed image.

    A slice pixel ``(y, x)`` (array indices) lies at picture pixel
    ``((y' - crop[0] + 0.5) * spacing_y / mm_per_px - 0.5, ...)`` where ``y' = ny - 1 - y`` when
    ``flip_y`` (likewise for x), ``crop = (y0, x0, y1, x1)`` in the flipped slice.
    """

    kind: str  # "overview" | "context" | "detail"
    title: str
    caption: str
    png: bytes
    slice_index: int
    finding_id: str | None = None
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    mm_per_px: float = 1.0
    spacing_yx: tuple[float, float] = (1.0, 1.0)
    flip_y: bool = False
    flip_x: bool = False
    size: tuple[int, int] = (0, 0)  # (width, height) of the picture
    legend: list[tuple[str, tuple[int, int, int]]] = field(default_factory=list)
    slice_shape: tuple[int, int] = (0, 0)  # (ny, nx) of the analysed image's slices

    def to_picture(self, y: float, x: float) -> tuple[float, float]:
        """Picture (row, column) of the centre of slice pixel ``(y, x)``."""
        ny, nx = self.slice_shape
        yy = (ny - 1 - y) if self.flip_y else y
        xx = (nx - 1 - x) if self.flip_x else x
        return ((yy - self.crop[0] + 0.5) * self.spacing_yx[0] / self.mm_per_px - 0.5,
                (xx - self.crop[1] + 0.5) * self.spacing_yx[1] / self.mm_per_px - 0.5)


@dataclass
class Axes2D:
    """Long and short axis of a 2-D region: end points as (y, x) pixel centres, lengths in mm."""

    long_ends: tuple[tuple[float, float], tuple[float, float]]
    long_mm: float
    short_ends: tuple[tuple[float, float], tuple[float, float]]
    short_mm: float


# ------------------------------------------------------------------ pixel helpers
def outline(mask: np.ndarray, *, edge_counts: bool = True) -> np.ndarray:
    """The pixels of ``mask`` that touch a pixel outside it (4-neighbourhood).

    ``edge_counts``: whether the array's edge is a boundary (False for crops, whose edge is not one).
    """
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return m.copy()
    p = np.pad(m, 1, constant_values=False) if edge_counts else np.pad(m, 1, mode="edge")
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def _thicken(edge: np.ndarray) -> np.ndarray:
    p = np.pad(edge, 1, constant_values=False)
    return edge | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]


def _window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (values.astype(np.float32) - low) * (255.0 / max(high - low, 1e-6))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def display_window(image: Image) -> tuple[float, float]:
    """Lung window for CT; the 1st..99th percentile otherwise."""
    if image.modality == "CT":
        return LUNG_WINDOW
    sample = np.asarray(image.array[..., ::4, ::4], dtype=np.float32)
    lo, hi = np.percentile(sample, [1, 99])
    return float(lo), float(max(hi, lo + 1))


def axes_on_slice(mask2d: np.ndarray, spacing_yx: tuple[float, float]) -> Axes2D | None:
    """Longest chord of a 2-D mask (between pixel centres, in mm) and the longest extent perpendicular to it."""
    m = np.asarray(mask2d, dtype=bool)
    if not m.any():
        return None
    sy, sx = float(spacing_yx[0]), float(spacing_yx[1])
    edge = np.argwhere(outline(m)).astype(float)
    pts = edge * (sy, sx)
    if len(pts) == 1:
        p = tuple(edge[0])
        return Axes2D((p, p), 0.0, (p, p), 0.0)
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    long_mm = float(np.sqrt(d2[i, j]))
    a, b = pts[i], pts[j]
    u = (b - a) / long_mm if long_mm > 0 else np.array([0.0, 1.0])
    v = np.array([-u[1], u[0]])
    allpts = np.argwhere(m).astype(float) * (sy, sx)
    pu = (allpts - a) @ u
    pv = (allpts - a) @ v
    step = min(sy, sx)
    bins = np.round(pu / step).astype(int)
    best = (-1.0, 0.0, 0.0, 0.0)
    for b_ in np.unique(bins):
        sel = bins == b_
        lo, hi = pv[sel].min(), pv[sel].max()
        if hi - lo > best[0]:
            best = (float(hi - lo), float(b_ * step), float(lo), float(hi))
    width, ucen, vlo, vhi = best
    q0 = a + ucen * u + vlo * v
    q1 = a + ucen * u + vhi * v
    to_px = np.array([sy, sx])
    return Axes2D(
        (tuple(edge[i]), tuple(edge[j])), long_mm,
        (tuple(q0 / to_px), tuple(q1 / to_px)), width,
    )


@cache
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError, ValueError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str,
           colour: tuple[int, int, int], size: int = 14) -> None:
    font = _font(size)
    x, y = xy
    box = draw.textbbox((x, y), text, font=font)
    draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=_TEXT_BG)
    draw.text((x, y), text, fill=colour, font=font)


# ------------------------------------------------------------------ the slice view
class _SliceView:
    """One slice of an image, flipped to radiological display and scaled to square millimetres."""

    def __init__(self, image: Image, z: int, window: tuple[float, float]) -> None:
        self.image = image
        self.z = z
        d = image.direction
        # Radiological display: columns go to patient left (+x LPS), rows go posterior (+y LPS).
        self.flip_x = bool(d[0, 2] < 0)
        self.flip_y = bool(d[1, 1] < 0)
        self.spacing_yx = (float(image.spacing[1]), float(image.spacing[2]))
        self.shape = image.spatial_shape[1:]
        self.gray = _window(self._orient(np.asarray(image.array[z])), *window)

    def _orient(self, arr: np.ndarray) -> np.ndarray:
        if self.flip_y:
            arr = arr[::-1]
        if self.flip_x:
            arr = arr[:, ::-1]
        return arr

    def oriented_point(self, y: float, x: float) -> tuple[float, float]:
        ny, nx = self.shape
        return ((ny - 1 - y) if self.flip_y else y, (nx - 1 - x) if self.flip_x else x)

    def render(self, crop: tuple[int, int, int, int], out_px: int,
               masks: list[tuple[np.ndarray, tuple[int, int, int], bool]]) -> tuple[PILImage.Image, float]:
        """Crop ``(y0, x0, y1, x1)`` of the oriented slice, scaled so its longer side is ``out_px``.

        ``masks``: (2-D mask in array order, colour, thick) drawn as outlines.
        """
        y0, x0, y1, x1 = crop
        sy, sx = self.spacing_yx
        height_mm, width_mm = (y1 - y0) * sy, (x1 - x0) * sx
        mm_per_px = max(height_mm, width_mm) / out_px
        size = (max(1, round(width_mm / mm_per_px)), max(1, round(height_mm / mm_per_px)))
        base = PILImage.fromarray(np.ascontiguousarray(self.gray[y0:y1, x0:x1]), mode="L")
        rgb = np.array(base.resize(size, PILImage.Resampling.BILINEAR).convert("RGB"))
        for mask2d, colour, thick in masks:
            m = self._orient(np.asarray(mask2d, dtype=bool))[y0:y1, x0:x1]
            if not m.any():
                continue
            big = np.array(PILImage.fromarray(m.astype(np.uint8) * 255, mode="L")
                           .resize(size, PILImage.Resampling.NEAREST)) > 127
            edge = outline(big, edge_counts=False)
            if thick:
                edge = _thicken(edge)
            rgb[edge] = colour
        return PILImage.fromarray(rgb, mode="RGB"), mm_per_px

    def to_xy(self, y: float, x: float, crop: tuple[int, int, int, int],
                   mm_per_px: float) -> tuple[float, float]:
        """(column, row) in the picture of the centre of array pixel (y, x): Pillow's (x, y) order."""
        yy, xx = self.oriented_point(y, x)
        sy, sx = self.spacing_yx
        return ((xx - crop[1] + 0.5) * sx / mm_per_px - 0.5, (yy - crop[0] + 0.5) * sy / mm_per_px - 0.5)


def _png(img: PILImage.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _key(view: _SliceView, kind: str, title: str, caption: str, img: PILImage.Image,
         crop: tuple[int, int, int, int], mm_per_px: float, finding_id: str | None,
         legend: list[tuple[str, tuple[int, int, int]]]) -> KeyImage:
    key = KeyImage(kind=kind, title=title, caption=caption, png=_png(img), slice_index=view.z,
                   finding_id=finding_id, crop=crop, mm_per_px=mm_per_px,
                   spacing_yx=view.spacing_yx, flip_y=view.flip_y, flip_x=view.flip_x,
                   size=img.size, legend=legend, slice_shape=view.shape)
    return key


def _structure_masks(report: Report, z: int) -> list[tuple[np.ndarray, tuple[int, int, int], bool, str]]:
    """Each structure's section on slice z with its holes filled: the outline shows its extent, not
    every vessel a lung mask leaves out."""
    from scipy import ndimage

    out = []
    for i, s in enumerate(report.structures):
        if s.mask is not None:
            section = ndimage.binary_fill_holes(s.mask[z])
            out.append((section, STRUCTURE_COLOURS[i % len(STRUCTURE_COLOURS)], True, s.name))
    return out


def _orientation_marks(draw: ImageDraw.ImageDraw, size: tuple[int, int]) -> None:
    w, h = size
    _label(draw, (6, h // 2 - 8), "R", (255, 255, 255), 16)
    _label(draw, (w - 18, h // 2 - 8), "L", (255, 255, 255), 16)
    _label(draw, (w // 2 - 5, 4), "A", (255, 255, 255), 16)


# ------------------------------------------------------------------ the pictures
def _finding_slice(finding: Finding, spacing_yx: tuple[float, float]) -> tuple[int, Axes2D | None]:
    """The slice where the finding's long axis is longest (its largest section if all are equal)."""
    assert finding.mask is not None
    zs = np.flatnonzero(finding.mask.any(axis=(1, 2)))
    best: tuple[float, int, int, Axes2D | None] = (-1.0, -1, -1, None)
    for z in zs:
        ax = axes_on_slice(finding.mask[z], spacing_yx)
        area = int(finding.mask[z].sum())
        length = ax.long_mm if ax else 0.0
        if (length, area) > (best[0], best[1]):
            best = (length, area, int(z), ax)
    return best[2], best[3]


def _zpos(image: Image, z: int) -> str:
    """The patient-frame S coordinate of a slice's centre: how viewers label slice positions."""
    ny, nx = image.spatial_shape[1:]
    return f"z = {image.index_to_patient([z, (ny - 1) / 2, (nx - 1) / 2])[2]:.1f} mm"


def _fmt_mm(finding: Finding, name: str, fallback: float | None) -> str:
    m = finding.measurement(name)
    if m is not None and m.value is not None and np.isfinite(m.value):
        return f"{m.value:.1f} {m.unit}"
    return f"{fallback:.1f} mm" if fallback is not None else "-"


def render_finding(report: Report, image: Image, finding: Finding,
                   *, context_px: int = 512, detail_px: int = 360) -> list[KeyImage]:
    """The ``context`` and ``detail`` pictures of one finding (empty list when it has no mask)."""
    if finding.mask is None or not finding.mask.any():
        return []
    window = display_window(image)
    spacing_yx = (float(image.spacing[1]), float(image.spacing[2]))
    z, axes = _finding_slice(finding, spacing_yx)
    view = _SliceView(image, z, window)
    structures = _structure_masks(report, z)
    fmask = finding.mask[z]
    n_slices = image.spatial_shape[0]
    long_txt = _fmt_mm(finding, "long_axis_diameter", axes.long_mm if axes else None)
    short_txt = _fmt_mm(finding, "short_axis_diameter", axes.short_mm if axes else None)

    # Detail crop: square field around the finding, at least 50 mm and 3x its long axis.
    ys, xs = np.nonzero(fmask)
    cy, cx = view.oriented_point(float(ys.mean()), float(xs.mean()))
    field_mm = max(50.0, 3.0 * (axes.long_mm if axes else 0.0))
    ny, nx = view.shape
    hy = min(ny, max(8, round(field_mm / spacing_yx[0])))
    hx = min(nx, max(8, round(field_mm / spacing_yx[1])))
    y0 = int(np.clip(round(cy - hy / 2), 0, ny - hy))
    x0 = int(np.clip(round(cx - hx / 2), 0, nx - hx))
    dcrop = (y0, x0, y0 + hy, x0 + hx)

    legend = [(f"{finding.id} outline", FINDING_COLOUR)] + [(s[3], s[1]) for s in structures]
    label = f"{finding.id} {finding.kind}"

    # Context: whole slice.
    full = (0, 0, ny, nx)
    cimg, cmm = view.render(full, context_px, [(m, c, t) for m, c, t, _ in structures]
                            + [(fmask, FINDING_COLOUR, True)])
    draw = ImageDraw.Draw(cimg)
    corners = [(dcrop[0], dcrop[1]), (dcrop[2], dcrop[3])]
    sy, sx = spacing_yx
    (bx0, by0), (bx1, by1) = [((xx + 0.0) * sx / cmm, (yy + 0.0) * sy / cmm) for yy, xx in corners]
    draw.rectangle((bx0, by0, bx1, by1), outline=(255, 255, 255), width=1)
    _orientation_marks(draw, cimg.size)
    _label(draw, (6, 6), f"{label}  slice {z + 1}/{n_slices}", (255, 255, 255))
    context = _key(view, "context", f"{label}: slice {z + 1} of {n_slices}",
                   f"Axial slice {z + 1} of {n_slices} ({_zpos(image, z)}), lung window; {finding.id} outlined in red, "
                   "structures outlined; the white box is the enlarged view.",
                   cimg, full, cmm, finding.id, legend)

    # Detail: enlarged crop with the axes.
    dimg, dmm = view.render(dcrop, detail_px, [(m, c, t) for m, c, t, _ in structures]
                            + [(fmask, FINDING_COLOUR, True)])
    draw = ImageDraw.Draw(dimg)
    if axes is not None:
        for ends, colour in ((axes.long_ends, LONG_AXIS_COLOUR), (axes.short_ends, SHORT_AXIS_COLOUR)):
            p0 = view.to_xy(*ends[0], dcrop, dmm)
            p1 = view.to_xy(*ends[1], dcrop, dmm)
            draw.line((p0, p1), fill=colour, width=2)
    _label(draw, (6, 6), f"long axis {long_txt}", LONG_AXIS_COLOUR)
    _label(draw, (6, 26), f"short axis {short_txt}", SHORT_AXIS_COLOUR)
    _label(draw, (6, dimg.size[1] - 22), f"{label}  {field_mm:.0f} mm field", (255, 255, 255))
    detail = _key(view, "detail", f"{label}: enlarged, with axes",
                  f"Enlarged ({field_mm:.0f} mm field) on slice {z + 1}: outline in red, long axis "
                  f"{long_txt} in yellow, short axis {short_txt} in orange (drawn on this slice).",
                  dimg, dcrop, dmm, finding.id,
                  legend + [("long axis", LONG_AXIS_COLOUR), ("short axis", SHORT_AXIS_COLOUR)])
    return [context, detail]


def render_overview(report: Report, image: Image, *, out_px: int = 512) -> KeyImage | None:
    """The slice where the structures are largest (or the middle slice), with every outline drawn."""
    nz = image.spatial_shape[0]
    area = np.zeros(nz)
    lungs = [s for s in report.structures if "lung" in s.name.lower() and s.mask is not None]
    for s in lungs or report.structures:  # the lungs decide where a chest is largest
        if s.mask is not None:
            area += s.mask.sum(axis=(1, 2))
    z = int(np.argmax(area)) if area.any() else nz // 2
    view = _SliceView(image, z, display_window(image))
    structures = _structure_masks(report, z)
    masks = [(m, c, t) for m, c, t, _ in structures]
    masks += [(f.mask[z], FINDING_COLOUR, True) for f in report.findings
              if f.mask is not None and f.mask[z].any()]
    full = (0, 0, view.shape[0], view.shape[1])
    img, mm = view.render(full, out_px, masks)
    draw = ImageDraw.Draw(img)
    _orientation_marks(draw, img.size)
    _label(draw, (6, 6), f"overview  slice {z + 1}/{nz}", (255, 255, 255))
    legend = [(s[3], s[1]) for s in structures]
    if any(f.mask is not None and f.mask[z].any() for f in report.findings):
        legend.append(("findings", FINDING_COLOUR))
    return _key(view, "overview", f"Overview: slice {z + 1} of {nz}",
                f"Axial slice {z + 1} of {nz} ({_zpos(image, z)}; largest {'lung' if lungs else 'structure'} area), "
                "lung window, "
                "segmented structures outlined.", img, full, mm, None, legend)


def key_images(report: Report, image: Image) -> list[KeyImage]:
    """Overview first, then context and detail of each finding with a mask, in report order."""
    if report.status != "complete":
        return []
    out: list[KeyImage] = []
    if image.array.ndim == 4:  # a colour photograph (fundus): drawn as its luminance
        rgb = image.array[..., :3].astype(np.float32)
        image = image.replace(array=rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    overview = render_overview(report, image)
    if overview is not None:
        out.append(overview)
    for f in report.findings:
        out.extend(render_finding(report, image, f))
        out.extend(_evidence_images(f))
    return out


def _evidence_images(f: Finding) -> list[KeyImage]:
    """A finding's saved heatmaps (e.g. the Grad-CAM overlay of a 2-D learned protocol), as shown."""
    from pathlib import Path

    out = []
    for ev in f.evidence or []:
        path = Path(str(ev.get("path", ""))) if isinstance(ev, dict) else None
        if ev.get("kind") != "heatmap" or path is None or not path.is_file():
            continue
        png = path.read_bytes()
        with PILImage.open(path) as im:
            size = im.size
        out.append(KeyImage(kind="heatmap", title=f"{ev.get('method', 'heatmap')} of {f.id}",
                            caption=(f"Where model {ev.get('model', '')} looked for "
                                     f"{ev.get('class') or f.kind} ({ev.get('method', 'heatmap')}); "
                                     "it shows what drove the score, not a lesion outline."),
                            png=png, slice_index=0, finding_id=f.id, size=size))
    return out
