"""report.html: the numbers a clinician needs, self-contained, key images with the outlines in place."""

from __future__ import annotations

import base64
import dataclasses
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from scipy import ndimage

from medimg.image import Image
from medimg.report.html import render_html
from medimg.report.model import Location, Measurement, Report
from medimg.report.render import (
    FINDING_COLOUR,
    LONG_AXIS_COLOUR,
    SHORT_AXIS_COLOUR,
    STRUCTURE_COLOURS,
    KeyImage,
    key_images,
)


@pytest.fixture(scope="module")
def html(written: dict[str, Path]) -> str:
    return written["html"].read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def keys(ct_report: Report, ct_image: Image) -> list[KeyImage]:
    return key_images(ct_report, ct_image)


def test_html_shows_the_findings_numbers(html: str, ct_report: Report) -> None:
    f = ct_report.findings[0]
    values = {m.name: m.value for m in f.measurements}
    text = re.sub(r"<[^>]+>", " ", html)
    assert f"{values['long_axis_diameter']:.1f} mm" in text
    assert f"{values['short_axis_diameter']:.1f} mm" in text
    assert f"{values['volume']:.0f} mm³" in text
    assert f"{values['mean_hu']:.0f} HU" in text
    assert "87%" in text
    for s in ct_report.structures:
        assert f"{s.measurements[0].value:.0f} mL" in text
    # Layout a clinician reads: summary, triage, quality, recommendations with the rule, provenance.
    assert ct_report.impression in text
    assert "soon" in text and ct_report.triage.reason in text  # type: ignore[union-attr]
    assert "Slices are 5 mm thick; nodules under 6 mm may be missed." in text
    assert "Rule applied: &ldquo;" + ct_report.recommendations[0].rule in html
    assert ct_report.study.study_instance_uid in text
    assert "test-threshold-lungs" in text and "It is not a diagnosis." in text
    for section in ("summary", "quality", "findings", "key-images", "recommendations", "provenance"):
        assert f'<section id="{section}"' in html


def _findings_header(html: str) -> list[str]:
    section = html.split('<section id="findings">', 1)[1]
    head = section.split("</thead>", 1)[0]
    return [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>.*?</th>", head, re.S)]


def test_findings_table_leaves_out_columns_no_finding_fills(html: str, ct_report: Report) -> None:
    # The CT nodule fills every column.
    full = ["ID", "Finding", "Location", "Long axis", "Short axis", "Volume", "Mean attenuation", "Other",
            "Confidence", "Review"]
    assert _findings_header(html) == full
    # A 2-D classifier's finding (a probability, no position or size) gets no empty columns, and its
    # row has as many cells as the header.
    f = ct_report.findings[0]
    flat = dataclasses.replace(f, id="F2", location=Location(), mask=None,
                               measurements=[Measurement("malignancy_probability", 0.15, "1", "model")])
    only_flat = render_html(dataclasses.replace(ct_report, findings=[flat], recommendations=[]), None)
    assert _findings_header(only_flat) == ["ID", "Finding", "Other", "Confidence", "Review"]
    body = only_flat.split('<section id="findings">', 1)[1].split("</tbody>", 1)[0].split("<tbody>", 1)[1]
    assert len(re.findall(r"<td[ >]", body)) == 5
    assert "malignancy probability 0.15" in body
    # With both, the nodule's columns stay and the flat finding shows "-" in them.
    both = render_html(dataclasses.replace(ct_report, findings=[f, flat]), None)
    assert _findings_header(both) == full


def test_html_is_self_contained(html: str) -> None:
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.IGNORECASE)
    assert refs, "no images embedded"
    assert all(r.startswith("data:image/png;base64,") for r in refs), refs[:3]
    assert "http://" not in html and "https://" not in html and "url(" not in html
    assert "<script" not in html.lower() and "<link" not in html.lower()


def test_key_images_are_embedded_as_rendered(html: str, keys: list[KeyImage]) -> None:
    assert [k.kind for k in keys] == ["overview", "context", "detail"]
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert embedded == [base64.b64encode(k.png).decode("ascii") for k in keys]


def _rgb(key: KeyImage) -> np.ndarray:
    img = PILImage.open(io.BytesIO(key.png))
    assert img.format == "PNG" and img.size == key.size
    return np.asarray(img.convert("RGB"))


def _has_colour(rgb: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.all(rgb == np.asarray(colour, dtype=np.uint8), axis=-1)


def _boundary_points(mask2d: np.ndarray) -> np.ndarray:
    return np.argwhere(mask2d & ~ndimage.binary_erosion(mask2d))


def test_detail_image_outlines_the_finding_and_draws_its_axes(keys: list[KeyImage], ct_report: Report) -> None:
    detail = next(k for k in keys if k.kind == "detail")
    mask = ct_report.findings[0].mask[detail.slice_index]  # type: ignore[index]
    assert mask.any()
    rgb = _rgb(detail)
    red = _has_colour(rgb, FINDING_COLOUR)
    assert red.sum() > 50
    # Every boundary voxel of the mask has red within 1.5 voxel widths of where it is drawn.
    scale = detail.spacing_yx[0] / detail.mm_per_px
    reach = int(np.ceil(1.5 * scale))
    for y, x in _boundary_points(mask):
        r, c = (int(round(v)) for v in detail.to_picture(y, x))
        window = red[max(r - reach, 0): r + reach + 1, max(c - reach, 0): c + reach + 1]
        assert window.any(), f"no outline drawn near boundary voxel {(y, x)} (picture {(r, c)})"
    # ... and red only there: nothing beyond the mask's box, nothing at its centre.
    ys, xs = np.nonzero(mask)
    r0, c0 = detail.to_picture(ys.min(), xs.min())
    r1, c1 = detail.to_picture(ys.max(), xs.max())
    rr, cc = np.nonzero(red)
    pad = scale + 3
    assert rr.min() >= r0 - pad and rr.max() <= r1 + pad and cc.min() >= c0 - pad and cc.max() <= c1 + pad
    cy, cx = detail.to_picture(ys.mean(), xs.mean())
    assert not red[int(cy) - 2: int(cy) + 3, int(cx) - 2: int(cx) + 3].any(), "the finding is filled, not outlined"
    # The long and short axes are drawn across the finding.
    for colour in (LONG_AXIS_COLOUR, SHORT_AXIS_COLOUR):
        inside = _has_colour(rgb, colour)[int(r0): int(r1) + 1, int(c0): int(c1) + 1]
        assert inside.sum() >= 0.5 * (r1 - r0), f"axis {colour} not drawn across the finding"
    assert "17.9 mm" in detail.caption


def test_context_and_overview_outline_the_lungs(keys: list[KeyImage], ct_report: Report) -> None:
    context = next(k for k in keys if k.kind == "context")
    rgb = _rgb(context)
    red = _has_colour(rgb, FINDING_COLOUR)
    cy, cx = context.to_picture(*ct_report.findings[0].location.centroid_index[1:])  # type: ignore[index]
    rr, cc = np.nonzero(red)
    assert len(rr) > 10
    assert np.hypot(rr.mean() - cy, cc.mean() - cx) < 3  # the red ring is centred on the finding
    for key in (context, next(k for k in keys if k.kind == "overview")):
        rgb = _rgb(key)
        for i, s in enumerate(ct_report.structures):
            colour = STRUCTURE_COLOURS[i]
            drawn = _has_colour(rgb, colour)
            assert drawn.sum() > 200, f"{s.name} not outlined on the {key.kind} image"
            # Drawn pixels sit on the structure's boundary (within 2 picture pixels).
            edge = _boundary_points(s.mask[key.slice_index])  # type: ignore[index]
            pic = np.array([key.to_picture(y, x) for y, x in edge[:: max(1, len(edge) // 400)]])
            dr, dc = np.nonzero(drawn)
            sample = np.stack([dr, dc], axis=1)[:: max(1, len(dr) // 300)]
            dist = np.min(np.hypot(sample[:, None, 0] - pic[None, :, 0], sample[:, None, 1] - pic[None, :, 1]), axis=1)
            assert np.median(dist) < 2.0


def test_images_are_shown_radiologically(keys: list[KeyImage], ct_image: Image) -> None:
    # This series stores +x toward the patient's left: the picture keeps it (patient right on the left).
    overview = keys[0]
    assert not overview.flip_x and not overview.flip_y
    flipped = ct_image.replace(array=ct_image.array[:, :, ::-1],
                               origin=ct_image.index_to_patient([0, 0, ct_image.shape[2] - 1]),
                               direction=ct_image.direction * [1, 1, -1])
    from medimg.report.render import _SliceView, display_window

    a = _SliceView(ct_image, 30, display_window(ct_image)).gray
    b = _SliceView(flipped, 30, display_window(flipped)).gray
    assert np.array_equal(a, b)


def test_refused_report_html(refused_report: Report, ct_image: Image) -> None:
    html = render_html(refused_report, ct_image)
    assert "No analysis was done" in html
    assert "the lungs are not fully covered by the scan" in html
    assert "<img" not in html
    assert "It is not a diagnosis." in html
