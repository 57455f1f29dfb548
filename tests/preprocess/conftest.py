"""Real images for the preprocessing tests (read once per session; tests copy what they change)."""

from __future__ import annotations

from pathlib import Path

import pytest

import medimg
from medimg import Image


@pytest.fixture(scope="session")
def ct(ct_series: Path) -> Image:
    """The 64-slice chest CT (HU, int16, 5 mm slices)."""
    return medimg.read(ct_series)


@pytest.fixture(scope="session")
def ct_small(ct: Image) -> Image:
    """16 slices x 256 x 320 of the chest CT (body, lungs and table), for fast geometry tests."""
    from medimg.preprocess import crop

    return crop(ct, (24, 160, 96), (40, 416, 416))


@pytest.fixture(scope="session")
def ct_slice(data_dir: Path) -> Image:
    """One axial CT slice (2-D, padding value -3024 outside the reconstruction circle)."""
    return medimg.read(data_dir / "registration" / "ny-sbu" / "A002304" / "19001231-076.dcm")


@pytest.fixture(scope="session")
def mr(data_dir: Path) -> Image:
    """T1 brain MR with contrast, 25 slices of 256 x 256, 6.5 mm."""
    return medimg.read(data_dir / "mr" / "pyradiomics" / "brain1_image.nrrd").replace(modality="MR")


@pytest.fixture(scope="session")
def mr_label(data_dir: Path) -> Image:
    """The tumour label map of :func:`mr`."""
    return medimg.read(data_dir / "mr" / "pyradiomics" / "brain1_label.nrrd")


@pytest.fixture(scope="session")
def xray(data_dir: Path) -> Image:
    return medimg.read(data_dir / "xray" / "lung-seg-2d" / "1.jpg").replace(modality="DX")


@pytest.fixture(scope="session")
def fundus(data_dir: Path) -> Image:
    return medimg.read(data_dir / "retina" / "drive" / "test" / "images" / "01_test.tif").replace(
        modality="OP")


@pytest.fixture(scope="session")
def fundus_mask(data_dir: Path) -> Image:
    return medimg.read(data_dir / "retina" / "drive" / "test" / "mask" / "01_test_mask.gif")
