"""The study store with its index in PostgreSQL: a throwaway cluster (initdb + pg_ctl, Debian's
``postgresql`` package) on a free port, reachable only through a Unix socket in a temporary folder.

The same promises as with SQLite: every CT file stored once, queries, duplicates and conflicts,
concurrent senders (threads, and two processes writing the same instances into one database), verify;
and ``medimg serve --db URL`` accepting instances from a DICOM sender."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from peers import PEER_ENV, free_port, wait_port

from helpers import put_concurrently
from medimg.store import Store, find
from medimg.store.admin import import_paths
from medimg.store.part10 import split_part10

pytestmark = [pytest.mark.peer, pytest.mark.xdist_group("test_postgres")]


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL is not installed (apt-get install -y postgresql; scripts/setup.sh does it)"
    return Path(found[-1]).parent


class Cluster:
    """A PostgreSQL cluster of its own in a temporary folder, stopped and removed by :meth:`stop`.

    As root the server runs as the ``postgres`` user (it refuses to run as root)."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="medimg-pg-"))
        self.port = free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.folder / "data"), "-A", "trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8", "--locale", "C.UTF-8")
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses='' -c max_connections=200",
                  "start")

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run([*self.prefix, str(self.bin / tool), *args], capture_output=True, text=True,
                              timeout=180)
        assert proc.returncode == 0, f"{tool} failed: {proc.stdout}{proc.stderr}"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.folder}&port={self.port}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host=str(self.folder), port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.stop()


@pytest.fixture
def pg_url(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    """A fresh database for each test."""
    return cluster.create_database("t_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12])


def _dataset(path: Path) -> tuple[bytes, str]:
    data = path.read_bytes()
    meta, offset = split_part10(data)
    return data[offset:], meta["TransferSyntaxUID"]


def _files(root: Path) -> list[Path]:
    return [p for p in (root / "files").rglob("*") if p.is_file()]


def test_store_ct_query_duplicates_verify(tmp_path: Path, pg_url: str, ct_files: list[Path],
                                          pydicom_data_files: list[Path]) -> None:
    with Store(tmp_path / "s", pg_url) as store:
        assert store.engine.dialect.name == "postgresql"
        counts = import_paths(store, [ct_files[0].parents[1]])
        assert counts["stored"] == 128 and counts["rejected"] == 0
        assert store.count() == {"studies": 1, "series": 2, "instances": 128}
        # every stored file is the sent one, and its SHA-256 is the index's
        for inst in store.iter_all():
            data = inst.path.read_bytes()
            assert hashlib.sha256(data[split_part10(data)[1]:]).hexdigest() == inst.sha256

        # queries (C-FIND / QIDO-RS matching) on PostgreSQL
        study = find(store.engine, "STUDY", {})
        assert len(study) == 1 and study[0]["NumberOfStudyRelatedInstances"] == 128
        assert study[0]["ModalitiesInStudy"] == ["CT"]
        uid = study[0]["StudyInstanceUID"]
        series = find(store.engine, "SERIES", {"StudyInstanceUID": uid})
        assert sorted(s["NumberOfSeriesRelatedInstances"] for s in series) == [64, 64]
        images = find(store.engine, "IMAGE", {"SeriesInstanceUID": series[0]["SeriesInstanceUID"]})
        assert len(images) == 64
        assert [i["InstanceNumber"] for i in images] == sorted(i["InstanceNumber"] for i in images)
        name = study[0]["PatientName"]
        assert len(find(store.engine, "STUDY", {"PatientName": name[:3].lower() + "*"})) == 1
        assert find(store.engine, "STUDY", {"PatientName": "nobody*"}) == []
        date = study[0]["StudyDate"]
        assert len(find(store.engine, "STUDY", {"StudyDate": f"{date}-"})) == 1
        assert find(store.engine, "STUDY", {"StudyDate": "-19000101"}) == []
        assert len(find(store.engine, "PATIENT", {})) == 1

        # the same files again: duplicates, one file each
        again = import_paths(store, [ct_files[0].parents[1]])
        assert again["duplicate"] == 128 and again["stored"] == 0
        assert len(_files(store.root)) == 128

        # the pydicom-data files: every transfer syntax and text encoding they hold fits the columns
        refused: list[str] = []
        more = import_paths(store, pydicom_data_files, on_error=lambda e: refused.append(Path(e.source or "").name))
        # one truncated file, one whose SOP Instance UID is a hex digest; the same instance in several
        # transfer syntaxes is a conflict (different bytes, same SOP Instance UID)
        assert sorted(refused) == ["bad_sequence.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm"]
        assert more["stored"] + more["conflict"] + more["rejected"] == len(pydicom_data_files)
        assert more["stored"] > 30
        assert store.count()["instances"] == 128 + more["stored"]
        assert store.verify().clean

        # names in other character sets match case-insensitively (lower() is Unicode-aware here)
        charsets = Path(pydicom.__file__).parent / "data" / "charset_files"
        for name in ("chrGerm.dcm", "chrRuss.dcm", "chrH31.dcm"):
            assert store.put_path(charsets / name).outcome == "stored"
        assert [s["PatientName"] for s in find(store.engine, "STUDY", {"PatientName": "äNEAS*"})] == \
            ["Äneas^Rüdiger"]
        assert [s["PatientName"] for s in find(store.engine, "STUDY", {"PatientName": "люкceмбypг"})] == \
            ["Люкceмбypг"]
        [japanese] = find(store.engine, "STUDY", {"PatientName": "*山田*"})
        assert japanese["PatientName"] == "Yamada^Tarou=山田^太郎=やまだ^たろう"

        # verify notices a changed byte
        victim = next(iter(store.iter_all()))
        raw = bytearray(victim.path.read_bytes())
        raw[-1] ^= 0xFF
        victim.path.write_bytes(bytes(raw))
        assert store.verify().corrupt == [victim.sop_uid]


def test_conflict_policies(tmp_path: Path, pg_url: str, ct_files: list[Path]) -> None:
    ds, ts = _dataset(ct_files[0])
    changed = bytearray(ds)
    changed[-1] ^= 0x01  # one pixel bit
    with Store(tmp_path / "s", pg_url) as store:
        first = store.put_dataset(ds, ts)
        assert first.outcome == "stored"
        assert store.put_dataset(ds, ts).outcome == "duplicate"
        refused = store.put_dataset(bytes(changed), ts)
        assert refused.outcome == "conflict" and refused.status == 0x0111
    with Store(tmp_path / "s", pg_url, conflict="replace") as store:
        replaced = store.put_dataset(bytes(changed), ts, source="test")
        assert replaced.outcome == "replaced" and first.path is not None and not first.path.exists()
        assert [e["action"] for e in store.events()] == ["conflict", "replaced"]
        assert store.count()["instances"] == 1 and len(_files(store.root)) == 1
        assert store.verify().clean


def test_concurrent_senders(tmp_path: Path, pg_url: str, ct_files: list[Path]) -> None:
    study = [_dataset(f) for f in ct_files[:50]]
    with Store(tmp_path / "s", pg_url) as store:
        results, errors = put_concurrently(store, study)
        outcomes = Counter(r.outcome for r in results)
        assert errors == []
        assert outcomes == {"stored": 50, "duplicate": 450}
        assert store.count() == {"studies": 1, "series": 1, "instances": 50}
        assert len(_files(store.root)) == 50
        assert store.verify().clean


_OTHER_PROCESS = """
import json, sys
from medimg.store import Store
from medimg.store.admin import import_paths
with Store(sys.argv[1], sys.argv[2]) as store:
    print(json.dumps(import_paths(store, sys.argv[3:])))
"""


def test_two_processes_store_the_same_instances_into_one_database(tmp_path: Path, pg_url: str,
                                                                   ct_files: list[Path]) -> None:
    """Rows committed by another process meanwhile: ON CONFLICT turns the loser into a duplicate."""
    root = tmp_path / "s"
    files = list(ct_files)
    with Store(root, pg_url) as store:
        other = subprocess.Popen([sys.executable, "-c", _OTHER_PROCESS, str(root), pg_url,
                                  *map(str, reversed(files))], stdout=subprocess.PIPE, text=True)
        mine = import_paths(store, files)
        out, _ = other.communicate(timeout=600)
        assert other.returncode == 0
        theirs = json.loads(out)
        assert mine["rejected"] == theirs["rejected"] == 0
        assert mine["stored"] + theirs["stored"] == 128
        assert mine["duplicate"] + theirs["duplicate"] == 128
        assert store.count()["instances"] == 128
        assert len(_files(root)) == 128
        assert store.verify().clean


def test_medimg_serve_with_a_postgresql_index(tmp_path: Path, pg_url: str, ct_files: list[Path]) -> None:
    store = tmp_path / "store"
    port, http_port = free_port(), free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "medimg", "serve", "--store", str(store), "--db", pg_url, "--aet", "MEDIMG",
         "--dicom-port", str(port), "--http-port", str(http_port), "--no-analysis"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, 120, server)
        sent = subprocess.run(["storescu", "-v", "-aec", "MEDIMG", "127.0.0.1", str(port),
                               *map(str, ct_files[:20])], capture_output=True, text=True, env=PEER_ENV,
                              timeout=300)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert (sent.stdout + sent.stderr).count("Received Store Response (Success)") == 20
    finally:
        server.terminate()
        server.wait(60)
        log.close()
    assert server.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]
    assert not (store / "index.sqlite").exists()  # the index is in PostgreSQL, not in the folder
    ls = subprocess.run([sys.executable, "-m", "medimg", "store", "ls", str(store), "--db", pg_url, "--json"],
                        capture_output=True, text=True, timeout=300)
    studies = json.loads(ls.stdout)
    assert len(studies) == 1 and studies[0]["NumberOfStudyRelatedInstances"] == 20
    verify = subprocess.run([sys.executable, "-m", "medimg", "store", "verify", str(store), "--db", pg_url,
                             "--json"], capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["ok"] == 20
