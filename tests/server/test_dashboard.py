"""The quality dashboard (``GET /api/dashboard``, medimg.server.dashboard).

* A real server analyses the real chest CT study in its worker: the input features recorded for the
  analysis are those of the chest CT reference's series-2 (the same code measured both), the AI
  score of its finding is recorded, and the dashboard over HTTP shows it (one week's histogram, a
  pending finding, then an accepted one once a review record says so; drift undecided on one input).
* Synthetic analyses, feature rows and review records in a real store, at a fixed time: exact
  counts per status, shares of review outcomes, histogram counts per ISO week, the drift window
  (days and limit) and the alert flags; scores read back from report.json for an analysis made
  before features were recorded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from peers import start_medimg, wait_for
from sqlalchemy import insert, select

from medimg.monitoring.reference import load_reference
from medimg.server.config import ServerConfig
from medimg.server.dashboard import dashboard, iso_week, record_inputs
from medimg.store import Store
from medimg.store import schema as t

# one worker runs the whole module: its module-scoped server (and analysis) is built once
pytestmark = pytest.mark.xdist_group("test_dashboard")


def add_review(store: Store, analysis_id: int, decisions: dict[str, str], at: float) -> None:
    """A review record as server/review.py keeps it: one row per decided finding."""
    reviews, review_findings = t.metadata.tables["reviews"], t.metadata.tables["review_findings"]
    with store.engine.begin() as conn:
        key = conn.execute(insert(reviews).values(analysis_pk=analysis_id, state="draft", created=at)).inserted_primary_key
        assert key is not None
        for fid, status in decisions.items():
            conn.execute(insert(review_findings).values(review_pk=key[0], finding_id=fid, status=status, by="rad1",
                                                        at=at, comment="", data="{}"))


# ---------------------------------------------------------------------------------------- real analysis
@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Any]:
    """A server that has analysed the real chest CT study (two series; series-2 is chosen)."""
    extra = {"auth": False} if "auth" in {f.name for f in dataclasses.fields(ServerConfig)} else {}
    server = start_medimg(tmp_path_factory.mktemp("dash") / "store", analysis=True, quiet_seconds=0.5, **extra)
    try:
        study_uid = ""
        for p in sorted((data_dir / "ct" / "lung-pet-ct-dx-A0001").glob("series-*/*.dcm")):
            res = server.store.put_path(p, source="test")
            server.instance_stored(res, "test")
            study_uid = res.study_uid
        wait_for(lambda: server.store.study_status(study_uid) in ("ready", "failed", "skipped"),
                 what="the analysis of the CT study")
        assert server.store.study_status(study_uid) == "ready"
        yield server
    finally:
        server.stop()


def _inputs(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(t.analysis_inputs)).all())


def test_the_worker_records_input_features_and_scores(analysed: Any) -> None:
    rows = _inputs(analysed.store)
    assert len(rows) == 1
    row = rows[0]
    assert row.protocol == "chest_ct" and row.source == "analysis"
    features = json.loads(row.features)
    assert "error" not in features
    assert features["scanner"] == "Philips Brilliance16" and features["kernel"] == "L"
    assert features["slice_thickness"] == 5.0 and features["kvp"] == 120.0 and features["pixel_spacing"] == 0.841797
    ref = load_reference("chest_ct")
    assert ref is not None
    # the series-2 (kernel L) row of the calibration reference, measured by the same code
    for name in ("px_mean", "px_std", "px_p05", "px_p50", "px_p95"):
        assert features[name] in ref["features"][name]["values"], name
    assert features["px_p05"] == -934.0 and features["px_p50"] == -43.0
    scores = json.loads(row.scores)
    assert scores == [{"finding": "F1", "kind": "mass", "probability": 0.594,
                       "algorithm": "medimg.detect.lung_nodules.detect_lung_lesions", "threshold": None}]


def test_dashboard_over_http(analysed: Any) -> None:
    port = analysed.config.http_port
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        r = client.get("/api/dashboard")
        assert r.status_code == 200, r.text
        body = r.json()
        assert [p["protocol"] for p in body["protocols"]] == ["chest_ct", "chest_xray", "breast_us", "retina"]
        assert body["analyses"]["by_status"] == {"queued": 0, "running": 0, "done": 1, "refused": 0, "failed": 0}
        assert body["alert"] is False
        ct = body["protocols"][0]
        assert ct["model"] == "medimg.detect.lung_nodules"
        assert ct["algorithms"] == ["medimg.detect.lung_nodules.detect_lung_lesions"]
        assert ct["findings"]["counts"] == {"accepted": 0, "rejected": 0, "edited": 0, "added": 0, "pending": 1}
        assert ct["findings"]["shares"]["pending"] == 1.0
        weeks = ct["scores"]["weeks"]
        assert len(weeks) == 12 and weeks[-1]["week"] == iso_week(time.time())
        assert sum(w["n"] for w in weeks) == 1
        assert sum((w["counts"] for w in weeks), []).count(1) == 1
        assert [w for w in weeks if w["n"]][0]["counts"] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]  # 0.594
        drift = ct["drift"]
        assert drift["window"]["n"] == 1 and drift["alert"] is False
        statuses = {f["feature"]: f["status"] for f in drift["features"]}
        assert statuses == dict.fromkeys(["scanner", "kernel", "slice_thickness", "kvp", "pixel_spacing", "px_mean",
                                          "px_std", "px_p05", "px_p50", "px_p95"], "insufficient")
        assert {f["feature"]: f["statistic"] for f in drift["features"]}["scanner"] == 0.0
        assert body["protocols"][3]["drift"]["window"]["n"] == 0

        # the radiologist accepts the finding (a review record, as server/review.py writes it)
        with analysed.store.engine.connect() as conn:
            aid = conn.execute(select(t.analyses.c.id)).scalar_one()
        add_review(analysed.store, aid, {"F1": "accepted"}, time.time())
        ct = client.get("/api/dashboard").json()["protocols"][0]
        assert ct["findings"]["counts"]["accepted"] == 1 and ct["findings"]["shares"]["accepted"] == 1.0

        bad = client.get("/api/dashboard", params={"weeks": 0})
        assert bad.status_code == 400 and "weeks" in bad.json()["error"]


def test_dashboard_needs_a_session(tmp_path: Path) -> None:
    """With sessions on (the default), /api/dashboard is behind the session guard (server/auth.py)."""
    from medimg.server import auth

    server = start_medimg(tmp_path / "store", auth=True)
    try:
        base = f"http://127.0.0.1:{server.config.http_port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            r = client.get("/api/dashboard")
            assert r.status_code == 401 and "not signed in" in r.json()["error"]
            auth.create_user(server.store, "tech1", "correct horse", "technologist")
            assert client.post("/api/login", json={"username": "tech1", "password": "correct horse"}).status_code == 200
            r = client.get("/api/dashboard")
            assert r.status_code == 200 and r.json()["analyses"]["total"] == 0
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------- synthetic
NOW = dt.datetime(2025, 3, 12, 12, 0, tzinfo=dt.UTC).timestamp()  # a Wednesday, ISO week 2025-W11
DAY = 86400.0


class Rows:
    """Writes studies, analyses, features and reviews into a real store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.n = 0

    def study(self) -> int:
        self.n += 1
        with self.store.engine.begin() as conn:
            key = conn.execute(insert(t.studies).values(study_uid=f"1.2.3.{self.n}", first_received=NOW - 90 * DAY,
                                                        last_received=NOW - 90 * DAY, status="ready"))
        assert key.inserted_primary_key is not None
        return int(key.inserted_primary_key[0])

    def analysis(self, study: int, status: str, protocol: str, finished: float | None,
                 scores: list[dict[str, Any]] | None = None, features: dict[str, Any] | None = None,
                 record: bool = True) -> int:
        with self.store.engine.begin() as conn:
            created = (finished or NOW) - 60
            key = conn.execute(insert(t.analyses).values(
                study_pk=study, status=status, attempts=1, protocol=protocol, created=created, finished=finished,
                report_dir="", not_before=0.0)).inserted_primary_key
        assert key is not None
        aid = int(key[0])
        if record and status in ("done", "refused"):
            record_inputs(self.store.engine, aid, {"protocol": protocol, "inputs": features or {},
                                                   "scores": scores or []})
        return aid


def cxr_score(p: float, fid: str = "pneumonia-1") -> list[dict[str, Any]]:
    return [{"finding": fid, "kind": "pneumonia", "probability": p, "algorithm": "medimg.models.cxr-pneumonia",
             "threshold": 0.4766}]


def ct_features(scanner: str = "Philips Brilliance16", thickness: float = 5.0) -> dict[str, Any]:
    return {"scanner": scanner, "kernel": "L", "slice_thickness": thickness, "kvp": 120.0, "pixel_spacing": 0.8,
            "px_mean": -200.0, "px_std": 400.0, "px_p05": -910.0, "px_p50": -40.0, "px_p95": 210.0}


@pytest.fixture
def synthetic(tmp_path: Path) -> Iterator[tuple[Store, dict[str, int]]]:
    store = Store(tmp_path / "store")
    rows = Rows(store)
    ids: dict[str, int] = {}
    w11, w10, w09 = NOW - 1 * DAY, NOW - 8 * DAY, NOW - 15 * DAY  # Tue of W11, W10, W09
    # chest X-ray: five reviewed or pending AI findings and one added
    s = [rows.study() for _ in range(9)]
    ids["accepted"] = rows.analysis(s[0], "done", "chest_xray", w11, cxr_score(0.81))
    ids["rejected"] = rows.analysis(s[1], "done", "chest_xray", w11 + 60, cxr_score(0.12))
    ids["edited"] = rows.analysis(s[2], "done", "chest_xray", w10, cxr_score(0.55))
    ids["pending"] = rows.analysis(s[3], "done", "chest_xray", w10 + 60, cxr_score(0.95))
    ids["reviewed_older"] = rows.analysis(s[4], "done", "chest_xray", w09, cxr_score(0.30))
    ids["unreviewed_newer"] = rows.analysis(s[4], "done", "chest_xray", w10, cxr_score(0.60))
    rows.analysis(s[5], "refused", "chest_xray", w11)
    rows.analysis(s[6], "failed", "", w11)
    rows.analysis(s[7], "queued", "", None)
    rows.analysis(s[8], "done", "chest_xray", NOW - 40 * DAY, cxr_score(0.5))  # before the period
    add_review(store, ids["accepted"], {"pneumonia-1": "accepted"}, NOW)
    add_review(store, ids["rejected"], {"pneumonia-1": "rejected"}, NOW)
    add_review(store, ids["edited"], {"pneumonia-1": "edited"}, NOW)
    # the AI finding itself not decided yet; R2 was added, then withdrawn (not counted)
    add_review(store, ids["pending"], {"R1": "added", "R2": "withdrawn"}, NOW)
    add_review(store, ids["reviewed_older"], {"pneumonia-1": "accepted"}, NOW)
    # chest CT: 9 inputs like the calibration set, 3 from another scanner with 1 mm slices
    for i in range(12):
        other = i in (2, 5, 8)
        rows.analysis(rows.study(), "done", "chest_ct", NOW - (i + 1) * DAY,
                      [{"finding": "F1", "kind": "nodule", "probability": 0.594,
                        "algorithm": "medimg.detect.lung_nodules.detect_lung_lesions", "threshold": None}],
                      ct_features("SIEMENS SOMATOM Force", 1.0) if other else ct_features())
    # in the drift window (30 days) but before the period (4 weeks from Monday 2025-02-17)
    rows.analysis(rows.study(), "done", "chest_ct", NOW - 27 * DAY, [], ct_features())
    # a protocol without a reference
    rows.analysis(rows.study(), "done", "brain_mri", w11, [], {"scanner": "X"})
    yield store, ids
    store.close()


def test_counts_shares_and_histograms(synthetic: tuple[Store, dict[str, int]]) -> None:
    store, _ = synthetic
    d = dashboard(store, weeks=4, days=30, limit=200, now=NOW)
    assert d["period"] == {"weeks": 4, "from": "2025-02-17T00:00:00Z", "to": "2025-03-12T12:00:00Z"}
    # every analysis in the period, by status (the one of 40 days ago and the CT one of 27 are out)
    assert d["analyses"] == {"total": 22, "by_status": {"queued": 1, "running": 0, "done": 19, "refused": 1,
                                                        "failed": 1}}
    by = {p["protocol"]: p for p in d["protocols"]}
    assert list(by) == ["chest_ct", "chest_xray", "breast_us", "retina", "brain_mri"]
    cxr = by["chest_xray"]
    assert cxr["model"] == "cxr-pneumonia"
    assert cxr["analyses"] == {"total": 7, "by_status": {"queued": 0, "running": 0, "done": 6, "refused": 1,
                                                         "failed": 0}}
    f = cxr["findings"]
    assert f["counts"] == {"accepted": 2, "rejected": 1, "edited": 1, "added": 1, "pending": 1}
    assert (f["total"], f["ai"], f["added"], f["reviewed"]) == (6, 5, 1, 4)
    assert f["shares"] == {"accepted": 0.3333, "rejected": 0.1667, "edited": 0.1667, "added": 0.1667,
                           "pending": 0.1667}
    weeks = cxr["scores"]["weeks"]
    assert [w["week"] for w in weeks] == ["2025-W08", "2025-W09", "2025-W10", "2025-W11"]
    assert [w["start"] for w in weeks] == ["2025-02-17T00:00:00Z", "2025-02-24T00:00:00Z", "2025-03-03T00:00:00Z",
                                           "2025-03-10T00:00:00Z"]
    assert [w["n"] for w in weeks] == [0, 1, 2, 2]  # the study analysed twice counts once (its reviewed analysis)
    assert weeks[1]["counts"] == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert weeks[2]["counts"] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert weeks[3]["counts"] == [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    assert (weeks[3]["mean"], weeks[3]["median"], weeks[3]["at_or_above_operating_point"]) == (0.465, 0.465, 0.5)
    assert weeks[0] == {"week": "2025-W08", "start": "2025-02-17T00:00:00Z", "n": 0, "counts": [0] * 10,
                        "mean": None, "median": None, "at_or_above_operating_point": None}
    assert cxr["scores"]["n"] == 5
    ct = by["chest_ct"]
    assert ct["findings"]["counts"]["pending"] == 12 and ct["scores"]["n"] == 12
    assert sum(w["counts"][5] for w in ct["scores"]["weeks"]) == 12
    assert by["brain_mri"]["drift"]["reference"] is None and by["brain_mri"]["drift"]["alert"] is False


def test_drift_table_and_alerts(synthetic: tuple[Store, dict[str, int]]) -> None:
    store, _ = synthetic
    d = dashboard(store, weeks=4, days=30, now=NOW)
    assert d["alert"] is True
    ct = {p["protocol"]: p for p in d["protocols"]}["chest_ct"]["drift"]
    assert ct["reference"]["data"] == "ct/lung-pet-ct-dx-A0001" and ct["reference"]["n"] == 2
    assert ct["window"] == {"days": 30, "limit": 200, "n": 13, "from": "2025-02-13T12:00:00Z",
                            "to": "2025-03-11T12:00:00Z"}
    feats = {f["feature"]: f for f in ct["features"]}
    assert feats["scanner"]["alert"] and feats["scanner"]["statistic"] == pytest.approx(0.2308)
    assert feats["slice_thickness"]["alert"] and feats["slice_thickness"]["statistic"] == pytest.approx(0.2308)
    assert not feats["kernel"]["alert"] and feats["kernel"]["statistic"] == 0.0
    # every CT input has 0.8 mm pixels: inside 0.842 mm +- 10 %
    assert not feats["pixel_spacing"]["alert"] and feats["pixel_spacing"]["statistic"] == 0.0
    assert ct["alert"] is True
    assert ct["alerts"] == [feats["scanner"]["reason"], feats["slice_thickness"]["reason"]]
    assert "SIEMENS SOMATOM Force" in feats["scanner"]["reason"]
    # the chest X-ray rows carry no features (synthetic analyses without inputs): nothing to compare
    cxr = {p["protocol"]: p for p in d["protocols"]}["chest_xray"]["drift"]
    assert cxr["window"]["n"] == 0 and cxr["alert"] is False

    # a window of the latest 10: 3 of them from the other scanner
    d10 = dashboard(store, weeks=4, days=30, limit=10, now=NOW)
    ct10 = {p["protocol"]: p for p in d10["protocols"]}["chest_ct"]["drift"]
    assert ct10["window"]["n"] == 10 and ct10["window"]["from"] == "2025-03-02T12:00:00Z"
    assert {f["feature"]: f["statistic"] for f in ct10["features"]}["scanner"] == 0.3
    # a 7-day window: 7 inputs, too few to decide
    d7 = dashboard(store, weeks=4, days=7, now=NOW)
    ct7 = {p["protocol"]: p for p in d7["protocols"]}["chest_ct"]["drift"]
    assert ct7["window"]["n"] == 7 and ct7["alert"] is False
    assert {f["status"] for f in ct7["features"]} == {"insufficient"}


def test_scores_are_read_back_from_report_json(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    try:
        rows = Rows(store)
        aid = rows.analysis(rows.study(), "done", "chest_xray", NOW - DAY, record=False)
        folder = store.root / "reports" / str(aid)
        folder.mkdir(parents=True)
        report = {"findings": [
            {"id": "pneumonia-1", "kind": "pneumonia", "probability": 0.7, "status": "accepted",
             "provenance": {"algorithm": "medimg.models.cxr-pneumonia"},
             "measurements": [{"name": "operating_point", "value": 0.4766}]},
            {"id": "R1", "kind": "pneumonia", "probability": 1.0, "status": "added", "provenance": {}}]}
        (folder / "report.json").write_text(json.dumps(report))
        # a signed analysis keeps the AI's report in ai/ (server/review.py); that one is read
        (folder / "ai").mkdir()
        report["findings"][0]["probability"] = 0.75
        (folder / "ai" / "report.json").write_text(json.dumps(report))
        with store.engine.begin() as conn:
            conn.execute(t.analyses.update().values(report_dir=f"reports/{aid}"))
        d = dashboard(store, weeks=1, now=NOW)
        cxr = {p["protocol"]: p for p in d["protocols"]}["chest_xray"]
        assert cxr["findings"]["ai"] == 1 and cxr["scores"]["weeks"][0]["counts"][7] == 1
        with store.engine.connect() as conn:
            row = conn.execute(select(t.analysis_inputs)).one()
        assert row.source == "report" and json.loads(row.features) == {}
        assert json.loads(row.scores)[0]["threshold"] == 0.4766
        assert json.loads(row.scores)[0]["probability"] == 0.75
        # read once: the second call finds the row
        assert dashboard(store, weeks=1, now=NOW)["protocols"][1]["findings"]["ai"] == 1
    finally:
        store.close()


def test_record_inputs_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Store(tmp_path / "store")
    try:
        record_inputs(store.engine, 12345, {"inputs": {"scanner": "x"}})  # no such analysis: FK refused
        assert "input features not recorded" in caplog.text
        rows = Rows(store)
        aid = rows.analysis(rows.study(), "done", "chest_ct", NOW, record=False)
        record_inputs(store.engine, aid, {"protocol": "chest_ct", "inputs": {"kvp": 120.0}})
        record_inputs(store.engine, aid, {"protocol": "chest_ct", "inputs": {"kvp": 100.0}})  # run again: replaced
        with store.engine.connect() as conn:
            got = conn.execute(select(t.analysis_inputs.c.features)).scalars().all()
        assert got == ['{"kvp": 100.0}']
    finally:
        store.close()
