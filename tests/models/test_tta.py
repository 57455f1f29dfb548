"""Test-time augmentation: views are exact and invertible, and a model with TTA averages exactly the
members' outputs over those views (classification and sliding-window segmentation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.models.contract import Contract
from medimg.models.registry import ModelError, load, model_from_states, save_model
from medimg.models.tta import TTA_NAMES, apply, augment_problem, exact_views, invert, views
from medimg.train.config import load_config
from medimg.train.loop import train


@pytest.mark.parametrize("name", sorted(TTA_NAMES))
def test_every_exact_view_inverts_exactly_and_views_are_distinct(name: str) -> None:
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    seen = set()
    for v in views(name):
        y = apply(x, v)
        if v.exact:
            assert torch.equal(invert(y, v), x)
        else:
            with pytest.raises(ValueError, match="warped"):
                invert(y, v)
        seen.add(y.numpy().tobytes() + bytes(str(y.shape), "ascii"))
    want = {"none": 1, "flip_x": 2, "flip_xy": 4, "dihedral": 8, "flip_x_jitter": 10}[name]
    assert len(seen) == len(views(name)) == want
    assert len(exact_views(name)) == {"flip_x_jitter": 2}.get(name, want)


def test_jitter_views_are_the_named_shifts_turns_and_zooms() -> None:
    # a ramp along x: a shift of 4% of 25 pixels is one pixel exactly, borders repeated
    x = torch.arange(25, dtype=torch.float32).repeat(1, 1, 25, 1)
    # (a positive shift samples further along the axis: the content moves back, as in augment.apply)
    left, right = (apply(x, v)[0, 0] for v in views("flip_x_jitter")[2:4])
    assert torch.allclose(left[:, :-1], x[0, 0, :, 1:], atol=1e-4) and torch.allclose(left[:, -1], x[0, 0, :, -1])
    assert torch.allclose(right[:, 1:], x[0, 0, :, :-1], atol=1e-4) and torch.allclose(right[:, 0], x[0, 0, :, 0])
    up = apply(x.transpose(-1, -2), views("flip_x_jitter")[4])[0, 0]
    assert torch.allclose(up[:-1], x[0, 0, :, 1:].T, atol=1e-4)
    # a centred bright square: zoom 1.1 makes it bigger, 0.9 smaller; a turn keeps its mass
    sq = torch.zeros(1, 1, 41, 41)
    sq[..., 15:26, 15:26] = 1.0
    out, zin, zout = (apply(sq, v)[0, 0] for v in (views("flip_x_jitter")[6], *views("flip_x_jitter")[8:]))
    assert abs(float(out.sum()) - 121) < 3  # turned by 10 degrees, area kept
    assert not torch.equal(out, sq[0, 0])
    assert float(zout.sum()) > 121 * 1.15 and float(zin.sum()) < 121 * 0.87


def test_tta_must_lie_inside_the_training_augmentation() -> None:
    assert augment_problem("flip_x_jitter", {"rotate": 15, "scale": 0.15, "translate": 0.1,
                                             "flip_x": 0.5}, "classification") is None
    msg = augment_problem("flip_x_jitter", {"rotate": 5, "flip_x": 0.5}, "classification")
    assert msg is not None and "rotate >= 10, scale >= 0.1, translate >= 0.04" in msg
    assert "flip_y" in str(augment_problem("flip_xy", {"flip_x": 0.5}, "classification"))
    assert augment_problem("dihedral", {"flip_x": 0.5, "flip_y": 0.5, "rot90": True}, "segmentation") is None
    assert "classification only" in str(augment_problem(
        "flip_x_jitter", {"rotate": 15, "scale": 0.15, "translate": 0.1, "flip_x": 0.5}, "segmentation"))
    assert augment_problem("none", {}, "segmentation") is None


def test_flip_views_are_the_named_mirror_images() -> None:
    x = torch.arange(12, dtype=torch.float32).reshape(1, 1, 3, 4)
    got = [apply(x, v)[0, 0] for v in views("flip_xy")]
    want = [x[0, 0], x[0, 0].flip(1), x[0, 0].flip(0), x[0, 0].flip(0).flip(1)]
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown test-time augmentation 'mirror'.*flip_x"):
        views("mirror")


def _classifier(tta: str):
    torch.manual_seed(0)
    c = Contract(task="classification", modalities=("OT",), channels="grey", size=(12, 12),
                 classes=("a", "b"), positive_class=1)
    from medimg.models.nets import build

    states = [build("small_cnn", 1, 2, channels=[4, 8]).state_dict() for _ in range(2)]
    return model_from_states("t", "small_cnn", {"channels": [4, 8]}, c, 2, states,
                             temperature=1.7, tta=tta)


def test_classifier_probabilities_average_members_and_views() -> None:
    m = _classifier("flip_x")
    x = torch.rand(5, 1, 12, 12)
    with torch.inference_mode():
        want = torch.stack([torch.softmax(net(v) / 1.7, 1) for net in m.members
                            for v in (x, x.flip(-1))]).mean(0).numpy()
    assert np.allclose(m.predict_proba(x.numpy()), want, atol=1e-6)
    plain = _classifier("none")
    assert not np.allclose(plain.predict_proba(x.numpy()), want, atol=1e-4)  # TTA changes the output


def test_segmentation_views_are_turned_back_before_averaging(tmp_path: Path) -> None:
    from monai.inferers import sliding_window_inference

    from medimg.models.nets import build

    torch.manual_seed(1)
    c = Contract(task="segmentation", modalities=("OT",), channels="grey", size=None)
    net = build("unet", 1, 1, channels=[4, 8])
    save_model(tmp_path / "s.pt", name="s", arch="unet", arch_kwargs={"channels": [4, 8]}, contract=c,
               n_out=1, states=[net.state_dict()], temperature=1.0, threshold=0.5,
               info={"roi_size": [16, 16]}, tta="dihedral")
    m = load(tmp_path / "s.pt")
    assert m.tta == "dihedral"
    x = torch.rand(1, 1, 20, 28)
    member = m.members[0]
    with torch.inference_mode():
        acc = torch.zeros(20, 28)
        for v in views("dihedral"):
            z = sliding_window_inference(apply(x, v), (16, 16), 8, member, overlap=0.25, mode="gaussian")
            acc += torch.sigmoid(invert(z, v)[0, 0])
    got = m.segment_proba(x[0].numpy())
    assert got.shape == (20, 28)
    assert np.allclose(got, (acc / 8).numpy(), atol=1e-5)


def test_model_file_with_an_unknown_tta_is_refused(tmp_path: Path) -> None:
    m = _classifier("none")
    save_model(tmp_path / "bad.pt", name="bad", arch="small_cnn", arch_kwargs={"channels": [4, 8]},
               contract=m.contract, n_out=2, states=[n.state_dict() for n in m.members],
               temperature=1.0, threshold=0.5, info={}, tta="sideways")
    with pytest.raises(ModelError, match="bad.pt: model file lacks or has a bad entry.*sideways"):
        load(tmp_path / "bad.pt")


def _tiny_config(data_dir: Path, **tables: dict) -> dict:
    """A one-epoch BreastMNIST classification config with the given extra tables."""
    return load_config({"name": "x", "data": {"path": str(data_dir / "us" / "breastmnist.npz"),
                                              "size": [28, 28], "limit": 32},
                        "model": {"arch": "small_cnn", "channels": [4]}, "train": {"epochs": 1}, **tables})


def test_config_with_an_unknown_tta_is_one_clear_error(data_dir: Path, tmp_path: Path) -> None:
    from medimg.errors import InputError

    cfg = _tiny_config(data_dir, inference={"tta": "sideways"})
    with pytest.raises(InputError, match=r"\[inference\] tta: unknown test-time augmentation"):
        train(cfg, tmp_path / "run", progress=False)


def test_gradcam_of_a_tta_model_averages_the_views_turned_back() -> None:
    from medimg.models.explain import gradcam

    m, plain = _classifier("flip_x"), _classifier("none")
    x = np.random.default_rng(0).random((1, 12, 12)).astype(np.float32)
    got = gradcam(m, x, normalise=False)
    want = (gradcam(plain, x, normalise=False)
            + gradcam(plain, x[:, :, ::-1].copy(), normalise=False)[:, ::-1]) / 2
    scale = float(got.max())
    assert got.shape == (12, 12) and scale > 0 and np.allclose(got, want, atol=1e-5 * scale)
    assert not np.allclose(got, gradcam(plain, x, normalise=False), atol=1e-2 * scale)
    assert np.allclose(gradcam(m, x), got / got.max(), atol=1e-6)


def test_segmentation_model_file_with_warped_views_is_refused(tmp_path: Path) -> None:
    from medimg.models.nets import build

    c = Contract(task="segmentation", modalities=("OT",), channels="grey", size=None)
    save_model(tmp_path / "s.pt", name="s", arch="unet", arch_kwargs={"channels": [4, 8]}, contract=c,
               n_out=1, states=[build("unet", 1, 1, channels=[4, 8]).state_dict()], temperature=1.0,
               threshold=0.5, info={"roi_size": [16, 16]}, tta="flip_x_jitter")
    with pytest.raises(ModelError, match="s.pt: model file .*'flip_x_jitter' has warped views"):
        load(tmp_path / "s.pt")


def test_config_whose_tta_the_augmentation_does_not_cover_is_refused(data_dir: Path, tmp_path: Path) -> None:
    from medimg.errors import InputError

    cfg = _tiny_config(data_dir, augment={"flip_x": 0.5, "rotate": 5}, inference={"tta": "flip_x_jitter"})
    with pytest.raises(InputError, match=r"\[inference\] tta: 'flip_x_jitter' shows the network views "
                                         r"it was not trained on; .*rotate >= 10"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "model.pt").exists()


def test_jitter_classifier_averages_all_ten_views_and_gradcam_the_exact_ones() -> None:
    from medimg.models.explain import gradcam

    m, flip = _classifier("flip_x_jitter"), _classifier("flip_x")
    x = torch.rand(4, 1, 12, 12)
    with torch.inference_mode():
        want = torch.stack([torch.softmax(net(apply(x, v)) / 1.7, 1) for net in m.members
                            for v in views("flip_x_jitter")]).mean(0).numpy()
    got = m.predict_proba(x.numpy())
    assert np.allclose(got, want, atol=1e-6)
    assert not np.allclose(got, flip.predict_proba(x.numpy()), atol=1e-4)
    one = x[0].numpy()
    assert np.allclose(gradcam(m, one), gradcam(flip, one), atol=1e-6)
