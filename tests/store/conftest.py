"""Fixtures of the store tests: the real DICOM files (the 128 CT files of lung-pet-ct-dx-A0001, the
pydicom-data Part 10 files) as (path, data set bytes, transfer syntax)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimg.store.part10 import split_part10


def _part10_files(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                if fh.read(132)[128:132] == b"DICM":
                    out.append(p)
    return out


@pytest.fixture(scope="session")
def ct_files(data_dir: Path) -> list[Path]:
    files = sorted((data_dir / "ct" / "lung-pet-ct-dx-A0001").glob("series-*/*.dcm"))
    assert len(files) == 128
    return files


@pytest.fixture(scope="session")
def pydicom_data_files(pydicom_data_dir: Path) -> list[Path]:
    files = _part10_files(pydicom_data_dir)
    assert len(files) >= 50
    return files


@pytest.fixture(scope="session")
def ct_datasets(ct_files: list[Path]) -> list[tuple[bytes, str]]:
    """(data set bytes after the meta group, transfer syntax) of each CT file."""
    out = []
    for f in ct_files:
        data = f.read_bytes()
        meta, offset = split_part10(data)
        out.append((data[offset:], meta["TransferSyntaxUID"]))
    return out
