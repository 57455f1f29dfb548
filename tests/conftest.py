"""Shared test fixtures: where the real data is, and helpers every test module may use."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _share_the_cores() -> None:
    """Under pytest-xdist, give each worker (and the processes it starts) its share of the cores
    for torch/OpenMP and ITK threads.  Two workers on 2 cores with 2 threads each made the
    torch-heavy tests about 3x slower than with 1 thread each (the threads of one worker wait on
    those of the other).  Set before torch or SimpleITK is imported; a value already set is kept."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 2:
        return
    share = str(max(1, (os.cpu_count() or 1) // workers))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ.setdefault(var, share)
    if "torch" in sys.modules:  # imported by a plugin already: the variable came too late
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


_share_the_cores()


def _data_dir() -> Path:
    env = os.environ.get("MEDIMG_DATA")
    return Path(env) if env else (REPO.parent / "shared" / "data")


DATA = _data_dir()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder (../shared/data or $MEDIMG_DATA).  Missing data is a failure, not a skip."""
    if not (DATA / "MANIFEST.md").is_file():
        pytest.fail(
            f"real data not found at {DATA}: put ../shared/data beside the checkout or set MEDIMG_DATA",
            pytrace=False,
        )
    return DATA


@pytest.fixture(scope="session")
def ct_series(data_dir: Path) -> Path:
    """A real 64-slice chest CT series (uncompressed)."""
    return data_dir / "ct" / "lung-pet-ct-dx-A0001" / "series-2"


@pytest.fixture(scope="session")
def pydicom_data_dir() -> Path:
    """The 68 files of the pydicom-data package (read from the installed package, never copied)."""
    import data_store  # the import name of the pydicom-data distribution

    return Path(data_store.__file__).parent / "data"


@pytest.fixture(scope="session")
def pydicom_test_dir() -> Path:
    """pydicom's own test files (several deliberately broken)."""
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture(scope="session")
def pydicom_data_files(pydicom_data_dir: Path) -> list[Path]:
    """The pydicom-data files that are DICOM Part 10 files (with the 'DICM' marker)."""
    from helpers import part10_files

    files = part10_files(pydicom_data_dir)
    assert len(files) >= 50
    return files
