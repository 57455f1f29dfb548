"""Every shipped model: loads offline, is small, and its model card's test figures are what
`medimg evaluate` measures again now (within 0.005); so are a classifier's explanation-check figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medimg.cli import main
from medimg.models import available, load
from medimg.models.card import EXPLAIN_N, card_explanation, card_metrics, docs_dir, read_card_spec
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
        # small enough to ship in the wheel: the largest, us-breast (50 members), is 9.9 MiB
        assert size < 12 * 1024 * 1024, f"{name}: {size} bytes"
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


CLASSIFIERS = ["cxr-pneumonia", pytest.param("us-breast", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_card_explanation_check_is_reproduced(name: str, data_dir: Path) -> None:
    text = (docs_dir() / f"{name}.md").read_text()
    spec = read_card_spec(text)
    card = card_explanation(text)
    assert set(card) == {"deletion", "insertion", "random_deletion", "random_insertion"}
    got = evaluate(name, resolve_data_path(spec["data"]), spec["split"], n_boot=10,
                   explain=EXPLAIN_N)["explanation"]
    assert got["n"] == EXPLAIN_N
    for key, value in card.items():
        assert got[key] == pytest.approx(value, abs=0.005), key
    # blurring away what the heatmap ranks first lowers the probability faster than a random order
    assert got["deletion"] < got["random_deletion"]
    if got["random_deletion"] < 0.9:  # the check has room: insertion must beat random clearly too
        assert got["insertion"] > got["random_insertion"] + 0.05


def test_evaluate_explain_is_refused_for_a_segmentation_model(data_dir: Path, capsys) -> None:
    code = main(["evaluate", "retina-vessels", str(data_dir / "retina" / "drive"), "--explain", "4"])
    assert code != 0
    err = capsys.readouterr().err
    assert "retina-vessels" in err and "--explain (Grad-CAM) needs a classifier" in err


def test_evaluate_cli_reports_the_explanation_check(data_dir: Path, capsys) -> None:
    code = main(["evaluate", "cxr-pneumonia", str(data_dir / "xray" / "pneumoniamnist.npz"), "--split",
                 "val", "--explain", "4", "--boot", "20"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Grad-CAM on the first 4 images called positive (probability >= 0.6669)" in out
    assert "deletion" in out and "insertion" in out


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


def test_model_file_keeps_batch_norm_statistics_in_full_precision(tmp_path: Path) -> None:
    """float16 weights, but running means/variances as trained: in float16 a BN mean of ~300 is
    rounded by up to 0.125, a real shift for a channel whose spread is ~1 (seen on the DRIVE U-Net)."""
    from medimg.models.contract import Contract
    from medimg.models.nets import build
    from medimg.models.registry import save_model

    torch.manual_seed(0)
    net = build("small_cnn", 1, 2, channels=[4, 8])
    state = net.state_dict()
    for k in state:
        if k.endswith("running_mean"):
            state[k] = 300.0 + torch.rand_like(state[k])
        if k.endswith("running_var"):
            state[k] = 0.5 + torch.rand_like(state[k])
    c = Contract(task="classification", modalities=("OT",), channels="grey", size=(12, 12),
                 classes=("a", "b"), positive_class=1)
    save_model(tmp_path / "m.pt", name="m", arch="small_cnn", arch_kwargs={"channels": [4, 8]}, contract=c,
               n_out=2, states=[state], temperature=1.0, threshold=0.5, info={})
    raw = torch.load(tmp_path / "m.pt", weights_only=True)["members"][0]
    for k, v in raw.items():
        if k.endswith(("running_mean", "running_var")):
            assert v.dtype == torch.float32 and torch.equal(v, state[k]), k
        elif v.is_floating_point():
            assert v.dtype == torch.float16, k
    loaded = load(tmp_path / "m.pt").members[0]
    assert torch.equal(loaded.state_dict()["features.0.conv.unit0.adn.N.running_mean"],
                       state["features.0.conv.unit0.adn.N.running_mean"])


def test_refresh_explanation_puts_the_section_back_in_place(data_dir: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    import medimg.models.card as card

    real = (docs_dir() / "cxr-pneumonia.md").read_text()
    head, rest = real.split("## Explanation check", 1)
    stripped = head + "## " + rest.split("\n## ", 1)[1]
    assert "## Explanation check" not in stripped
    monkeypatch.setattr(card, "docs_dir", lambda: tmp_path)
    (tmp_path / "cxr-pneumonia.md").write_text(stripped)
    out = card.refresh_explanation("cxr-pneumonia")
    again = out.read_text()
    assert again.index("## Explanation check") < again.index("## Against the bars")
    assert card_explanation(again) == pytest.approx(card_explanation(real), abs=0.005)
    assert card_metrics(again) == card_metrics(real)
    card.refresh_explanation("cxr-pneumonia")
    assert out.read_text() == again  # measured again in place: nothing added twice
