"""Inference speed of every shipped model on CPU, through medimg and through plain MONAI/torch.

    python benchmarks/inference.py [--data DIR] [--repeats N] [--threads T]

For each model the same images go through (a) medimg's wrapper (``Model.predict_proba`` for the
classifiers: contract checks, ensemble, temperature-scaled softmax average; ``Model.segment_proba``
for the vessel U-Net: MONAI sliding-window inference per member) and (b) the same networks built
directly with MONAI and driven by hand with the same calls (``torch.inference_mode``, softmax /
sigmoid, ``monai.inferers.sliding_window_inference``, and the model's test-time views written out
with ``torch.flip`` / ``torch.rot90``, the jitter views with ``affine_grid`` / ``grid_sample``); both give the same numbers (checked before timing).  Input
preparation (resizing, normalisation) is done once beforehand for both, so the figures compare the
inference path only; the classifiers run in batches of 128 images on both paths (medimg's default:
on 2 cores 1.4-1.6x faster than one batch of all 624).  The table shows images per second (best of N repeats, medimg and plain
measured alternately, to be robust to other load on a shared machine) and the ratio medimg / plain: the goal is >= 0.95 (the wrapper costs nothing measurable).  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_root, print_table  # noqa: E402

GOAL_RATIO = 0.95


def _plain_views(tta):
    """The model's test-time views written out by hand: (forward, back) pairs of torch calls."""
    import torch

    def mirror(t):
        return torch.flip(t, (-1,))

    def turn(k):
        return (lambda t: torch.rot90(t, k, (-2, -1))), (lambda t: torch.rot90(t, -k, (-2, -1)))

    same = (lambda t: t, lambda t: t)
    if tta in (None, "", "none"):
        return [same]
    if tta == "flip_x":
        return [same, (mirror, mirror)]
    half, back = turn(2)
    if tta == "flip_xy":
        return [same, (mirror, mirror), (lambda t: half(mirror(t)), lambda t: mirror(back(t))),
                (half, back)]
    if tta == "dihedral":
        out = []
        for k in range(4):
            fwd, bwd = turn(k)
            out += [(fwd, bwd), (lambda t, f=fwd: f(mirror(t)), lambda t, b=bwd: mirror(b(t)))]
        return out
    if tta == "flip_x_jitter":  # classification only: warped views are not turned back
        from medimg.models.tta import views

        return [same, (mirror, mirror)] + [(_warp(v.degrees, v.zoom, *v.shift), None)
                                           for v in views(tta) if not v.exact]
    raise SystemExit(f"benchmark does not know test-time augmentation {tta!r}")


def _warp(degrees, zoom, sx, sy):
    """A turn / zoom / shift (fraction of the size) by bilinear resampling, borders repeated."""
    import math

    import torch
    import torch.nn.functional as F

    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a) / zoom, -math.sin(a) / zoom, 2 * sx],
                          [math.sin(a) / zoom, math.cos(a) / zoom, 2 * sy]])

    def fwd(t):
        grid = F.affine_grid(theta.expand(t.shape[0], 2, 3), list(t.shape), align_corners=False)
        return F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return fwd


def _plain_nets(model):  # the same architecture and weights, straight from MONAI
    import torch
    from monai.networks.blocks import ResidualUnit
    from monai.networks.nets import ResNet, UNet

    nets = []
    for member in model.members:
        state = member.state_dict()
        if model.arch == "unet":
            ch = tuple(model.arch_kwargs["channels"])
            net = UNet(spatial_dims=2, in_channels=3, out_channels=1, channels=ch,
                       strides=(2,) * (len(ch) - 1), num_res_units=model.arch_kwargs["num_res_units"],
                       norm="batch")
        elif model.arch == "resnet":
            kw = model.arch_kwargs
            net = ResNet(block="basic", layers=list(kw["layers"]), block_inplanes=list(kw["block_inplanes"]),
                         spatial_dims=2, n_input_channels=model.contract.in_channels,
                         num_classes=state["fc.weight"].shape[0], conv1_t_size=3, conv1_t_stride=1,
                         no_max_pool=True)
        else:
            chs = model.arch_kwargs["channels"]
            blocks, c = [], model.contract.in_channels
            for i, ch in enumerate(chs):
                blocks.append(ResidualUnit(2, c, ch, strides=1 if i == 0 else 2, subunits=2,
                                           norm="batch", act="relu"))
                c = ch
            net = torch.nn.Module()
            net.features = torch.nn.Sequential(*blocks)
            net.pool = torch.nn.AdaptiveAvgPool2d(1)
            net.dropout = torch.nn.Dropout(0.0)
            net.fc = torch.nn.Linear(c, state["fc.weight"].shape[0])

            def forward(x, n=net):
                return n.fc(n.pool(n.features(x)).flatten(1))

            net.forward = forward
        net.load_state_dict(state)
        net.eval()
        nets.append(net)
    return nets


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _compare(wrapped, raw, repeats: int) -> tuple[float, float]:
    """Best time of each, measured alternately (a burst of load elsewhere hits both alike)."""
    wrapped()  # warm-up
    raw()
    tw, tr = [], []
    for _ in range(repeats):
        tw.append(_timed(wrapped))
        tr.append(_timed(raw))
    return min(tw), min(tr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch
    from monai.inferers import sliding_window_inference

    from medimg.models import available, load
    from medimg.models.registry import BATCH_IMAGES as BATCH  # both paths: predict_proba's default
    from medimg.train.data import load_split

    torch.set_num_threads(a.threads)
    root = data_root(a.data)
    rows = []
    for name, data, n_images in (("cxr-pneumonia", "xray/pneumoniamnist.npz", 624),
                                 ("us-breast", "us/breastmnist.npz", 156),
                                 ("retina-vessels", "retina/drive", 2)):
        if name not in available():
            rows.append([name, "-", "not shipped", "", "", ""])
            continue
        m = load(name)
        c = m.contract
        ds = load_split({"path": str(root / data), "source": "auto", "val_fraction": 0.15,
                         "classes": list(c.classes) or None, "limit": n_images}, c.task, "test", c)
        plain = _plain_nets(m)
        plain_views = _plain_views(m.tta)
        if c.task == "classification":
            x = ds.x

            def wrapped(x=x, m=m):
                return m.predict_proba(x, batch_size=BATCH)

            def raw(x=x, nets=plain, t=m.temperature, vs=plain_views):
                with torch.inference_mode():
                    out = []
                    for xt in torch.split(torch.from_numpy(x), BATCH):
                        seen = [f(xt) for f, _ in vs]  # each view made once
                        out.append(torch.stack([torch.softmax(n(xv) / t, 1) for n in nets
                                                for xv in seen]).mean(0))
                    return torch.cat(out).numpy()

            np.testing.assert_allclose(wrapped(), raw(), atol=1e-5)
            count = len(x)
        else:
            imgs = ds.images
            roi = tuple(m.info["roi_size"])

            def wrapped(imgs=imgs, m=m):
                return [m.segment_proba(i) for i in imgs]

            def raw(imgs=imgs, nets=plain, roi=roi, vs=plain_views):
                out = []
                with torch.inference_mode():
                    for i in imgs:
                        t = torch.from_numpy(i)[None]
                        acc = sum(torch.sigmoid(b(sliding_window_inference(
                            f(t), roi, 8, n, overlap=0.25, mode="gaussian"))[0, 0])
                            for n in nets for f, b in vs)
                        out.append((acc / (len(nets) * len(vs))).numpy())
                return out

            for got, want in zip(wrapped(), raw(), strict=True):
                np.testing.assert_allclose(got, want, atol=1e-5)
            count = len(imgs)
        tw, tr = _compare(wrapped, raw, a.repeats)
        rows.append([name, str(count), f"{count / tw:.1f}", f"{count / tr:.1f}", f"{tr / tw:.3f}",
                     "yes" if tr / tw >= GOAL_RATIO else "NO"])
    print(f"CPU inference, {a.threads} thread(s), best of {a.repeats} (images per second)")
    print_table(["model", "images", "medimg img/s", "plain MONAI img/s", "ratio", f">= {GOAL_RATIO}"],
                rows)


if __name__ == "__main__":
    main()
