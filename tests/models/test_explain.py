"""Grad-CAM points at the evidence: a classifier trained to find a bright square gets a heatmap whose
peak lies on the square, and deleting the pixels it ranks highest lowers the probability faster than
deleting pixels at random. MONAI's default Grad-CAM post-processing inverts maps; medimg must not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medimg.models.contract import Contract
from medimg.models.explain import faithfulness, gradcam
from medimg.models.nets import build
from medimg.models.registry import model_from_states

SIZE, SIDE = 28, 6


def _squares(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise images; the odd ones carry a bright square at a random place. Returns x, y, corners."""
    x = np.clip(rng.normal(0.45, 0.12, (n, 1, SIZE, SIZE)), 0, 1).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.int64)
    corners = rng.integers(2, SIZE - SIDE - 2, (n, 2))
    for i in np.flatnonzero(y):
        r, c = corners[i]
        x[i, 0, r:r + SIDE, c:c + SIDE] = 0.95
    return x, y, corners


@pytest.fixture(scope="module")
def square_finder():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y, _ = _squares(256, rng)
    net = build("small_cnn", 1, 2, channels=[8, 16], dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    net.train()
    for _ in range(6):
        for i in range(0, len(x), 32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[i:i + 32]), yt[i:i + 32]).backward()
            opt.step()
    c = Contract(task="classification", modalities=("OT",), channels="grey", size=(SIZE, SIZE),
                 classes=("plain", "square"), positive_class=1)
    return model_from_states("squares", "small_cnn", {"channels": [8, 16], "dropout": 0.0}, c, 2,
                             [net.state_dict()], tta="flip_x")


def test_the_square_finder_learned_its_task(square_finder) -> None:
    x, y, _ = _squares(64, np.random.default_rng(1))
    acc = float(((square_finder.positive_proba(x) >= 0.5) == y).mean())
    assert acc >= 0.95


def test_heatmap_peaks_on_the_square(square_finder) -> None:
    x, y, corners = _squares(40, np.random.default_rng(2))
    hits = 0
    for i in np.flatnonzero(y):
        h = gradcam(square_finder, x[i])
        assert h.shape == (SIZE, SIZE) and h.min() >= 0 and h.max() == pytest.approx(1.0)
        r, c = np.unravel_index(int(np.argmax(h)), h.shape)
        r0, c0 = corners[i]
        hits += int(r0 - 2 <= r < r0 + SIDE + 2 and c0 - 2 <= c < c0 + SIDE + 2)
    assert hits >= 0.8 * y.sum()  # pointing game


def test_deleting_what_the_heatmap_ranks_first_lowers_the_probability_fastest(square_finder) -> None:
    x, y, _ = _squares(16, np.random.default_rng(3))
    pos = x[y == 1]
    f = faithfulness(square_finder, pos)
    assert f["n"] == 8 and f["steps"] == 10 and "blur" in f["baseline"]
    assert f["deletion"] < f["random_deletion"] - 0.1
    assert f["insertion"] > f["random_insertion"] + 0.1
    # the heatmap turned inside out (what MONAI's default post-processing gives) does worse than random
    inverted = np.stack([1 - gradcam(square_finder, xi) for xi in pos])
    g = faithfulness(square_finder, pos, inverted)
    assert g["deletion"] > f["random_deletion"] and g["random_deletion"] == pytest.approx(f["random_deletion"])


def test_monai_default_post_processing_inverts_and_medimg_keeps_raw_values(square_finder) -> None:
    from monai.visualize import GradCAM

    x, y, _ = _squares(2, np.random.default_rng(4))
    net = square_finder.members[0]
    t = torch.as_tensor(x[1:2]).requires_grad_(True)
    monai_default = GradCAM(nn_module=net, target_layers="features")(t, class_idx=1)[0, 0].detach().numpy()
    raw = gradcam(square_finder, x[1], normalise=False)
    mirrored = gradcam(square_finder, x[1, :, :, ::-1].copy(), normalise=False)[:, ::-1]
    assert np.allclose(raw, mirrored, atol=1e-5)  # flip_x TTA: both views averaged
    mine = gradcam(square_finder, x[1])
    assert np.allclose(mine, raw / raw.max(), atol=1e-6)
    # MONAI's default maps max -> 0: its darkest pixel is where the raw map of this one view peaks
    with torch.enable_grad():
        one = GradCAM(nn_module=net, target_layers="features", postprocessing=lambda m: m)(
            t, class_idx=1)[0, 0].detach().numpy()
    assert np.argmin(monai_default) == np.argmax(one)


def test_faithfulness_refuses_a_bad_batch_and_baseline(square_finder) -> None:
    with pytest.raises(ValueError, match=r"batch \(n, c, y, x\).*\(1, 28, 28\)"):
        faithfulness(square_finder, np.zeros((1, SIZE, SIZE), np.float32))
    with pytest.raises(ValueError, match="unknown faithfulness baseline 'zero'"):
        faithfulness(square_finder, np.zeros((1, 1, SIZE, SIZE), np.float32), baseline="zero")
