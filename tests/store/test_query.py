"""C-FIND / QIDO-RS matching (medimg.store.query) on a store holding the real CT study and pydicom's
files in other character sets."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from medimg.store import QueryError, Store, find

CHARSETS = ("chrGerm.dcm", "chrRuss.dcm", "chrH31.dcm", "chrX1.dcm", "chrFren.dcm")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, ct_files: list[Path], pydicom_test_dir: Path) -> Store:
    s = Store(tmp_path_factory.mktemp("query") / "store")
    for f in ct_files:
        s.put_path(f)
    for name in CHARSETS:
        s.put_path(pydicom_test_dir.parent / "charset_files" / name)
    return s


def _names(rows: list[dict[str, object]]) -> list[str]:
    return sorted(str(r["PatientName"]) for r in rows)


def test_non_ascii_names_match_case_insensitively(store: Store, pydicom_test_dir: Path) -> None:
    folder = pydicom_test_dir.parent / "charset_files"
    german = str(pydicom.dcmread(folder / "chrGerm.dcm").PatientName)
    russian = str(pydicom.dcmread(folder / "chrRuss.dcm").PatientName)
    assert german == "Äneas^Rüdiger"
    assert _names(find(store.engine, "STUDY", {"PatientName": "Äneas*"})) == [german]
    assert _names(find(store.engine, "STUDY", {"PatientName": "äNEAS^rÜDIGER"})) == [german]
    assert _names(find(store.engine, "PATIENT", {"PatientName": russian})) == [russian]
    assert _names(find(store.engine, "PATIENT", {"PatientName": russian.upper()})) == [russian]
    [japanese] = find(store.engine, "STUDY", {"PatientName": "yamada*"})
    assert japanese["PatientName"] == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert _names(find(store.engine, "STUDY", {"PatientName": "*山田*"})) == [japanese["PatientName"]]


def test_levels_counts_and_relational_keys(store: Store, ct_files: list[Path]) -> None:
    ct = pydicom.dcmread(ct_files[0], stop_before_pixels=True)
    [study] = find(store.engine, "STUDY", {"StudyInstanceUID": ct.StudyInstanceUID})
    assert study["NumberOfStudyRelatedSeries"] == 2 and study["NumberOfStudyRelatedInstances"] == 128
    assert study["ModalitiesInStudy"] == ["CT"]
    assert study["PatientID"] == ct.PatientID
    series = find(store.engine, "SERIES", {"StudyInstanceUID": ct.StudyInstanceUID})
    assert sorted(s["NumberOfSeriesRelatedInstances"] for s in series) == [64, 64]
    images = find(store.engine, "IMAGE", {"SeriesInstanceUID": ct.SeriesInstanceUID})
    assert len(images) == 64
    numbers = [i["InstanceNumber"] for i in images]
    assert numbers == sorted(numbers)
    # a list of UIDs, and a series key restricting a study query
    both = "\\".join(s["SeriesInstanceUID"] for s in series)
    assert len(find(store.engine, "SERIES", {"SeriesInstanceUID": both})) == 2
    assert len(find(store.engine, "STUDY", {"Modality": "CT"})) == 1
    assert find(store.engine, "STUDY", {"Modality": "MR", "StudyInstanceUID": ct.StudyInstanceUID}) == []


def test_dates_wildcards_and_limits(store: Store, ct_files: list[Path]) -> None:
    ct = pydicom.dcmread(ct_files[0], stop_before_pixels=True)
    date = ct.StudyDate
    assert len(find(store.engine, "STUDY", {"StudyDate": date})) >= 1
    assert len(find(store.engine, "STUDY", {"StudyDate": f"{date}-{date}"})) >= 1
    assert find(store.engine, "STUDY", {"StudyDate": "-18991231"}) == []
    assert find(store.engine, "STUDY", {"PatientID": ct.PatientID[:-1] + "?"})[0]["PatientID"] == ct.PatientID
    assert find(store.engine, "STUDY", {"PatientID": "%"}) == []  # SQL wildcards are literal characters
    everything = find(store.engine, "STUDY", {})
    assert len(everything) == len({s.study_uid for s in store.iter_all()}) >= 2
    assert len(find(store.engine, "STUDY", {}, limit=2)) == 2
    assert len(find(store.engine, "IMAGE", {}, limit=5, offset=126)) == 5


def test_bad_queries_are_refused(store: Store) -> None:
    with pytest.raises(QueryError, match="not a supported query key"):
        find(store.engine, "STUDY", {"PatientWeight": "70"})
    with pytest.raises(QueryError, match="not YYYYMMDD"):
        find(store.engine, "STUDY", {"StudyDate": "2024-01"})
    with pytest.raises(QueryError, match="not one of"):
        find(store.engine, "FRAME", {})
    with pytest.raises(QueryError, match="PATIENT level"):
        find(store.engine, "PATIENT", {"StudyDate": "20240101"})
