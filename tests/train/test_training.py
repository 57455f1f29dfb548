"""The training machinery on a small real subset: loss falls, resume is exact, seeds reproduce,
unseen dataset layouts (class folders, CSV manifests) train without code changes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.cli import main
from medimg.errors import InputError
from medimg.train.config import load_config
from medimg.train.data import load_split
from medimg.train.loop import contract_from_config, fit_member, train


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cfg(data_dir: Path, **train: object) -> dict:
    raw = {
        "name": "tiny", "task": "classification", "seeds": [3],
        "data": {"path": str(data_dir / "us" / "breastmnist.npz"), "modalities": ["US"],
                 "size": [28, 28], "limit": 96, "positive_class": 0},
        "model": {"arch": "small_cnn", "channels": [4, 8], "dropout": 0.1},
        "train": {"epochs": 3, "batch_size": 32, "lr": 1e-2, **train},
        "augment": {"rotate": 5, "flip_x": 0.5, "contrast": 0.1},
    }
    return load_config(raw)


def _data(cfg: dict):
    c = contract_from_config(cfg)
    return c, load_split(cfg["data"], "classification", "train", c), load_split(
        cfg["data"], "classification", "val", c)


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_loss_decreases(data_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(data_dir, epochs=6)
    cfg["augment"] = {}
    c, tr, va = _data(cfg)
    res = fit_member(cfg, c, tr, va, tmp_path / "m", 3, progress=False)
    losses = [r["train_loss"] for r in res["history"]]
    assert losses[-1] < losses[0]
    log = (tmp_path / "m" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,train_loss") and len(log) == 7


def test_seeded_runs_reproduce_and_resume_is_exact(data_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(data_dir)
    c, tr, va = _data(cfg)
    a = fit_member(cfg, c, tr, va, tmp_path / "a", 3, progress=False)
    b = fit_member(cfg, c, tr, va, tmp_path / "b", 3, progress=False)
    _same(a["last_state"], b["last_state"])
    # Interrupted after epoch 1 of 3, then resumed: the same weights as the uninterrupted run.
    r1 = tmp_path / "r1"
    _interrupted(cfg, c, tr, va, r1, stop_after=1)
    resumed = fit_member(cfg, c, tr, va, r1, 3, progress=False)
    _same(resumed["last_state"], a["last_state"])
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    # every augmentation parameter drawn was recorded
    rec = np.load(r1 / "augment" / "epoch-001.npz")
    assert set(rec.files) >= {"angle", "flip_x", "contrast"} and len(rec["angle"]) == len(tr)


def _interrupted(cfg, c, tr, va, run_dir, stop_after):
    """Run the 3-epoch schedule but stop after ``stop_after`` epochs (a crash between epochs)."""
    calls = {"n": 0}
    real_save = torch.save

    class Stop(Exception):
        pass

    def save(obj, path, *a, **k):
        real_save(obj, path, *a, **k)
        if str(path).endswith("checkpoint.pt"):
            calls["n"] += 1
            if calls["n"] >= stop_after:
                raise Stop

    try:
        torch.save = save
        with pytest.raises(Stop):
            fit_member(cfg, c, tr, va, run_dir, 3, progress=False)
    finally:
        torch.save = real_save


def test_train_writes_model_plots_and_evaluates(data_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(data_dir, epochs=2)
    cfg["seeds"] = [0, 1]
    res = train(cfg, tmp_path / "run", progress=False)
    for name in ("model.pt", "curves.png", "roc_val.png", "calibration_val.png", "val_metrics.json"):
        assert (tmp_path / "run" / name).is_file(), name
    v = res["val_metrics"]
    assert 0 <= v["auc"] <= 1 and v["auc_ci"][0] <= v["auc"] <= v["auc_ci"][1]
    assert res["temperature"] > 0


def _write_class_folders(data_dir: Path, root: Path, n: int = 40) -> None:
    from PIL import Image

    d = np.load(data_dir / "us" / "breastmnist.npz")
    for i in range(n):
        label = int(d["train_labels"][i, 0])
        sub = root / ("malignant" if label == 0 else "benign")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(d["train_images"][i]).resize((40, 40)).save(sub / f"img{i:03d}.png")


def test_cli_trains_on_unseen_class_folders(data_dir: Path, tmp_path: Path, capsys) -> None:
    _write_class_folders(data_dir, tmp_path / "imgs", 60)
    cfg = tmp_path / "folder.toml"
    cfg.write_text(f"""
name = "folder-test"
[data]
path = "{tmp_path / 'imgs'}"
size = [28, 28]
val_fraction = 0.2
[model]
arch = "small_cnn"
channels = [4, 8]
[train]
epochs = 1
batch_size = 16
""")
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "-q"]) == 0
    assert main(["evaluate", str(tmp_path / "run" / "model.pt"), str(tmp_path / "imgs"), "--json",
                 "--boot", "50"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 60 and {"auc", "auc_ci", "sensitivity", "specificity_ci"} <= out.keys()


def test_csv_manifest(data_dir: Path, tmp_path: Path) -> None:
    _write_class_folders(data_dir, tmp_path / "imgs", 30)
    rows = [{"image": str(p.relative_to(tmp_path)), "label": p.parent.name,
             "split": "train" if i % 4 else "val"}
            for i, p in enumerate(sorted((tmp_path / "imgs").rglob("*.png")))]
    with (tmp_path / "m.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    cfg = load_config({"name": "csv", "data": {"path": str(tmp_path / "m.csv"), "size": [28, 28]},
                       "model": {"arch": "small_cnn", "channels": [4]}, "train": {"epochs": 1}})
    c = contract_from_config(cfg)
    tr = load_split(cfg["data"], "classification", "train", c)
    assert tr.x.shape[1:] == (1, 28, 28) and sorted(set(tr.classes)) == ["benign", "malignant"]


def test_config_naming_a_missing_dataset_is_one_clear_error(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('name = "x"\n[data]\npath = "no/such/data.npz"\nsize = [28, 28]\n')
    with pytest.raises(InputError, match="does not exist"):
        load_config(cfg)
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no/such/data.npz" in err


def test_segmentation_from_an_unseen_images_and_masks_folder(data_dir: Path, tmp_path: Path,
                                                             capsys) -> None:
    from PIL import Image

    from medimg.io import read

    drive = data_dir / "retina" / "drive" / "training"
    for d in ("images", "masks"):
        (tmp_path / "seg" / d).mkdir(parents=True)
    for i in range(21, 27):  # 128x128 crops of six DRIVE training images, as PNG
        img = read(drive / "images" / f"{i}_training.tif").array[0][200:328, 200:328]
        m = read(drive / "1st_manual" / f"{i}_manual1.gif").array[0][200:328, 200:328]
        Image.fromarray(img).save(tmp_path / "seg" / "images" / f"case{i}.png")
        Image.fromarray(m).save(tmp_path / "seg" / "masks" / f"case{i}_label.png")
    cfg = tmp_path / "seg.toml"
    cfg.write_text(f"""
name = "seg-test"
task = "segmentation"
[data]
path = "{tmp_path / 'seg'}"
channels = "rgb"
normalise = "zscore"
val_fraction = 0.34
[model]
arch = "unet"
channels = [4, 8, 16]
[train]
epochs = 2
steps_per_epoch = 3
batch_size = 4
patch_size = [32, 32]
roi_size = [64, 64]
""")
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "-q"]) == 0
    assert main(["evaluate", str(tmp_path / "run" / "model.pt"), str(tmp_path / "seg"), "--json",
                 "--boot", "20"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 6 and {"f1", "f1_ci", "auc", "auc_ci", "dice", "hd95"} <= out.keys()


def test_assign_folds_is_stratified_seeded_and_covers_every_sample(data_dir: Path) -> None:
    from medimg.train.loop import assign_folds

    cfg = _cfg(data_dir)
    cfg["data"]["limit"] = None
    _, tr, _ = _data(cfg)
    f = assign_folds(tr, 5, seed=0)
    assert set(np.unique(f)) == {0, 1, 2, 3, 4}
    for cls in np.unique(tr.y):  # each class spread evenly: fold sizes differ by at most one
        counts = np.bincount(f[tr.y == cls], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(f, assign_folds(tr, 5, seed=0))
    assert not np.array_equal(f, assign_folds(tr, 5, seed=1))
    with pytest.raises(InputError, match="train.folds = 1 does not fit"):
        assign_folds(tr, 1)


def test_cross_validated_ensemble_calibrates_on_out_of_fold_predictions(data_dir: Path,
                                                                         tmp_path: Path) -> None:
    from medimg.models.registry import load
    from medimg.train.loop import _concat, assign_folds
    from medimg.train.metrics import auc, softmax

    cfg = _cfg(data_dir, epochs=2, folds=3, select="last")
    cfg["inference"] = {"tta": "flip_x"}
    res = train(cfg, tmp_path / "cv", progress=False)
    m = load(tmp_path / "cv" / "model.pt")
    assert len(m.members) == 3 and m.tta == "flip_x"
    assert m.info["folds"] == 3 and m.info["operating_point"]["chosen_on"] == "out-of-fold predictions of 3 folds"
    # Recompute the out-of-fold figure by hand: fold k's samples through fold k's member only.
    c, tr, va = _data(cfg)
    pool = _concat(tr, va)
    fold = assign_folds(pool, 3, 0)
    assert res["val_metrics"]["n"] == len(pool) == m.info["n_val"]
    p = np.zeros(len(pool))
    for k, net in enumerate(m.members):
        x = torch.from_numpy(pool.x[fold == k])
        with torch.inference_mode():
            z = torch.stack([net(x), net(x.flip(-1))]).numpy()
        p[fold == k] = softmax(z, m.temperature).mean(0)[:, 0]
    assert res["val_metrics"]["auc"] == pytest.approx(auc(pool.y == 0, p), abs=1e-9)
    # each member's log shows it was validated on its own fold (a third of the pool)
    assert (tmp_path / "cv" / "fold-2-seed-3" / "log.csv").is_file()


def test_segmentation_loss_is_chosen_by_the_config(tmp_path: Path) -> None:
    from medimg.train.data import SegData

    rng = np.random.default_rng(0)
    imgs = [rng.random((1, 48, 48), dtype=np.float32) for _ in range(3)]
    masks = [(i[0] > 0.7).astype(np.uint8) for i in imgs]
    data = SegData(imgs, masks, [np.ones((48, 48), bool)] * 3)
    raw = {"name": "s", "task": "segmentation", "data": {"path": str(tmp_path), "channels": "grey"},
           "model": {"arch": "unet", "channels": [4, 8]},
           "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "patch_size": [32, 32]}}
    losses = {}
    for name in ("dice_bce", "bce"):
        cfg = load_config({**raw, "train": {**raw["train"], "loss": name}})
        res = fit_member(cfg, contract_from_config(cfg), data, data, tmp_path / name, 0, progress=False)
        losses[name] = res["history"][0]["train_loss"]
    # same seed, same batches: Dice + BCE is the BCE plus a positive Dice term
    assert losses["bce"] < losses["dice_bce"]
    bad = load_config({**raw, "train": {**raw["train"], "loss": "focal"}})
    with pytest.raises(InputError, match="train.loss 'focal' is not a segmentation loss"):
        fit_member(bad, contract_from_config(bad), data, data, tmp_path / "bad", 0, progress=False)
