"""``assess``: the quality report of one image (or file), never an exception for a bad image."""

from __future__ import annotations

import os
from pathlib import Path

from ..image import Image
from .checks import (
    consistency_checks,
    coverage_check,
    integrity_checks,
    protocol_checks,
    signal_checks,
    value_checks,
)
from .protocols import PROTOCOLS
from .regions import image_kind, regions
from .report import Check, QualityReport

__all__ = ["assess"]


def _unreadable(source: str, exc: BaseException) -> QualityReport:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return QualityReport([Check("readable", "fail", None, None,
                                f"the image cannot be read: {text}", "")], source=source)


def assess(image: Image | str | os.PathLike[str], protocol: str | None = None) -> QualityReport:
    """Check whether an image is fit to read: pass / warn / fail with one entry per check.

    Parameters
    ----------
    image:
        An :class:`~medimg.image.Image`, or a path that :func:`medimg.read` can open.  A path that
        cannot be read gives a ``fail`` report (check ``readable``) instead of an exception.
    protocol:
        Name from :data:`~medimg.quality.protocols.PROTOCOLS` (``"chest_ct"``, ``"brain_mri"``, ...)
        to also check modality, slice count and body part against.

    Returns
    -------
    QualityReport
        ``verdict`` is the worst status of its checks.  Check names are documented in
        docs/quality.md.
    """
    if protocol is not None and protocol not in PROTOCOLS:
        msg = f"assess: unknown protocol {protocol!r}; use one of {', '.join(sorted(PROTOCOLS))}"
        raise ValueError(msg)
    source = None
    if not isinstance(image, Image):
        source = str(image)
        try:
            from ..io import read

            if not Path(source).exists():
                raise FileNotFoundError(f"{source}: no such file or folder")
            image = read(source)
        except Exception as exc:  # any reader error means: not readable
            return _unreadable(source, exc)
    else:
        source = image.meta.get("source_path")
    kind = image_kind(image)
    req = PROTOCOLS.get(protocol) if protocol else None
    report = QualityReport(kind=kind, protocol=protocol, source=source)
    report.checks.append(Check("readable", "pass", None, None, "the image was read", ""))
    values = value_checks(image)
    report.checks.extend(values)
    if values[0].status == "fail":
        return report
    report.checks.extend(integrity_checks(image))
    try:
        r = regions(image, kind)
    except Exception as exc:  # a measurement problem must not hide the report
        report.checks.append(Check("regions", "warn", None, None,
                                   f"the patient could not be located in the image ({exc})", ""))
        return report
    report.checks.extend(consistency_checks(image, kind, r))
    report.checks.extend(signal_checks(image, kind, r, background=req is None or req.background))
    if req is None or req.coverage:
        cov = coverage_check(image, kind, r)
        if cov is not None:
            report.checks.append(cov)
    if req is not None and protocol is not None:
        report.checks.extend(protocol_checks(image, kind, r, protocol, req))
    return report
