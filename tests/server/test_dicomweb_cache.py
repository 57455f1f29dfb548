"""WADO-RS answers carry an entity tag from the instances' SHA-256: a browser revalidates (304) instead
of downloading a series again, and a replaced instance gets a new tag."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pydicom


def test_metadata_and_frames_revalidate(medimg_server: Any, ct_files: list[Path]) -> None:
    server = medimg_server(conflict="replace")
    for f in ct_files[:3]:
        server.store.put_path(f)
    ds = pydicom.dcmread(ct_files[0], stop_before_pixels=True)
    base = f"http://127.0.0.1:{server.config.http_port}/dicomweb/studies/{ds.StudyInstanceUID}"
    series = f"{base}/series/{ds.SeriesInstanceUID}"
    frame = f"{series}/instances/{ds.SOPInstanceUID}/frames/1"
    accept_frames = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}
    with httpx.Client(timeout=60) as http:
        first = http.get(f"{series}/metadata", headers={"Accept": "application/dicom+json"})
        assert first.status_code == 200 and len(first.json()) == 3
        tag = first.headers["etag"]
        assert first.headers["cache-control"] == "private, no-cache"
        again = http.get(f"{series}/metadata", headers={"Accept": "application/dicom+json"})
        assert again.json() == first.json() and again.headers["etag"] == tag  # cached DICOM JSON, same
        fresh = http.get(f"{series}/metadata", headers={"Accept": "application/dicom+json", "If-None-Match": tag})
        assert fresh.status_code == 304 and fresh.content == b""

        f1 = http.get(frame, headers=accept_frames)
        assert f1.status_code == 200
        assert http.get(frame, headers={**accept_frames, "If-None-Match": f1.headers["etag"]}).status_code == 304
        # another Accept is another answer: another tag
        raw = http.get(frame, headers={"Accept": 'multipart/related; type="application/octet-stream"'})
        assert raw.headers["etag"] != f1.headers["etag"] or raw.content == f1.content

        # the instance is replaced (policy replace): its tag and its metadata change
        changed = pydicom.dcmread(ct_files[0])
        changed.SeriesDescription = "replaced"
        buf = BytesIO()
        changed.save_as(buf, enforce_file_format=True)
        assert server.store.put_file_bytes(buf.getvalue()).outcome == "replaced"
        after = http.get(f"{series}/metadata", headers={"Accept": "application/dicom+json", "If-None-Match": tag})
        assert after.status_code == 200 and after.headers["etag"] != tag
        descriptions = {i["0008103E"]["Value"][0] for i in after.json()}
        assert "replaced" in descriptions
