"""The automatic analysis of a running medimg server, on real data against real peers.

* the chest CT study (lung-pet-ct-dx-A0001, a large left upper lobe mass) sent with dcmtk's storescu
  to a server with a short quiet period: one urgent worklist entry, a SEG and an SR series stored back
  in the same study, both sent byte-identical to a dcmtk storescp, one webhook POST, the trail of
  events, the report files over the REST API, and DIMSE/HTTP answering while the worker runs;
* studies no protocol fits are refused once (never retried); a study whose stored file is lost fails
  after max_attempts tries; a killed worker process is replaced and the analysis tried again; a
  stop during an analysis queues it again; a study left "received" is picked up on start;
* the webhook notifier's bounded retries against a real HTTP listener.

Conditions are awaited with :func:`wait_for` (generous deadlines); no test asserts a duration.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pydicom
import pytest
from peers import (
    StoreSCP,
    dataset_bytes,
    dcmtk,
    free_port,
    start_medimg,
    wait_for,
)

from medimg.server import Peer
from medimg.server import worklist as wl
from medimg.server.notify import WebhookNotifier
from medimg.store import Store

# one worker runs the whole module: its module-scoped server (and analysis) is built once
pytestmark = pytest.mark.xdist_group("test_analysis")

T = TypeVar("T")
TERMINAL = ("ready", "failed", "skipped")


# ---------------------------------------------------------------------------------------- helpers
def put(server: Any, path: Path, source: str = "test") -> Any:
    """Store one file as the DICOM node would and tell the server (no network)."""
    result = server.store.put_path(path, source=source)
    server.instance_stored(result, source)
    return result


def analyses(server: Any, study_uid: str) -> list[dict[str, Any]]:
    detail = wl.study_detail(server.store, study_uid)
    return detail["analyses"] if detail else []


def actions(server: Any, study_uid: str) -> list[str]:
    return [e["action"] for e in server.store.events(study_uid)]


def finished(server: Any, study_uid: str) -> bool:
    return server.store.study_status(study_uid) in TERMINAL


def http(server: Any) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.config.http_port}", timeout=60)


class Listener:
    """A real HTTP server on a free loopback port recording the JSON bodies POSTed to it; it answers
    each request with the next of ``statuses`` (the last one repeated)."""

    def __init__(self, statuses: tuple[int, ...] = (204,)) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[dict[str, Any]] = []
        self.answered: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append(json.loads(body))
                status = statuses[min(len(outer.answered), len(statuses) - 1)]
                outer.answered.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def sr_numbers(ds: pydicom.Dataset) -> dict[str, list[float]]:
    """Every NUM content item of an SR by concept name."""
    out: dict[str, list[float]] = {}

    def walk(items: Any) -> None:
        for item in items:
            if item.ValueType == "NUM" and "MeasuredValueSequence" in item:
                name = item.ConceptNameCodeSequence[0].CodeMeaning
                out.setdefault(name, []).append(float(item.MeasuredValueSequence[0].NumericValue))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.ContentSequence)
    return out


# ---------------------------------------------------------------------------------------- the CT study
@dataclass
class CtRun:
    server: Any
    client: httpx.Client
    study_uid: str
    dest: StoreSCP
    hook: Listener
    echo_rc: int
    health: httpx.Response
    still_running: bool


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory: pytest.TempPathFactory, ct_files: list[Path]) -> Iterator[CtRun]:
    """The CT study sent with storescu to a server that analyses it, sends the results to a storescp
    and posts urgent findings to a listener; DIMSE and HTTP are tried while the worker runs."""
    tmp = tmp_path_factory.mktemp("analysis-ct")
    dest = StoreSCP(tmp / "dest")
    hook = Listener()
    server = start_medimg(tmp / "store", analysis=True, quiet_seconds=3.0, retry_seconds=0.5,
                          destination="DEST", peers={"DEST": Peer(dest.aet, "127.0.0.1", dest.port)},
                          webhook=hook.url)
    client = http(server)
    try:
        aet, port = server.config.aet, str(server.node.port)
        sent = dcmtk("storescu", "-aec", aet, "127.0.0.1", port, *map(str, ct_files))
        assert sent.returncode == 0, sent.stderr
        uid = str(pydicom.dcmread(ct_files[0], stop_before_pixels=True).StudyInstanceUID)

        def running() -> bool:
            found = analyses(server, uid)
            return bool(found) and found[0]["status"] == "running"

        wait_for(running, 120, "the analysis to start")
        echo = dcmtk("echoscu", "-aec", aet, "127.0.0.1", port, timeout=60)
        health = client.get("/api/health")
        still_running = running()
        wait_for(lambda: finished(server, uid), 600, "the analysis to finish")
        yield CtRun(server, client, uid, dest, hook, echo.returncode, health, still_running)
    finally:
        client.close()
        server.stop()
        dest.stop()
        hook.stop()


@pytest.mark.slow
@pytest.mark.peer
def test_server_answers_while_the_worker_runs(ct_run: CtRun) -> None:
    assert ct_run.still_running, "the checks below must have run during the analysis"
    assert ct_run.echo_rc == 0
    assert ct_run.health.status_code == 200
    body = ct_run.health.json()
    assert body["status"] == "ok"
    assert len(body["analysis"]["running"]) == 1


@pytest.mark.slow
@pytest.mark.peer
def test_ct_worklist_entry(ct_run: CtRun) -> None:
    r = ct_run.client.get("/api/worklist")
    assert r.status_code == 200
    page = r.json()
    assert page["total"] == 1
    entry = page["items"][0]
    assert entry["study_uid"] == ct_run.study_uid
    assert entry["status"] == "ready"
    assert entry["analysis_status"] == "done"
    assert entry["attempts"] == 1
    assert entry["protocol"] == "chest_ct"
    assert entry["priority"] == "urgent"
    assert entry["priority_rank"] == 0
    assert entry["quality"] == "pass"
    assert entry["modalities"] == ["CT"]  # the derived SR/SEG series are not acquisitions
    assert entry["instances"] == 128
    assert entry["key_finding"].startswith("F1: solid mass, 81.0 mm long axis, left upper lung")
    assert entry["error"] is None
    assert ct_run.client.get("/api/worklist", params={"priority": "urgent"}).json()["total"] == 1
    assert ct_run.client.get("/api/worklist", params={"priority": "routine"}).json()["total"] == 0


@pytest.mark.slow
@pytest.mark.peer
def test_ct_results_are_new_series_of_the_study(ct_run: CtRun) -> None:
    store = ct_run.server.store
    stored = store.instances(study_uid=ct_run.study_uid)
    assert len(stored) == 130
    detail = ct_run.client.get(f"/api/studies/{ct_run.study_uid}").json()
    series = {(s["modality"], s["derived"]): s["instances"] for s in detail["series"]}
    assert series == {("CT", False): 64, ("SEG", True): 1, ("SR", True): 1}
    assert [s["instances"] for s in detail["series"] if s["modality"] == "CT"] == [64, 64]
    report = ct_run.client.get(f"/api/studies/{ct_run.study_uid}/report").json()
    long_axis = next(m["value"] for m in report["findings"][0]["measurements"]
                     if m["name"] == "long_axis_diameter")
    assert long_axis == pytest.approx(81.0)
    by_modality = {}
    for inst in stored:
        ds = pydicom.dcmread(inst.path, stop_before_pixels=True)
        by_modality.setdefault(ds.Modality, []).append(ds)
    (sr,), (seg,) = by_modality["SR"], by_modality["SEG"]
    for ds in (sr, seg):
        assert ds.StudyInstanceUID == ct_run.study_uid
        assert ds.PatientID == "Lung_Dx-A0001"
    numbers = sr_numbers(pydicom.dcmread(next(i.path for i in stored if i.sop_uid == sr.SOPInstanceUID)))
    assert numbers["Long axis"] == [pytest.approx(long_axis)]


@pytest.mark.slow
@pytest.mark.peer
def test_ct_results_arrive_at_the_destination_unchanged(ct_run: CtRun) -> None:
    store = ct_run.server.store

    def outcome() -> list[dict[str, Any]]:
        return [e for e in store.events(ct_run.study_uid) if e["action"] in ("results_sent", "results_send_failed")]

    first = wait_for(outcome, 120, "the results to be sent")[0]
    assert first["action"] == "results_sent", first["detail"]
    files = wait_for(lambda: len(ct_run.dest.files()) == 2 and ct_run.dest.files(), 60,
                     "two files at the destination")
    derived = {e["detail"]["sop_instance_uid"] for e in store.events(ct_run.study_uid)
               if e["action"] == "result_stored"}
    for f in files:
        received = f.read_bytes()
        sop_uid = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        assert sop_uid in derived
        stored = store.instance(sop_uid)
        assert stored is not None
        assert dataset_bytes(received) == dataset_bytes(stored.path.read_bytes())
    sent = wait_for(lambda: [e for e in store.events(ct_run.study_uid) if e["action"] == "results_sent"], 60,
                    "the results_sent event")
    assert len(sent) == 1
    assert sent[0]["detail"]["peer"] == "DEST"
    assert sorted(r["status"] for r in sent[0]["detail"]["results"]) == ["0x0000", "0x0000"]
    assert {r["sop_instance_uid"] for r in sent[0]["detail"]["results"]} == derived


@pytest.mark.slow
@pytest.mark.peer
def test_ct_urgent_finding_posts_one_webhook(ct_run: CtRun) -> None:
    store = ct_run.server.store
    wait_for(lambda: "webhook_sent" in actions(ct_run.server, ct_run.study_uid), 60, "the webhook_sent event")
    assert len(ct_run.hook.received) == 1
    msg = ct_run.hook.received[0]
    assert msg["event"] == "urgent_finding"
    assert msg["study_uid"] == ct_run.study_uid
    assert msg["patient_id"] == "Lung_Dx-A0001"
    assert msg["priority"] == "urgent"
    assert msg["protocol"] == "chest_ct"
    assert "81.0 mm" in msg["key_finding"]
    assert msg["report"] == f"/api/studies/{ct_run.study_uid}/report.html"
    assert [e["detail"]["attempt"] for e in store.events(ct_run.study_uid) if e["action"] == "webhook_sent"] == [1]


@pytest.mark.slow
@pytest.mark.peer
def test_ct_every_step_is_an_event(ct_run: CtRun) -> None:
    events = ct_run.client.get("/api/events", params={"study": ct_run.study_uid, "limit": 1000}).json()["items"]
    mine = [e for e in events if e["actor"] == "system"]
    steps = [e["action"] for e in mine]
    expected = ["study_complete", "analysis_queued", "analysis_started", "result_stored", "result_stored",
                "analysis_done"]
    assert [a for a in steps if a in expected] == expected
    done = next(e for e in mine if e["action"] == "analysis_done")
    assert done["detail"]["priority"] == "urgent"
    assert sorted(done["detail"]["outputs"]) == ["fhir.json", "report.html", "report.json", "report.pdf",
                                                 "seg.dcm", "sr.dcm"]
    assert all(e["study_uid"] == ct_run.study_uid for e in events)
    assert "analysis_error" not in steps


@pytest.mark.slow
@pytest.mark.peer
def test_ct_report_files_over_the_api(ct_run: CtRun) -> None:
    c, uid = ct_run.client, ct_run.study_uid
    folder = ct_run.server.store.root / "reports" / str(analyses(ct_run.server, uid)[0]["id"])
    r = c.get(f"/api/studies/{uid}/report")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json()["status"] == "complete" and r.json()["study"]["study_instance_uid"] == uid
    r = c.get(f"/api/studies/{uid}/report.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    r = c.get(f"/api/studies/{uid}/report.pdf")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    for name, file in (("sr", "sr.dcm"), ("seg", "seg.dcm")):
        r = c.get(f"/api/studies/{uid}/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
        assert r.content == (folder / file).read_bytes()
    r = c.get(f"/api/studies/{uid}/fhir")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    assert r.json()["resourceType"] == "Bundle"


# ---------------------------------------------------------------------------------------- refusals, errors
def test_unanalysable_studies_are_refused_not_retried(medimg_server: Callable[..., Any],
                                                        pydicom_data_dir: Path) -> None:
    server = medimg_server(analysis=True, quiet_seconds=0.5, retry_seconds=0.1)
    # a secondary capture no protocol fits, and a lone SEG instance (no image to analyse)
    uids = [put(server, pydicom_data_dir / name).study_uid for name in ("SC_rgb.dcm", "liver.dcm")]
    for uid in uids:
        wait_for(lambda uid=uid: finished(server, uid), 300, f"the analysis of {uid}")
        assert server.store.study_status(uid) == "skipped"
        (a,) = analyses(server, uid)
        assert a["status"] == "refused"
        assert a["attempts"] == 1
        assert a["error"] is None
        assert a["priority"] == "soon"  # it must be read without help
        assert a["key_finding"].startswith("not analysed: no usable series")
        steps = actions(server, uid)
        assert steps.count("analysis_refused") == 1
        assert "analysis_error" not in steps and "analysis_failed" not in steps
    with http(server) as c:
        page = c.get("/api/worklist", params={"status": "refused"}).json()
        assert page["total"] == 2
        uid = uids[0]
        report = c.get(f"/api/studies/{uid}/report")
        assert report.status_code == 200 and report.json()["status"] == "refused"
        missing = c.get(f"/api/studies/{uid}/sr")
        assert missing.status_code == 404 and "has no sr.dcm" in missing.json()["error"]
        # asked again: queued once, a second request while it is pending is refused
        first = c.post(f"/api/studies/{uid}/analyze")
        second = c.post(f"/api/studies/{uid}/analyze")
        assert first.status_code == 202
        assert second.status_code == 409 and second.json()["analysis_id"] == first.json()["analysis_id"]
        wait_for(lambda: [a["status"] for a in analyses(server, uid)] == ["refused", "refused"], 300,
                 "the second analysis")
        assert server.store.study_status(uid) == "skipped"
    assert not server.store.instances(study_uid=uid)[1:]  # nothing was stored back


def test_failing_analysis_is_retried_then_failed(medimg_server: Callable[..., Any],
                                                 pydicom_data_dir: Path) -> None:
    server = medimg_server(analysis=True, quiet_seconds=0.5, max_attempts=3, retry_seconds=0.1)
    result = server.store.put_path(pydicom_data_dir / "RG1_UNCR.dcm", source="test")
    assert result.path is not None
    result.path.unlink()  # the stored file is lost: every attempt fails the same way
    server.instance_stored(result, "test")
    uid = result.study_uid
    wait_for(lambda: finished(server, uid), 300, "the analysis to give up")
    assert server.store.study_status(uid) == "failed"
    (a,) = analyses(server, uid)
    assert a["status"] == "failed"
    assert a["attempts"] == 3
    assert "a stored file of this study is missing" in a["error"]
    assert "\n" not in a["error"]
    steps = actions(server, uid)
    assert steps.count("analysis_started") == 3
    assert steps.count("analysis_error") == 2
    assert steps.count("analysis_failed") == 1
    delays = [e["detail"]["retry_in_seconds"] for e in server.store.events(uid) if e["action"] == "analysis_error"]
    assert delays == [0.1, 0.2]  # doubling back-off
    with http(server) as c:
        entry = c.get("/api/worklist", params={"status": "failed"}).json()["items"][0]
        assert entry["study_uid"] == uid and entry["error"] == a["error"]
        assert c.get(f"/api/studies/{uid}/report").status_code == 404


@pytest.mark.slow
def test_killed_worker_is_replaced_and_the_analysis_retried(medimg_server: Callable[..., Any],
                                                            pydicom_data_dir: Path) -> None:
    server = medimg_server(analysis=True, quiet_seconds=0.5, retry_seconds=0.1)
    uid = put(server, pydicom_data_dir / "RG1_UNCR.dcm").study_uid
    pids = wait_for(server.analysis.worker_pids, 120, "a worker process")
    os.kill(pids[0], signal.SIGKILL)
    wait_for(lambda: finished(server, uid), 300, "the analysis after the crash")
    (a,) = analyses(server, uid)
    assert a["status"] == "done"
    assert a["attempts"] == 2
    assert a["protocol"] == "chest_xray"
    assert "pneumonia" in a["key_finding"]
    errors = [e["detail"]["error"] for e in server.store.events(uid) if e["action"] == "analysis_error"]
    assert len(errors) == 1 and "ended abruptly" in errors[0]
    assert pids[0] not in server.analysis.worker_pids()
    with http(server) as c:
        assert c.get("/api/health").json()["status"] == "ok"
    echo = dcmtk("echoscu", "-aec", server.config.aet, "127.0.0.1", str(server.node.port), timeout=60)
    assert echo.returncode == 0


@pytest.mark.slow
def test_an_analysis_past_its_time_limit_is_stopped_and_the_server_keeps_serving(
        medimg_server: Callable[..., Any], pydicom_data_dir: Path) -> None:
    # 3 s: a spawned worker does not even import the pipeline and torch in that time
    server = medimg_server(analysis=True, quiet_seconds=0.5, retry_seconds=0.1, analysis_timeout=3)
    uid = put(server, pydicom_data_dir / "RG1_UNCR.dcm").study_uid
    pids = wait_for(server.analysis.worker_pids, 120, "a worker process")
    wait_for(lambda: finished(server, uid), 300, "the analysis to be stopped")
    (a,) = analyses(server, uid)
    assert (a["status"], a["attempts"]) == ("failed", 1)  # final: a hung pipeline would hang again
    assert a["error"] == ("the analysis ran longer than its time limit (3 s, analysis_timeout): its worker "
                          "was stopped; the server kept running")
    assert server.store.study_status(uid) == "failed"
    assert pids[0] not in server.analysis.worker_pids()
    assert not list((server.store.root / "work").iterdir())  # no scratch or pid file left
    with http(server) as c:
        assert c.get("/api/health").json()["status"] == "ok"
    # the replaced pool analyses the study when asked again without a limit
    server.analysis.timeout = 0
    server.analysis.request(uid, "test", "no time limit")
    wait_for(lambda: finished(server, uid) and len(analyses(server, uid)) == 2, 300, "the analysis again")
    assert [x["status"] for x in analyses(server, uid)] == ["done", "failed"]


def test_a_bad_time_limit_is_refused(tmp_path: Path) -> None:
    from medimg.errors import InputError
    from medimg.server.config import load_config

    for bad in ("-1", '"soon"', "true"):
        cfg = tmp_path / "medimg.toml"
        cfg.write_text(f"analysis_timeout = {bad}\n")
        with pytest.raises(InputError, match=r"medimg.toml: analysis_timeout .* is not a number of seconds >= 0"):
            load_config(cfg, store=tmp_path / "store")


@pytest.mark.slow
def test_stop_during_analysis_queues_it_again(medimg_server: Callable[..., Any], pydicom_data_dir: Path,
                                              tmp_path: Path) -> None:
    store = tmp_path / "requeue"
    first = start_medimg(store, analysis=True, quiet_seconds=0.5)
    try:
        uid = put(first, pydicom_data_dir / "RG1_UNCR.dcm").study_uid
        wait_for(first.analysis.worker_pids, 120, "a worker process")
    finally:
        first.stop()
    with Store(store) as s:
        detail = wl.study_detail(s, uid)
    assert detail is not None
    (a,) = detail["analyses"]
    assert (a["status"], a["attempts"]) == ("queued", 0)
    assert "analysis_interrupted" in [e["action"] for e in detail["events"]]
    second = medimg_server(store=store, analysis=True, quiet_seconds=0.5)
    wait_for(lambda: finished(second, uid), 300, "the analysis after the restart")
    (a,) = analyses(second, uid)
    assert (a["status"], a["attempts"]) == ("done", 1)


def test_received_study_is_picked_up_on_start(medimg_server: Callable[..., Any], pydicom_data_dir: Path,
                                              tmp_path: Path) -> None:
    store = tmp_path / "pickup"
    first = start_medimg(store)  # analysis off: the study stays "received"
    try:
        uid = put(first, pydicom_data_dir / "SC_rgb.dcm").study_uid
        assert first.store.study_status(uid) == "received"
    finally:
        first.stop()
    second = medimg_server(store=store, analysis=True, quiet_seconds=0.5)
    wait_for(lambda: finished(second, uid), 300, "the analysis of the study left received")
    assert second.store.study_status(uid) == "skipped"
    assert [a["status"] for a in analyses(second, uid)] == ["refused"]


# ---------------------------------------------------------------------------------------- priors
NY_SBU = ("registration", "ny-sbu", "A002304")  # one patient: a CT slice on 1900-12-31 and on 1901-01-12


def _detail_of(server: Any, uid: str, action: str) -> dict[str, Any]:
    return next(e["detail"] for e in server.store.events(uid) if e["action"] == action)


def test_earlier_study_of_the_patient_is_given_as_prior(medimg_server: Callable[..., Any],
                                                        data_dir: Path) -> None:
    folder = data_dir.joinpath(*NY_SBU)
    server = medimg_server(analysis=True, quiet_seconds=0.5)
    prior = put(server, folder / "19001231-076.dcm").study_uid
    wait_for(lambda: finished(server, prior), 300, "the analysis of the earlier study")
    current = put(server, folder / "19010112-135.dcm").study_uid
    wait_for(lambda: finished(server, current), 300, "the analysis of the later study")
    # single slices: both refused by chest CT routing, but the later one was given the earlier one
    assert _detail_of(server, prior, "analysis_refused")["priors_given"] == 0
    assert _detail_of(server, current, "analysis_refused")["priors_given"] == 1


@pytest.mark.peer
def test_priors_are_fetched_from_priors_from(medimg_server: Callable[..., Any], orthanc: Any,
                                             data_dir: Path) -> None:
    folder = data_dir.joinpath(*NY_SBU)
    prior_file = folder / "19001231-076.dcm"
    prior_uid = str(pydicom.dcmread(prior_file, stop_before_pixels=True).StudyInstanceUID)
    orthanc.upload([prior_file])
    server = medimg_server(analysis=True, quiet_seconds=0.5, priors_from="PACS",
                           peers={"PACS": Peer(orthanc.aet, "127.0.0.1", orthanc.dicom_port)})
    orthanc.add_modality("MEDIMG", server.config.aet, server.node.port)
    current = put(server, folder / "19010112-135.dcm").study_uid
    wait_for(lambda: finished(server, current), 300, "the analysis")
    assert _detail_of(server, current, "priors_fetched") == {"peer": "PACS", "studies": [prior_uid]}
    assert _detail_of(server, current, "analysis_refused")["priors_given"] == 1
    stored = server.store.instances(study_uid=prior_uid)
    assert len(stored) == 1
    assert stored[0].sop_uid == str(pydicom.dcmread(prior_file, stop_before_pixels=True).SOPInstanceUID)
    # a study fetched as a prior is not analysed itself
    assert server.store.study_status(prior_uid) == "received" and not analyses(server, prior_uid)


# ---------------------------------------------------------------------------------------- webhook
def _webhook_events(store: Store) -> list[dict[str, Any]]:
    return [e for e in store.events() if e["action"].startswith("webhook_")]


def test_webhook_retries_until_accepted(tmp_path: Path) -> None:
    hook = Listener(statuses=(500, 204))
    with Store(tmp_path / "store") as store:
        notifier = WebhookNotifier(hook.url, store.log_event, attempts=3, timeout=10, backoff=0.05)
        notifier.start()
        try:
            notifier.post({"event": "urgent_finding", "study_uid": "1.2.3"})
            wait_for(lambda: any(e["action"] == "webhook_sent" for e in _webhook_events(store)), 60,
                     "the webhook to be accepted")
        finally:
            notifier.stop()
            hook.stop()
        events = _webhook_events(store)
    assert [(e["action"], e["detail"]["attempt"]) for e in events] == [("webhook_failed", 1), ("webhook_sent", 2)]
    assert events[0]["detail"]["error"] == "HTTP 500" and events[0]["detail"]["final"] is False
    assert hook.received == [{"event": "urgent_finding", "study_uid": "1.2.3"}] * 2


def test_webhook_gives_up_after_bounded_tries(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    with Store(tmp_path / "store") as store:
        notifier = WebhookNotifier(url, store.log_event, attempts=3, timeout=5, backoff=0.05)
        notifier.start()
        try:
            notifier.post({"event": "urgent_finding"})
            wait_for(lambda: len(_webhook_events(store)) == 3, 60, "three failed tries")
        finally:
            notifier.stop()
        events = _webhook_events(store)
    assert [e["action"] for e in events] == ["webhook_failed"] * 3
    assert [e["detail"]["final"] for e in events] == [False, False, True]
    assert all(e["detail"]["error"].startswith("ConnectError") for e in events)


def test_webhook_url_must_be_http() -> None:
    from medimg.errors import InputError

    with pytest.raises(InputError, match="is not an http"):
        WebhookNotifier("ftp://127.0.0.1/hook", lambda *a: None)
