"""Fixtures of the store tests: the real DICOM files (the 128 CT files of lung-pet-ct-dx-A0001, the
pydicom-data Part 10 files) as (path, data set bytes, transfer syntax)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimg.store.part10 import split_part10


@pytest.fixture(scope="session")
def ct_files(data_dir: Path) -> list[Path]:
    files = sorted((data_dir / "ct" / "lung-pet-ct-dx-A0001").glob("series-*/*.dcm"))
    assert len(files) == 128
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
