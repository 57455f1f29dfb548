"""The study store's promises (medimg.store.store): server-generated paths, one copy per SOP Instance
UID, the three conflict policies, the SHA-256 of the data set bytes, verify, and recovery after a
process died with the store open -- including a death between the file's rename and its index row."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from crafted import (
    DEFLATED,
    ENCODINGS,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    deflate,
    part10,
    sample,
    uids,
)

from helpers import put_concurrently
from medimg.store import InstanceRejected, Store, find
from medimg.store.admin import import_paths
from medimg.store.part10 import build_meta, split_part10

EXPLICIT = ENCODINGS[EXPLICIT_LE]
NAME = re.compile(r"^files/[0-9a-f]{2}/[0-9a-f]{32}\.dcm$")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "files").rglob("*") if p.is_file())


def _everything(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _dead_pid() -> int:
    """The pid of a process that has just exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------ paths
def test_paths_are_server_generated(tmp_path: Path, ct_datasets: list[tuple[bytes, str]]) -> None:
    with Store(tmp_path / "s") as store:
        for ds, ts in ct_datasets[:8]:
            result = store.put_dataset(ds, ts, source_aet="CT01")
            rel = result.path.relative_to(store.root).as_posix()  # type: ignore[union-attr]
            assert NAME.match(rel), rel
            assert result.sop_instance_uid not in rel
        assert len({p.name for p in _files(store.root)}) == 8


@pytest.mark.parametrize("sop", [
    "1.2/../../x", "../../../../tmp/evil", "1.2.3\x00.4", "1.2.3\x00/../../x", "/etc/passwd",
    "1.2." + "3" * 70, " 1.2.3", "", "1..2",
])
def test_hostile_sop_instance_uid_is_refused_and_nothing_written(tmp_path: Path, sop: str) -> None:
    root = tmp_path / "store"
    with Store(root) as store:
        before = _everything(tmp_path)
        ds, _ = sample(EXPLICIT, sop=sop)
        with pytest.raises(InstanceRejected) as info:
            store.put_dataset(ds, EXPLICIT_LE)
        assert info.value.status == 0xA900  # "data set does not match SOP class": no usable UID
        with pytest.raises(InstanceRejected):
            store.put_file_bytes(part10(ds, EXPLICIT_LE, "1.2.3"))
        assert _everything(tmp_path) == before
        assert store.count()["instances"] == 0
        assert _files(root) == [] and list((root / "tmp").iterdir()) == []


def test_hostile_study_uid_and_mismatched_request_are_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store:
        with pytest.raises(InstanceRejected, match="Study Instance UID"):
            store.put_dataset(sample(EXPLICIT, study="1.2/../../x")[0], EXPLICIT_LE)
        ds, _ = sample(EXPLICIT, 1)
        with pytest.raises(InstanceRejected, match="differs") as info:
            store.put_dataset(ds, EXPLICIT_LE, sop_instance_uid=uids(2)["sop"])
        assert info.value.status == 0xC000
        with pytest.raises(InstanceRejected, match="differs") as info:
            store.put_dataset(ds, EXPLICIT_LE, sop_class_uid="1.2.840.10008.5.1.4.1.1.4")
        assert info.value.status == 0xA900
        with pytest.raises(InstanceRejected, match="not a UID"):
            store.put_dataset(ds, "../1.2")
        assert store.count()["instances"] == 0 and _files(store.root) == []


def test_malformed_and_oversized_instances_are_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "s", max_instance_bytes=4096) as store:
        ds, _ = sample(EXPLICIT, 1)
        with pytest.raises(InstanceRejected, match="malformed data set") as info:
            store.put_dataset(ds[:-10], EXPLICIT_LE)
        assert info.value.status == 0xC000 and info.value.http_status == 400
        big, _ = sample(EXPLICIT, 2, pixel_bytes=5000)
        with pytest.raises(InstanceRejected, match="exceeds the limit") as info:
            store.put_dataset(big, EXPLICIT_LE)
        assert info.value.status == 0xA700 and info.value.http_status == 413
        with pytest.raises(InstanceRejected, match="Part 10"):
            store.put_file_bytes(b"not dicom" * 20)
        # a deflated data set of ~2 KiB that would inflate to 2 MiB
        bomb = deflate(sample(EXPLICIT, 3)[0] + EXPLICIT.element(0x7FE10010, "OB", bytes(2 << 20)))
        assert len(bomb) < 4096
        with pytest.raises(InstanceRejected, match="inflates to more than 4096 bytes") as info:
            store.put_dataset(bomb, DEFLATED)
        assert info.value.status == 0xC000
        assert store.count()["instances"] == 0 and _files(store.root) == []
        assert list((store.root / "tmp").iterdir()) == []


# ------------------------------------------------------------------------------ bytes and hashes
def test_stored_file_keeps_the_data_set_bytes_and_their_sha256(tmp_path: Path,
                                                                ct_datasets: list[tuple[bytes, str]]) -> None:
    with Store(tmp_path / "s") as store:
        for ds, ts in ct_datasets[:4] + [(sample(EXPLICIT, 5)[0], EXPLICIT_LE),
                                         (sample(ENCODINGS[IMPLICIT_LE], 6)[0], IMPLICIT_LE),
                                         (sample(ENCODINGS[EXPLICIT_BE], 7)[0], EXPLICIT_BE),
                                         (deflate(sample(EXPLICIT, 8)[0]), DEFLATED)]:
            result = store.put_dataset(memoryview(ds), ts, source_aet="MODALITY")
            assert result.outcome == "stored" and result.ok and result.status == 0
            assert result.sha256 == hashlib.sha256(ds).hexdigest()
            assert result.path is not None
            data = result.path.read_bytes()
            meta, offset = split_part10(data)
            assert data[offset:] == ds
            assert meta["TransferSyntaxUID"] == ts
            assert meta["MediaStorageSOPInstanceUID"] == result.sop_instance_uid
            assert meta["SourceApplicationEntityTitle"] == "MODALITY"
            assert pydicom.dcmread(result.path).SOPInstanceUID == result.sop_instance_uid
            inst = store.instance(result.sop_instance_uid)
            assert inst is not None and inst.sha256 == result.sha256 and inst.size == len(data)
            assert inst.path == result.path


# ------------------------------------------------------------------------------ duplicates, conflicts
def test_same_bytes_twice_is_one_file(tmp_path: Path, ct_files: list[Path]) -> None:
    with Store(tmp_path / "s") as store:
        data = ct_files[0].read_bytes()
        meta, offset = split_part10(data)
        first = store.put_dataset(data[offset:], meta["TransferSyntaxUID"])
        again = store.put_dataset(data[offset:], meta["TransferSyntaxUID"])
        # the same data set in a Part 10 file with another meta group (STOW-RS, import) is the same bytes
        as_file = store.put_file_bytes(data)
        imported = store.put_path(ct_files[0])
        assert [r.outcome for r in (first, again, as_file, imported)] == ["stored", "duplicate", "duplicate",
                                                                           "duplicate"]
        assert all(r.ok and r.status == 0 and r.path == first.path for r in (again, as_file, imported))
        assert len(_files(store.root)) == 1
        assert store.count() == {"studies": 1, "series": 1, "instances": 1}
        assert store.verify().clean


def _two_versions() -> tuple[bytes, bytes]:
    a, _ = sample(EXPLICIT, 1, patient="Doe^Jane")
    b, _ = sample(EXPLICIT, 1, patient="Doe^John")
    assert a != b and len(a) == len(b)
    return a, b


def test_conflict_reject_keeps_the_stored_copy(tmp_path: Path) -> None:
    a, b = _two_versions()
    with Store(tmp_path / "s") as store:
        first = store.put_dataset(a, EXPLICIT_LE)
        second = store.put_dataset(b, EXPLICIT_LE, source="dimse:OTHER")
        assert second.outcome == "conflict" and not second.ok and second.status == 0x0111
        assert second.path == first.path
        assert split_part10(first.path.read_bytes())[1] and first.path.read_bytes().endswith(a)  # type: ignore[union-attr]
        assert len(_files(store.root)) == 1
        events = store.events(uids(1)["study"])
        assert [e["action"] for e in events] == ["conflict"]
        assert events[0]["detail"]["policy"] == "reject" and events[0]["actor"] == "dimse:OTHER"
        assert events[0]["detail"]["offered_sha256"] == hashlib.sha256(b).hexdigest()
        assert store.verify().clean


def test_conflict_keep_answers_success_and_keeps_the_stored_copy(tmp_path: Path) -> None:
    a, b = _two_versions()
    with Store(tmp_path / "s", conflict="keep") as store:
        first = store.put_dataset(a, EXPLICIT_LE)
        second = store.put_dataset(b, EXPLICIT_LE)
        assert second.outcome == "kept" and second.ok and second.status == 0
        assert first.path is not None and first.path.read_bytes().endswith(a)
        assert len(_files(store.root)) == 1
        assert [e["action"] for e in store.events()] == ["conflict"]
        assert store.instance(uids(1)["sop"]).sha256 == hashlib.sha256(a).hexdigest()  # type: ignore[union-attr]


def test_conflict_replace_swaps_the_copy_atomically(tmp_path: Path) -> None:
    a, b = _two_versions()
    with Store(tmp_path / "s", conflict="replace") as store:
        first = store.put_dataset(a, EXPLICIT_LE)
        second = store.put_dataset(b, EXPLICIT_LE, source="stow:user")
        assert second.outcome == "replaced" and second.ok and second.status == 0
        assert second.path != first.path and not first.path.exists()  # type: ignore[union-attr]
        assert second.path is not None and second.path.read_bytes().endswith(b)
        assert [p for p in _files(store.root)] == [second.path]
        inst = store.instance(uids(1)["sop"])
        assert inst is not None and inst.sha256 == hashlib.sha256(b).hexdigest()
        assert [e["action"] for e in store.events()] == ["replaced"]
        # the same bytes again are a duplicate, not another replacement
        assert store.put_dataset(b, EXPLICIT_LE).outcome == "duplicate"
        assert store.count()["instances"] == 1 and store.verify().clean


def test_unknown_conflict_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reject, keep or replace"):
        Store(tmp_path / "s", conflict="overwrite")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ verify
def test_verify_finds_a_changed_byte_a_missing_file_and_an_orphan(tmp_path: Path,
                                                                   ct_datasets: list[tuple[bytes, str]]) -> None:
    with Store(tmp_path / "s") as store:
        results = [store.put_dataset(ds, ts) for ds, ts in ct_datasets[:5]]
        report = store.verify()
        assert report.clean and report.checked == 5 and report.ok == 5
        changed, gone = results[0], results[1]
        assert changed.path is not None and gone.path is not None
        raw = bytearray(changed.path.read_bytes())
        raw[len(raw) // 2] ^= 0x01  # one bit of one pixel
        changed.path.write_bytes(bytes(raw))
        gone.path.unlink()
        orphan = store.root / "files" / "7f" / ("ab" * 16 + ".dcm")
        orphan.write_bytes(results[2].path.read_bytes())  # type: ignore[union-attr]
        report = store.verify()
        assert not report.clean
        assert report.corrupt == [changed.sop_instance_uid]
        assert report.missing == [gone.sop_instance_uid]
        assert report.orphans == ["files/7f/" + "ab" * 16 + ".dcm"]
        assert report.checked == 5 and report.ok == 3


def test_verify_finds_a_truncated_file(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store:
        result = store.put_dataset(sample(EXPLICIT, 1)[0], EXPLICIT_LE)
        assert result.path is not None
        result.path.write_bytes(result.path.read_bytes()[:-1])
        assert store.verify().corrupt == [result.sop_instance_uid]
        result.path.write_bytes(b"garbage")
        assert store.verify().corrupt == [result.sop_instance_uid]


# ------------------------------------------------------------------------------ recovery
def test_clean_reopen_keeps_everything_and_runs_no_recovery(tmp_path: Path,
                                                             ct_datasets: list[tuple[bytes, str]]) -> None:
    with Store(tmp_path / "s") as store:
        for ds, ts in ct_datasets[:10]:
            store.put_dataset(ds, ts)
    assert list((tmp_path / "s" / "open").iterdir()) == []
    with Store(tmp_path / "s") as store:
        assert store.recovered is None
        assert store.count() == {"studies": 1, "series": 1, "instances": 10}
        assert store.verify().clean
        assert store.put_dataset(*ct_datasets[0]).outcome == "duplicate"


def test_recovery_removes_partial_and_unindexed_files_after_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with Store(root) as store:
        kept = store.put_dataset(sample(EXPLICIT, 1)[0], EXPLICIT_LE)
    # what a process killed while storing leaves: its marker, a half-written file, a renamed file
    # whose index row was never committed
    dead = _dead_pid()
    (root / "open" / str(dead)).write_text("0")
    (root / "tmp" / ("cd" * 16 + ".part")).write_bytes(b"\0" * 1000)
    unindexed = root / "files" / "cd" / ("cd" * 16 + ".dcm")
    unindexed.write_bytes(build_meta("1.2.3", "1.2.3.4", EXPLICIT_LE) + sample(EXPLICIT, 2)[0])
    with Store(root) as store:
        assert store.recovered == {"tmp": 1, "orphans": 1}
        assert not unindexed.exists() and list((root / "tmp").iterdir()) == []
        assert not (root / "open" / str(dead)).exists()
        assert _files(root) == [kept.path]
        assert store.verify().clean and store.count()["instances"] == 1


def test_recovery_waits_while_another_live_process_has_the_store_open(tmp_path: Path) -> None:
    root = tmp_path / "s"
    Store(root).close()
    partial = root / "tmp" / ("ef" * 16 + ".part")
    partial.write_bytes(b"\0" * 10)
    (root / "open" / str(_dead_pid())).write_text("0")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (root / "open" / str(alive.pid)).write_text("0")
        with Store(root) as store:
            assert store.recovered is None  # the live one may be writing that file right now
            assert partial.exists()
    finally:
        alive.kill()
        alive.wait()
    with Store(root) as store:  # both are dead now
        assert store.recovered == {"tmp": 1, "orphans": 0}
        assert not partial.exists()


_CRASH_AFTER_RENAME = """
import os, sys
from medimg.store import Store
from medimg.store.part10 import build_meta, inspect_dataset
root, ts = sys.argv[1], sys.argv[2]
ds = sys.stdin.buffer.read()
store = Store(root)
header = inspect_dataset(ds, ts)
rel = store._write_file(build_meta(header.sop_class_uid, header.sop_instance_uid, ts), ds)
print(rel, flush=True)
os._exit(9)  # dies after the file's fsync and rename, before its index row is written
"""


def test_crash_between_rename_and_index_commit_is_recovered(tmp_path: Path,
                                                            ct_datasets: list[tuple[bytes, str]]) -> None:
    root = tmp_path / "s"
    with Store(root) as store:
        store.put_dataset(*ct_datasets[0])
    ds, ts = ct_datasets[1]
    proc = subprocess.run([sys.executable, "-c", _CRASH_AFTER_RENAME, str(root), ts], input=ds,
                          capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()
    rel = proc.stdout.decode().strip()
    assert NAME.match(rel) and (root / rel).read_bytes().endswith(ds)  # the file made it to files/
    with Store(root) as store:
        assert store.recovered == {"tmp": 0, "orphans": 1}
        assert not (root / rel).exists()
        assert store.count()["instances"] == 1 and store.verify().clean
        # the sender never got an answer, sends again, and it is stored
        assert store.put_dataset(ds, ts).outcome == "stored"
        assert store.count()["instances"] == 2 and store.verify().clean


# ------------------------------------------------------------------------------ threads
def test_concurrent_threads_store_each_instance_once(tmp_path: Path,
                                                     ct_datasets: list[tuple[bytes, str]]) -> None:
    """10 senders offer the same 50 instances at once, each in its own order: one row and one file
    per instance, every answer a success, exactly one 'stored' per instance."""
    with Store(tmp_path / "s") as store:
        results, errors = put_concurrently(store, ct_datasets[:50])
        outcomes = Counter(r.outcome for r in results)
        stored_by_uid = Counter(r.sop_instance_uid for r in results if r.outcome == "stored")
        assert errors == []
        assert outcomes == {"stored": 50, "duplicate": 450}
        assert len(stored_by_uid) == 50 and set(stored_by_uid.values()) == {1}
        assert store.count() == {"studies": 1, "series": 1, "instances": 50}
        assert len(_files(store.root)) == 50 and list((store.root / "tmp").iterdir()) == []
        assert store.verify().clean
        writer = store._index_writer
        assert writer.rows == 50  # rows written; the other offers were answered from the index
        assert 1 <= writer.batches <= 50 + 450


def test_concurrent_threads_distinct_instances(tmp_path: Path, ct_datasets: list[tuple[bytes, str]]) -> None:
    with Store(tmp_path / "s") as store:
        chunks = [ct_datasets[i::4] for i in range(4)]
        threads = [threading.Thread(target=lambda c=c: [store.put_dataset(ds, ts) for ds, ts in c])
                   for c in chunks]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert store.count() == {"studies": 1, "series": 2, "instances": 128}
        assert store._index_writer.rows == 128
        series = find(store.engine, "SERIES", {})
        assert sorted(s["NumberOfSeriesRelatedInstances"] for s in series) == [64, 64]
        assert store.verify().clean


# ------------------------------------------------------------------------------ import
def test_import_of_the_ct_folder(tmp_path: Path, ct_files: list[Path]) -> None:
    folder = ct_files[0].parents[1]
    messages: list[str] = []
    with Store(tmp_path / "s") as store:
        counts = import_paths(store, [folder], on_error=lambda e: messages.append(str(e)))
        assert counts["stored"] == 128 and counts["rejected"] == 0 and messages == []
        assert counts["skipped"] == len([p for p in folder.rglob("*") if p.is_file()]) - 128
        again = import_paths(store, [folder])
        assert again["duplicate"] == 128 and again["stored"] == 0
        studies = find(store.engine, "STUDY", {})
        assert len(studies) == 1 and studies[0]["NumberOfStudyRelatedInstances"] == 128
        assert studies[0]["ModalitiesInStudy"] == ["CT"]
        assert store.verify().clean


def test_store_folder_must_be_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Exception, match="cannot create the store folder"):
        Store(blocker / "s")


def test_open_markers(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    assert [p.name for p in (tmp_path / "s" / "open").iterdir()] == [str(os.getpid())]
    store.close()
    assert list((tmp_path / "s" / "open").iterdir()) == []
