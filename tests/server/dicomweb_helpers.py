"""Helpers of the DICOMweb tests: build STOW-RS bodies, split multipart answers (written here, apart
from medimg's own parser, so the tests do not check the server with its own code), and read DICOM
JSON values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary={}'


def stow_body(files: list[bytes], boundary: str = "medimg-test-boundary-0123456789") -> tuple[bytes, str]:
    """A STOW-RS body with one application/dicom part per file, and its Content-Type."""
    chunks = []
    for data in files:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), STOW_TYPE.format(boundary)


def stow(client: httpx.Client, files: list[Path] | list[bytes], study: str | None = None) -> httpx.Response:
    data = [f.read_bytes() if isinstance(f, Path) else f for f in files]
    body, ctype = stow_body(data)
    return client.post(f"/studies/{study}" if study else "/studies", content=body,
                       headers={"Content-Type": ctype, "Accept": "application/dicom+json"})


def split_multipart(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    """(headers, content) of every part of a multipart/related answer."""
    ctype = response.headers["content-type"]
    assert ctype.startswith("multipart/related"), ctype
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    assert m, ctype
    delim = b"--" + m.group(1).encode()
    body = response.content
    assert body.rstrip(b"\r\n").endswith(delim + b"--"), "no close delimiter"
    pieces = body.split(b"\r\n" + delim)
    first = pieces[0]
    assert first.startswith(delim), "the body does not start with the boundary"
    pieces[0] = first[len(delim):]
    parts = []
    for piece in pieces:
        if piece.startswith(b"--"):
            break
        head, sep, content = piece.partition(b"\r\n\r\n")
        assert sep, "a part without a header block"
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        parts.append((headers, content))
    return parts


def value(item: dict[str, Any], tag: str, default: Any = None) -> Any:
    """The first value of ``tag`` in a DICOM JSON object (PN as its Alphabetic string)."""
    values = item.get(tag, {}).get("Value")
    if not values:
        return default
    v = values[0]
    return v.get("Alphabetic", v) if isinstance(v, dict) else v


def values(items: list[dict[str, Any]], tag: str) -> list[Any]:
    return [value(i, tag) for i in items]
