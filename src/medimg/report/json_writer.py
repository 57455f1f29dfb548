"""``report.json``: the :class:`~medimg.report.model.Report` as JSON, checked against a versioned schema.

The document is ``Report.to_dict()`` (numbers as JSON numbers, NaN/inf as ``null``), validated before it
is written against ``schema/report-<major>.<minor>.json`` (JSON Schema 2020-12, shipped as package
data and described field by field in docs/report-schema.md).  A document that does not validate is a
bug in the producer of the report and is never written.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .model import SCHEMA_VERSION, Report

__all__ = ["load_schema", "report_to_json", "validate_report_dict", "write_json"]


@cache
def load_schema(version: str = SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema of ``report.json`` for ``version`` (e.g. ``"1.0"``)."""
    name = f"report-{version}.json"
    try:
        text = resources.files("medimg.report").joinpath("schema", name).read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = (f"report schema {name} is not installed with medimg; "
               "reinstall the package (the schema ships as package data)")
        raise FileNotFoundError(msg) from None
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_report_dict(doc: dict[str, Any]) -> None:
    """Raise ``ValueError`` (one line: where and what) unless ``doc`` follows its schema version."""
    import jsonschema

    version = doc.get("schema_version")
    if not isinstance(version, str):
        msg = "report.json: 'schema_version' is missing; it must name the schema version, e.g. '1.0'"
        raise ValueError(msg)
    validator_cls = jsonschema.Draft202012Validator
    validator = validator_cls(load_schema(version))
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        msg = (f"report.json does not follow schema {version} at {where}: {error.message}; "
               "this is a bug in the step that filled the report")
        raise ValueError(msg)


def report_to_json(report: Report, *, indent: int | None = 2) -> str:
    """The validated JSON text of ``report``."""
    doc = report.to_dict()
    validate_report_dict(doc)
    return json.dumps(doc, indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(report: Report, path: str | Path) -> Path:
    """Write ``report`` as validated JSON to ``path`` (not atomic: :func:`write_report` is)."""
    target = Path(path)
    target.write_text(report_to_json(report), encoding="utf-8")
    return target
