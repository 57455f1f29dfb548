"""The REST API of a running medimg server (analysis off): health, worklist (order, filters, paging),
one study, report files, re-analysis, events; status codes and one-line JSON errors.

Four real pydicom-data studies are stored (CR chest, MR shoulder, secondary capture, CT head slice);
worklist priorities come from ``analyses`` rows written to the index as the analysis service would
(the analysis itself is tested in test_analysis.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from medimg.store import schema as t

FILES = {"cr": "RG1_UNCR.dcm", "mr": "MR2_UNCR.dcm", "sc": "SC_rgb.dcm", "ct": "693_UNCR.dcm"}
RANK = {"urgent": 0, "soon": 1, "routine": 2}


@dataclass
class Api:
    server: Any
    client: httpx.Client
    uids: dict[str, str]  # key of FILES -> Study Instance UID


def add_analysis(server: Any, study_uid: str, priority: str, status: str = "done",
                 key_finding: str = "") -> int:
    """An ``analyses`` row as the analysis service writes it."""
    with server.store.engine.begin() as conn:
        pk = conn.execute(select(t.studies.c.id).where(t.studies.c.study_uid == study_uid)).scalar_one()
        return int(conn.execute(insert(t.analyses).values(
            study_pk=pk, status=status, attempts=1, protocol="test", priority=priority,
            priority_rank=RANK.get(priority, 9), key_finding=key_finding, created=time.time(),
            finished=time.time())).inserted_primary_key[0])


@pytest.fixture
def api(medimg_server: Callable[..., Any], pydicom_data_dir: Path) -> Iterator[Api]:
    server = medimg_server()
    uids = {}
    for key, name in FILES.items():
        result = server.store.put_path(pydicom_data_dir / name, source="test")
        uids[key] = result.study_uid
    with httpx.Client(base_url=f"http://127.0.0.1:{server.config.http_port}", timeout=30) as client:
        yield Api(server, client, uids)


def error_of(r: httpx.Response, status: int) -> str:
    """The one-line error of a response that must have ``status``."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"error"} and isinstance(body["error"], str)
    assert "\n" not in body["error"] and body["error"]
    return str(body["error"])


def test_health(api: Api) -> None:
    r = api.client.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert (body["studies"], body["series"], body["instances"]) == (4, 4, 4)
    assert body["dicom_port"] == api.server.node.port
    assert body["analysis"] == {"enabled": False}


def test_worklist_orders_by_priority_then_arrival(api: Api) -> None:
    u = api.uids
    add_analysis(api.server, u["cr"], "soon", key_finding="F1: pneumonia suspected")
    add_analysis(api.server, u["sc"], "urgent")  # an older analysis: the latest one below counts
    add_analysis(api.server, u["sc"], "routine")
    add_analysis(api.server, u["mr"], "urgent", key_finding="F1: solid mass, 40.0 mm long axis")
    page = api.client.get("/api/worklist").json()
    assert page["total"] == 4
    order = [(i["study_uid"], i["priority"], i["priority_rank"]) for i in page["items"]]
    assert order == [(u["mr"], "urgent", 0), (u["cr"], "soon", 1), (u["sc"], "routine", 2), (u["ct"], None, 9)]
    first = page["items"][0]
    assert first["key_finding"] == "F1: solid mass, 40.0 mm long axis"
    assert first["analysis_status"] == "done" and first["modalities"] == ["MR"]
    assert first["instances"] == 1 and first["received"] == first["first_received"]
    assert page["items"][3]["analysis_id"] is None and page["items"][3]["status"] == "received"
    # the same priority: first arrived, first listed
    add_analysis(api.server, u["ct"], "urgent")
    items = api.client.get("/api/worklist", params={"priority": "urgent"}).json()["items"]
    assert [i["study_uid"] for i in items] == [u["mr"], u["ct"]]


def test_worklist_filters_and_paging(api: Api) -> None:
    u, c = api.uids, api.client
    add_analysis(api.server, u["cr"], "soon")
    add_analysis(api.server, u["mr"], "urgent", status="failed")

    def uids(**params: Any) -> list[str]:
        r = c.get("/api/worklist", params=params)
        assert r.status_code == 200, r.text
        return [i["study_uid"] for i in r.json()["items"]]

    assert uids(modality="CR") == [u["cr"]]
    assert uids(modality="cr,mr") == [u["mr"], u["cr"]]
    assert uids(modality=["OT", "CT"]) == [u["sc"], u["ct"]]
    assert uids(priority="soon") == [u["cr"]]
    assert uids(status="failed") == [u["mr"]]  # the analysis' status
    assert uids(status="received") == [u["mr"], u["cr"], u["sc"], u["ct"]]  # the studies' status
    assert uids(q="lestrade") == [u["sc"]]  # patient name, any case
    assert uids(q="5MR2") == [u["mr"]]  # patient ID
    assert uids(q="thorax") == [u["cr"]]  # study description
    assert uids(q="100%") == []  # LIKE wildcards are plain characters
    assert uids(q="CompressedSamples", priority="urgent") == [u["mr"]]
    everything = uids()
    pages = [uids(limit=1, offset=i) for i in range(5)]
    assert [p[0] for p in pages[:4]] == everything and pages[4] == []
    page = c.get("/api/worklist", params={"limit": 2, "offset": 1}).json()
    assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (4, 2, 1, 2)


def test_worklist_rejects_bad_filters(api: Api) -> None:
    c = api.client
    assert "priority 'asap' is unknown" in error_of(c.get("/api/worklist", params={"priority": "asap"}), 400)
    assert "status 'lost' is unknown" in error_of(c.get("/api/worklist", params={"status": "lost"}), 400)
    assert error_of(c.get("/api/worklist", params={"limit": 0}), 400).startswith("limit:")
    assert error_of(c.get("/api/worklist", params={"limit": 100000}), 400).startswith("limit:")
    assert error_of(c.get("/api/worklist", params={"offset": "x"}), 400).startswith("offset:")


def test_study_detail(api: Api) -> None:
    uid = api.uids["cr"]
    aid = add_analysis(api.server, uid, "soon", key_finding="F1: pneumonia suspected")
    api.server.store.log_event("dimse:MODALITY", "received", uid, {"instances": 1})
    r = api.client.get(f"/api/studies/{uid}")
    assert r.status_code == 200
    body = r.json()
    assert body["study"]["study_uid"] == uid
    assert body["study"]["patient_id"] == "9RG1"
    assert body["study"]["status"] == "received"
    assert [(s["modality"], s["instances"], s["derived"]) for s in body["series"]] == [("CR", 1, False)]
    assert [(a["id"], a["priority"], a["key_finding"]) for a in body["analyses"]] == [
        (aid, "soon", "F1: pneumonia suspected")]
    assert [(e["actor"], e["action"], e["detail"]) for e in body["events"]] == [
        ("dimse:MODALITY", "received", {"instances": 1})]


@pytest.mark.parametrize("path", ["abc", "1.2.x", "1..2", ".1.2", "1" * 65, "1.2.3-4", "1.2.3 "])
def test_bad_uid_is_400(api: Api, path: str) -> None:
    for suffix in ("", "/report", "/report.html", "/sr"):
        assert "is not a DICOM UID" in error_of(api.client.get(f"/api/studies/{path}{suffix}"), 400)
    assert "is not a DICOM UID" in error_of(api.client.post(f"/api/studies/{path}/analyze"), 400)
    assert "is not a DICOM UID" in error_of(api.client.get("/api/events", params={"study": path}), 400)


def test_unknown_study_is_404(api: Api) -> None:
    for suffix in ("", "/report", "/report.pdf", "/seg", "/fhir"):
        assert "is not in the store" in error_of(api.client.get(f"/api/studies/1.2.3.4{suffix}"), 404)
    assert "is not in the store" in error_of(api.client.post("/api/studies/1.2.3.4/analyze"), 404)


def test_report_of_a_study_without_analysis_is_404(api: Api) -> None:
    uid = api.uids["ct"]
    for name in ("report", "report.html", "report.pdf", "sr", "seg", "fhir"):
        text = error_of(api.client.get(f"/api/studies/{uid}/{name}"), 404)
        assert "has no finished analysis yet (study status: received)" in text


def test_analyze_when_analysis_is_off_is_409(api: Api) -> None:
    text = error_of(api.client.post(f"/api/studies/{api.uids['cr']}/analyze"), 409)
    assert "automatic analysis is off" in text


def test_events_filters_and_follow(api: Api) -> None:
    store, c = api.server.store, api.client
    cr, mr = api.uids["cr"], api.uids["mr"]
    store.log_event("system", "one", cr, {"n": 1})
    store.log_event("system", "two", mr, {"n": 2})
    store.log_event("api", "three", cr, {"n": 3})
    store.log_event("system", "four", None, {"n": 4})
    everything = c.get("/api/events").json()
    assert [e["action"] for e in everything["items"]][-4:] == ["one", "two", "three", "four"]
    only_cr = c.get("/api/events", params={"study": cr}).json()["items"]
    assert [(e["action"], e["actor"], e["detail"]) for e in only_cr] == [
        ("one", "system", {"n": 1}), ("three", "api", {"n": 3})]
    latest = c.get("/api/events", params={"limit": 2}).json()
    assert [e["action"] for e in latest["items"]] == ["three", "four"]
    first_id = everything["items"][-4]["id"]
    after = c.get("/api/events", params={"after": first_id}).json()
    assert [e["action"] for e in after["items"]] == ["two", "three", "four"]
    assert after["last_id"] == everything["items"][-1]["id"]
    assert c.get("/api/events", params={"action": "two"}).json()["items"][0]["study_uid"] == mr
    assert error_of(c.get("/api/events", params={"limit": 0}), 400).startswith("limit:")


def test_unknown_api_path_is_one_line_404(api: Api) -> None:
    assert error_of(api.client.get("/api/nothing-here"), 404) == "Not Found"
