"""Every shipped model: loads offline, is small, and its model card's test figures are what
`medimg evaluate` measures again now (within 0.005)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medimg.cli import main
from medimg.models import available, load
from medimg.models.card import card_metrics, docs_dir, read_card_spec
from medimg.models.registry import weights_dir
from medimg.train.config import resolve_data_path
from medimg.train.evaluate import evaluate

SHIPPED = ["cxr-pneumonia", "us-breast", "retina-vessels"]
SLOW = {"retina-vessels"}


def _params():
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in SHIPPED]


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(min(n, 2))
    yield
    torch.set_num_threads(n)


def test_every_shipped_model_is_listed_and_small() -> None:
    assert set(SHIPPED) <= set(available())
    for name in available():
        size = (weights_dir() / f"{name}.pt").stat().st_size
        assert size < 2 * 1024 * 1024, f"{name}: {size} bytes"
        assert (docs_dir() / f"{name}.md").is_file(), f"{name} has no model card"


@pytest.mark.parametrize("name", _params())
def test_card_figures_are_reproduced(name: str, data_dir: Path) -> None:
    text = (docs_dir() / f"{name}.md").read_text()
    spec = read_card_spec(text)
    card = card_metrics(text)
    assert card, "the card's Test metrics table is empty"
    got = evaluate(name, resolve_data_path(spec["data"]), spec["split"])
    for key, value in card.items():
        assert got[key] == pytest.approx(value, abs=0.005), key
    for text_key in ("Intended use", "Limits", "command", "time", "not for diagnosis"):
        assert text_key.lower() in text.lower()


def test_evaluate_cli_json(data_dir: Path, capsys) -> None:
    code = main(["evaluate", "us-breast", str(data_dir / "us" / "breastmnist.npz"), "--json",
                 "--boot", "100"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("auc", "accuracy", "sensitivity", "specificity", "f1"):
        lo, hi = out[f"{k}_ci"]
        assert lo <= out[k] <= hi
    assert out["split"] == "test" and out["n"] == 156


def test_loaded_model_carries_its_contract_and_calibration() -> None:
    m = load("cxr-pneumonia")
    assert m.contract.size == (28, 28) and m.contract.channels == "grey"
    assert set(m.contract.modalities) >= {"CR", "DX"}
    assert m.temperature > 0 and 0 < m.threshold < 1
    assert len(m.members) >= 3  # an ensemble
