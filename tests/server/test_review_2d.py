"""Evidence images and sign-off of a 2-D analysis: a real chest radiograph (pydicom-data RG1_UNCR, a CR
the chest_xray protocol takes) analysed by a running server; its Grad-CAM overlay is served by the
name the report lists (and nothing else), and signing writes report.json/html/pdf and fhir.json only
(a CR has no Frame of Reference, so no SR), leaving the AI's copies in ai/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from peers import start_medimg
from workstation_helpers import add_users, put_study, signed_in, wait_for

from medimg.server import worklist as wl

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_review_2d")]


@pytest.fixture(scope="module")
def cr(tmp_path_factory: pytest.TempPathFactory, pydicom_data_dir: Path) -> Iterator[tuple[Any, str, httpx.Client]]:
    server = start_medimg(tmp_path_factory.mktemp("cr") / "store", analysis=True, auth=True, quiet_seconds=0.5)
    try:
        add_users(server)
        uid = put_study(server, [pydicom_data_dir / "RG1_UNCR.dcm"])
        wait_for(lambda: server.store.study_status(uid) in ("ready", "failed", "skipped"), 600, "the CR analysis")
        assert server.store.study_status(uid) == "ready"
        with signed_in(server, "ada") as c:
            yield server, uid, c
    finally:
        server.stop()


def test_evidence_images_are_served_by_their_listed_name(cr: tuple[Any, str, httpx.Client]) -> None:
    server, uid, c = cr
    report = c.get(f"/api/studies/{uid}/report").json()
    listed = [Path(ev["path"]).name for f in report["findings"] for ev in f["evidence"] if ev.get("path")]
    assert listed and all(n.endswith(".png") for n in listed)
    found = wl.finished_analysis(server.store, uid)
    assert found is not None
    for name in listed:
        r = c.get(f"/api/studies/{uid}/evidence/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert r.content == (found[1] / "evidence" / name).read_bytes()
    assert c.get(f"/api/studies/{uid}/evidence/report.json").status_code == 404  # a file, but not evidence
    assert c.get(f"/api/studies/{uid}/evidence/..%2F..%2Findex.sqlite").status_code in (400, 404)


def test_signing_a_2d_report_writes_no_sr(cr: tuple[Any, str, httpx.Client]) -> None:
    server, uid, c = cr
    ids = [f["id"] for f in c.get(f"/api/studies/{uid}/review").json()["findings"]]
    assert ids
    for fid in ids:
        assert c.post(f"/api/studies/{uid}/findings/{fid}/decision", json={"action": "accept"}).status_code == 200
    r = c.post(f"/api/studies/{uid}/sign")
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == ["fhir.json", "report.html", "report.json", "report.pdf"]
    assert r.json()["sr"] is None
    doc = c.get(f"/api/studies/{uid}/report").json()
    assert doc["review"]["state"] == "signed"
    assert [e["status"] for e in doc["review"]["findings"]] == ["accepted"] * len(ids)
    found = wl.finished_analysis(server.store, uid)
    assert found is not None
    ai = json.loads((found[1] / "ai" / "report.json").read_text())
    assert "review" not in ai and ai["schema_version"] == "1.0"
    # the evidence stays served after signing
    name = Path(ai["findings"][0]["evidence"][0]["path"]).name
    assert c.get(f"/api/studies/{uid}/evidence/{name}").status_code == 200
