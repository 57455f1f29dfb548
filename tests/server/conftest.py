"""Fixtures of the server tests: real peers (Orthanc, dcmtk) on free loopback ports, a medimg server
started in-process, and the real DICOM files to send (the 128 CT files of lung-pet-ct-dx-A0001 and the
pydicom-data files)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import Orthanc, start_medimg


@pytest.fixture(scope="session")
def ct_study_dir(data_dir: Path) -> Path:
    """The real chest CT study: two 64-slice series."""
    return data_dir / "ct" / "lung-pet-ct-dx-A0001"


@pytest.fixture(scope="session")
def ct_files(ct_study_dir: Path) -> list[Path]:
    files = sorted(ct_study_dir.glob("series-*/*.dcm"))
    assert len(files) == 128
    return files


@pytest.fixture
def medimg_server(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: ``medimg_server(**config_overrides)`` starts a server on free ports with its store in
    ``tmp_path``; every server started is stopped at the end of the test."""
    started: list[Any] = []

    def make(**overrides: Any) -> Any:
        store = overrides.pop("store", tmp_path / f"store{len(started)}")
        server = start_medimg(store, **overrides)
        started.append(server)
        return server

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """An Orthanc PACS (Debian package, DICOMweb plugin on) for the tests of one module."""
    o = Orthanc(tmp_path_factory.mktemp("orthanc"))
    yield o
    o.stop()
