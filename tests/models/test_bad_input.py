"""Bad input to models: clear one-line errors, never a model silently applied to the wrong data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg.cli import main
from medimg.image import Image
from medimg.models import ContractError, ModelError, load
from medimg.models.explain import gradcam
from medimg.models.registry import weights_dir


def _one_line(err: str) -> None:
    assert err.strip() and "\n" not in err.strip() and "Traceback" not in err


def test_unknown_model_name() -> None:
    with pytest.raises(ModelError, match="no such shipped model"):
        load("no-such-model")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not-a-model"])
def test_corrupted_weights_file(tmp_path: Path, damage: str, capsys) -> None:
    src = (weights_dir() / "us-breast.pt").read_bytes()
    p = tmp_path / "broken.pt"
    if damage == "truncated":
        p.write_bytes(src[: len(src) // 2])
    elif damage == "garbage":
        p.write_bytes(b"\x00not a zip" * 100)
    elif damage == "empty":
        p.write_bytes(b"")
    else:
        import torch

        torch.save({"weights": torch.zeros(3)}, p)
    with pytest.raises(ModelError, match="broken.pt"):
        load(p)
    assert main(["evaluate", str(p), str(tmp_path)]) == 2
    _one_line(capsys.readouterr().err)


def test_weights_of_another_architecture(tmp_path: Path) -> None:
    import torch

    payload = torch.load(weights_dir() / "us-breast.pt", weights_only=True)
    payload["arch_kwargs"] = {**payload["arch_kwargs"], "channels": [8, 8, 8]}
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="do not fit"):
        load(tmp_path / "other.pt")


def _image(arr: np.ndarray, modality: str) -> Image:
    return Image(arr[np.newaxis], modality=modality)


def test_wrong_modality_is_refused() -> None:
    m = load("cxr-pneumonia")
    with pytest.raises(ContractError, match="modality 'MR'"):
        m.prepare_image(_image(np.zeros((64, 64), np.uint8), "MR"))
    us = load("us-breast")
    with pytest.raises(ContractError, match="modality 'DX'"):
        us.prepare_image(_image(np.zeros((64, 64), np.uint8), "DX"))


def test_wrong_channel_count_is_refused() -> None:
    m = load("cxr-pneumonia")
    with pytest.raises(ContractError, match="3 channel"):
        m.prepare_image(_image(np.zeros((64, 64, 3), np.uint8), "DX"))
    with pytest.raises(ContractError, match=r"expected \(n, 1, y, x\)"):
        m.predict_proba(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ContractError, match="28, 28"):
        m.predict_proba(np.zeros((2, 1, 64, 64), np.float32))
    with pytest.raises(ContractError, match="channel"):
        gradcam(m, np.zeros((3, 28, 28), np.float32))


def test_volume_and_tiny_image_are_refused() -> None:
    m = load("cxr-pneumonia")
    with pytest.raises(ContractError, match="slices"):
        m.prepare_image(Image(np.zeros((5, 64, 64), np.uint8), modality="CT".replace("CT", "DX")))
    with pytest.raises(ContractError, match="smaller than"):
        m.prepare_image(_image(np.zeros((8, 8), np.uint8), "DX"))


def test_evaluate_on_data_of_another_kind(data_dir: Path, capsys) -> None:
    # a segmentation model on a classification dataset: one clear line, exit 2
    code = main(["evaluate", "us-breast", str(data_dir / "retina" / "drive"), "--json"])
    assert code == 2
    _one_line(capsys.readouterr().err)
    code = main(["evaluate", "us-breast", str(data_dir / "no-such.npz")])
    assert code == 2
    _one_line(capsys.readouterr().err)
