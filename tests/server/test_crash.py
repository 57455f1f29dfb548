"""``kill -9`` of ``medimg serve`` while instances arrive loses nothing that was acknowledged.

1,000 distinct real CT instances (the 128 CT files with new SOP and Series Instance UIDs, made once
per session) are sent by two pynetdicom SCUs, each recording which instances got a success status.
The server is killed with SIGKILL at random moments, at least 20 times; after each kill it is
started again and the senders resend what was not acknowledged.  Afterwards every acknowledged
instance is stored, byte for byte; nothing partial is left in ``tmp/``; every index row has its file and
every file its row (``medimg store verify`` is clean)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from peers import free_port, wait_port
from pydicom.uid import generate_uid

from medimg.store.part10 import split_part10

pytestmark = pytest.mark.slow

N_INSTANCES = 1000
MIN_KILLS = 20
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class Instance:
    path: Path
    sop_uid: str
    sha256: str  # of the data set bytes (after the file meta group): what the store keeps


@pytest.fixture(scope="session")
def thousand_instances(ct_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Instance]:
    """1,000 distinct instances: each CT file re-issued with new Series and SOP Instance UIDs (one
    new series per pass over the 128 files), written once per session with pydicom."""
    folder = tmp_path_factory.mktemp("ct1000")
    sources = [pydicom.dcmread(f) for f in ct_files]
    out: list[Instance] = []
    copy = 0
    while len(out) < N_INSTANCES:
        series_uid: dict[str, str] = {}
        for ds in sources:
            if len(out) == N_INSTANCES:
                break
            new = ds.copy()
            new.SeriesInstanceUID = series_uid.setdefault(ds.SeriesInstanceUID, generate_uid())
            new.SOPInstanceUID = generate_uid()
            new.file_meta.MediaStorageSOPInstanceUID = new.SOPInstanceUID
            path = folder / f"{copy:02d}-{len(out):04d}.dcm"
            new.save_as(path, enforce_file_format=True)
            data = path.read_bytes()
            _, offset = split_part10(data)
            out.append(Instance(path, str(new.SOPInstanceUID), hashlib.sha256(data[offset:]).hexdigest()))
        copy += 1
    assert len({i.sop_uid for i in out}) == N_INSTANCES
    return out


@dataclass
class Ledger:
    """What the senders were told: SOP Instance UID -> the status of each answer that came back."""

    acknowledged: set[str] = field(default_factory=set)
    answers: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, sop_uid: str, status: int) -> None:
        with self.lock:
            self.answers.append((sop_uid, status))
            if status == 0x0000:
                self.acknowledged.add(sop_uid)


def _sender(port: int, todo: list[Instance], ledger: Ledger) -> None:
    """Send ``todo`` over one association (re-associating after an abort) until the server is gone."""
    from pynetdicom import AE

    ae = AE(ae_title="CRASHSCU")
    ae.add_requested_context(CT_IMAGE_STORAGE, ["1.2.840.10008.1.2"])
    ae.acse_timeout = ae.network_timeout = 10
    ae.dimse_timeout = 5  # an answer that is late is treated as lost: the instance is sent again
    assoc = None
    try:
        for inst in todo:
            if assoc is None or not assoc.is_established:
                assoc = ae.associate("127.0.0.1", port, ae_title="MEDIMG")
                if not assoc.is_established:
                    return  # the server is down
            status = assoc.send_c_store(inst.path)
            if "Status" in status:
                ledger.record(inst.sop_uid, int(status.Status))
        if assoc is not None and assoc.is_established:
            assoc.release()
    except Exception:  # a connection that broke in a way pynetdicom did not absorb: the server died
        if assoc is not None:
            assoc.abort()


class Server:
    """``medimg serve --no-analysis`` in a subprocess on fresh ports, its log appended to a file."""

    def __init__(self, store: Path, log: Path) -> None:
        self.port = free_port()
        self.http_port = free_port()
        self.log = open(log, "ab")  # noqa: SIM115 (closed in wait())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "medimg", "serve", "--store", str(store), "--aet", "MEDIMG",
             "--dicom-port", str(self.port), "--http-port", str(self.http_port), "--no-analysis"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        try:
            wait_port(self.port, 120, self.proc)
        except RuntimeError:
            return False  # died while starting (it was never killed: that is a failure below)
        return True

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.wait()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.wait()

    def wait(self) -> int:
        try:
            return self.proc.wait(60)
        finally:
            self.log.close()


def _send_round(port: int, pending: list[Instance], ledger: Ledger, senders: int = 2) -> list[threading.Thread]:
    threads = [threading.Thread(target=_sender, args=(port, pending[i::senders], ledger), daemon=True)
               for i in range(senders)]
    for th in threads:
        th.start()
    return threads


@pytest.fixture
def quiet_pynetdicom() -> Iterator[None]:
    from pynetdicom import _config

    logger = logging.getLogger("pynetdicom")
    level, chunked = logger.level, _config.STORE_SEND_CHUNKED_DATASET
    logger.setLevel(logging.CRITICAL)  # every killed association is logged as an error otherwise
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the files' data set bytes as they are
    yield
    logger.setLevel(level)
    _config.STORE_SEND_CHUNKED_DATASET = chunked


def test_kill_9_while_storing_loses_no_acknowledged_instance(
        tmp_path: Path, thousand_instances: list[Instance], quiet_pynetdicom: None) -> None:
    store = tmp_path / "store"
    log = tmp_path / "serve.log"
    rng = random.Random(20261121)
    ledger = Ledger()
    by_uid = {i.sop_uid: i for i in thousand_instances}
    kills = 0
    answers_per_round: list[int] = []
    while kills < MIN_KILLS:
        pending = [i for i in thousand_instances if i.sop_uid not in ledger.acknowledged]
        if not pending:  # everything is in: keep killing while acknowledged instances come again
            pending = rng.sample(thousand_instances, 100)
        server = Server(store, log)
        if rng.random() < 0.15:
            # now and then during start-up, while the previous kill's recovery may be running
            time.sleep(rng.uniform(0.0, 1.5))
            assert server.proc.poll() is None, log.read_text()[-3000:]
            server.kill()
            kills += 1
            continue
        assert server.ready(), log.read_text()[-3000:]
        before = len(ledger.answers)
        threads = _send_round(server.port, pending, ledger)
        time.sleep(rng.uniform(0.2, 2.5))
        assert server.proc.poll() is None, log.read_text()[-3000:]
        server.kill()
        kills += 1
        for th in threads:
            th.join(120)
            assert not th.is_alive(), "a sender hangs after the server died"
        answers_per_round.append(len(ledger.answers) - before)

    # no more kills: the last start runs recovery after the last kill, the rest is sent
    server = Server(store, log)
    assert server.ready(), log.read_text()[-3000:]
    pending = [i for i in thousand_instances if i.sop_uid not in ledger.acknowledged]
    for th in _send_round(server.port, pending, ledger):
        th.join(600)
    assert server.proc.poll() is None
    server.stop()
    assert server.proc.returncode == 0, log.read_text()[-3000:]

    assert sum(n > 0 for n in answers_per_round) >= MIN_KILLS // 2  # most kills hit a busy server
    assert ledger.acknowledged == set(by_uid)
    assert {s for _, s in ledger.answers} == {0x0000}  # nothing was ever refused
    assert list((store / "tmp").iterdir()) == []
    assert list((store / "open").iterdir()) == []
    verify = subprocess.run([sys.executable, "-m", "medimg", "store", "verify", str(store), "--json"],
                            capture_output=True, text=True, timeout=600)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report == {"checked": N_INSTANCES, "ok": N_INSTANCES, "missing": [], "corrupt": [],
                      "orphans": [], "clean": True}

    # every file holds exactly the bytes that were sent, checked independently of the index
    from medimg.store import Store

    with Store(store) as opened:
        stored = {inst.sop_uid: inst for inst in opened.iter_all()}
    assert set(stored) == set(by_uid)
    assert len(list((store / "files").rglob("*.dcm"))) == N_INSTANCES
    for uid, inst in stored.items():
        data = inst.path.read_bytes()
        _, offset = split_part10(data)
        assert hashlib.sha256(data[offset:]).hexdigest() == by_uid[uid].sha256 == inst.sha256
    removed = [tuple(map(int, m)) for m in re.findall(r"recovery removed (\d+) partial and (\d+) unindexed",
                                                      log.read_text(errors="replace"))]
    print(f"\ncrash test: {kills} kills, {len(ledger.answers)} answers, {len(ledger.acknowledged)} "
          f"acknowledged; answers between start and kill per round: {answers_per_round}; recoveries "
          f"that removed something: {len(removed)}, partial files removed {sum(r[0] for r in removed)}, "
          f"unindexed files removed {sum(r[1] for r in removed)}")


def test_instances_are_distinct_real_ct(thousand_instances: list[Instance]) -> None:
    first = pydicom.dcmread(thousand_instances[0].path)
    again = pydicom.dcmread(thousand_instances[128].path)
    assert first.SOPInstanceUID != again.SOPInstanceUID
    assert first.SeriesInstanceUID != again.SeriesInstanceUID
    assert first.StudyInstanceUID == again.StudyInstanceUID
    assert (first.pixel_array == again.pixel_array).all()
    assert os.path.getsize(thousand_instances[0].path) > 500_000
