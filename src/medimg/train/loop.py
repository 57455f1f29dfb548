"""Training loops: one member per seed, checkpoints that resume exactly, an ensemble at the end.

Reproducibility: every epoch draws its shuffling, augmentation and dropout from generators seeded by
``(seed, epoch)``, so a run resumed from its checkpoint after epoch ``e`` continues exactly as an
uninterrupted run would (same weights, bit for bit, on the same machine and thread count).

Output folder (``OUT``):

* ``member-SEED/checkpoint.pt`` (last epoch: weights, optimiser, scheduler, history, best weights),
  ``member-SEED/log.csv``, ``member-SEED/augment/epoch-NNN.npz`` (every augmentation parameter drawn);
* ``model.pt``: the ensemble (float16 weights, contract, temperature, operating point);
* ``val_metrics.json``, ``training.json`` (config, times, command) and PNG plots: ``curves.png``,
  ``roc_val.png``, ``calibration_val.png`` (classification).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.contract import Contract
from . import augment as aug
from .data import ClassData, SegData, load_split
from .metrics import (
    auc,
    choose_threshold,
    classification_metrics,
    fit_temperature,
    segmentation_metrics,
    softmax,
)

__all__ = ["assign_folds", "contract_from_config", "fit_member", "train"]


def contract_from_config(cfg: dict[str, Any]) -> Contract:
    d = cfg["data"]
    size = tuple(d["size"]) if d.get("size") else None
    if cfg["task"] == "classification" and size is None:
        raise InputError(cfg.get("source"), "a classification config needs data.size",
                         "add size = [28, 28] (the input the network takes)")
    mods = d.get("modalities") or [d.get("modality", "OT")]
    return Contract(task=cfg["task"], modalities=tuple(mods), channels=d.get("channels", "grey"),
                    size=size, normalise=d.get("normalise", "unit"),
                    classes=tuple(d.get("classes") or ()), positive_class=int(d.get("positive_class", 1)),
                    notes=str(d.get("notes", "")))


def _seed_all(seed: int, epoch: int) -> np.random.Generator:
    import torch

    torch.manual_seed(seed * 100_003 + epoch)
    return np.random.default_rng([seed, epoch])


def _n_out(cfg: dict[str, Any], data: ClassData | SegData) -> int:
    if cfg["task"] == "segmentation":
        return 1
    return max(len(data.classes), 2) if isinstance(data, ClassData) else 2


def _init_from(net: Any, source: str) -> dict[str, Any]:
    """Copy every weight of matching name and shape from a model file or shipped model (transfer)."""
    import torch

    from ..models.registry import load

    src = load(source)
    state = src.members[0].state_dict()
    own = net.state_dict()
    copied = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    own.update({k: state[k].to(own[k].dtype) for k in copied})
    net.load_state_dict(own)
    del torch
    return {"init_from": str(source), "copied_tensors": len(copied), "total_tensors": len(own)}


def _class_batches(data: ClassData, bs: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(len(data))
    return [order[i:i + bs] for i in range(0, len(order), bs) if len(order[i:i + bs]) > 1]


def _seg_batch(data: SegData, bs: int, patch: tuple[int, int], rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    xs, ms = [], []
    for _ in range(bs):
        i = int(rng.integers(len(data)))
        img, m, fov = data.images[i], data.masks[i], data.fovs[i]
        h, w = m.shape
        ph, pw = min(patch[0], h), min(patch[1], w)
        for _try in range(10):  # centre the patch inside the field of view
            y0 = int(rng.integers(0, h - ph + 1))
            x0 = int(rng.integers(0, w - pw + 1))
            if fov[y0 + ph // 2, x0 + pw // 2]:
                break
        xs.append(img[:, y0:y0 + ph, x0:x0 + pw])
        ms.append(m[None, y0:y0 + ph, x0:x0 + pw])
    return np.stack(xs), np.stack(ms).astype(np.float32)


def _seg_probs(net: Any, data: SegData, roi: tuple[int, int]) -> list[np.ndarray]:
    import torch
    from monai.inferers import sliding_window_inference

    net.eval()
    out = []
    with torch.inference_mode():
        for img in data.images:
            z: Any = sliding_window_inference(torch.from_numpy(img)[None], roi, 8, net,
                                              overlap=0.25, mode="gaussian")
            out.append(torch.sigmoid(z[0, 0]).numpy())
    return out


def _class_logits(net: Any, x: np.ndarray, bs: int = 512) -> np.ndarray:
    import torch

    net.eval()
    with torch.inference_mode():
        return np.concatenate([net(torch.from_numpy(x[i:i + bs])).numpy()
                               for i in range(0, len(x), bs)])


class _Bar:
    """A rich progress bar on a terminal, nothing otherwise (the log file has the figures)."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.p: Any = None
        if enabled and sys.stderr.isatty():
            from rich.progress import Progress

            self.p = Progress(transient=True)
            self.p.start()
            self.task = self.p.add_task(label, total=total)

    def advance(self, n: int = 1) -> None:
        if self.p is not None:
            self.p.advance(self.task, n)

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()


def fit_member(cfg: dict[str, Any], contract: Contract, train_data: ClassData | SegData,
               val_data: ClassData | SegData, run_dir: Path, seed: int, *, resume: bool = True,
               progress: bool = True, epochs: int | None = None) -> dict[str, Any]:
    """Train one network; returns its best weights (by the validation figure) and its history."""
    import torch

    from ..models.nets import build

    t = cfg["train"]
    seg = cfg["task"] == "segmentation"
    epochs = int(epochs if epochs is not None else t["epochs"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "augment").mkdir(exist_ok=True)
    torch.manual_seed(seed)
    model_kw = {k: v for k, v in cfg["model"].items() if k != "arch"}
    net = build(cfg["model"]["arch"], contract.in_channels, _n_out(cfg, train_data), **model_kw)
    transfer = _init_from(net, t["init_from"]) if t.get("init_from") else None
    bs = int(t["batch_size"])
    steps = int(t["steps_per_epoch"]) if seg else len(_class_batches(train_data, bs, np.random.default_rng(0)))  # type: ignore[arg-type]
    opt = torch.optim.AdamW(net.parameters(), lr=float(t["lr"]), weight_decay=float(t["weight_decay"]))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(t["lr"]), total_steps=epochs * steps,
                                                pct_start=0.15)
    ckpt = run_dir / "checkpoint.pt"
    start, history, best, best_state = 0, [], -np.inf, None
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, history = int(state["epoch"]) + 1, json.loads(state["history"])
        best, best_state = float(state["best"]), state["best_model"]
    if seg:
        from monai.losses import DiceLoss

        seg_loss = str(t.get("loss") or "dice_bce")
        if seg_loss not in ("dice_bce", "bce", "ce"):  # "ce", the default, means dice_bce here
            raise InputError(cfg.get("source"), f"train.loss {seg_loss!r} is not a segmentation loss",
                             'use "dice_bce" (Dice + binary cross-entropy) or "bce"')
        dice_loss = DiceLoss(sigmoid=True)
        bce = torch.nn.BCEWithLogitsLoss()
    else:
        ce = torch.nn.CrossEntropyLoss(label_smoothing=float(t["label_smoothing"]))
    patch = tuple(int(v) for v in t["patch_size"])
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        rng = _seed_all(seed, epoch)
        net.train()
        losses, drawn = [], []
        bar = _Bar(progress, steps, f"seed {seed} epoch {epoch + 1}/{epochs}")
        batches = None if seg else _class_batches(train_data, bs, rng)  # type: ignore[arg-type]
        for step in range(steps):
            if seg:
                xb_np, mb_np = _seg_batch(train_data, bs, patch, rng)  # type: ignore[arg-type]
                xb, mb = torch.from_numpy(xb_np), torch.from_numpy(mb_np)
            else:
                idx = batches[step]  # type: ignore[index]
                xb = torch.from_numpy(train_data.x[idx])  # type: ignore[union-attr]
                yb = torch.from_numpy(train_data.y[idx])  # type: ignore[union-attr]
                mb = None
            p = aug.make_params(cfg["augment"], len(xb), rng)
            drawn.append(p)
            xb, mb = aug.apply(xb, p, mb)
            if seg:
                out = net(xb)
                loss = bce(out, mb) if seg_loss == "bce" else dice_loss(out, mb) + bce(out, mb)
            else:
                xb, partner, lam = aug.mix(xb, p)
                out = net(xb)
                loss = ce(out, yb) if lam >= 1.0 else lam * ce(out, yb) + (1 - lam) * ce(out, yb[partner])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.item()))
            bar.advance()
        bar.close()
        record: dict[str, Any] = {k: np.concatenate([d[k] for d in drawn]) for k in aug.PARAM_NAMES}
        np.savez_compressed(run_dir / "augment" / f"epoch-{epoch:03d}.npz", **record)
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                               "lr": float(sched.get_last_lr()[0])}
        if (epoch + 1) % int(t.get("val_every", 1)) == 0 or epoch + 1 == epochs:
            if seg:
                probs = _seg_probs(net, val_data, patch)  # type: ignore[arg-type]
                m = segmentation_metrics(probs, val_data.masks, val_data.fovs, n_boot=0,  # type: ignore[union-attr]
                                         hd95=False)
                row.update(val_f1=m["f1"], val_auc=m["auc"])
                score = m["f1"] if t["select"] in ("f1", "dice") else m["auc"]
            else:
                z = _class_logits(net, val_data.x)  # type: ignore[union-attr]
                pr = softmax(z)
                yv = val_data.y  # type: ignore[union-attr]
                row["val_loss"] = float(-np.mean(np.log(np.clip(pr[np.arange(len(yv)), yv], 1e-12, 1))))
                pos = contract.positive_class
                row["val_auc"] = auc(yv == pos, pr[:, pos]) if pr.shape[1] == 2 else float(
                    np.mean(pr.argmax(1) == yv))
                row["val_accuracy"] = float(np.mean(pr.argmax(1) == yv))
                score = -row["val_loss"] if t["select"] == "loss" else row["val_auc"]
            if score > best and t["select"] != "last":
                best = float(score)
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                row["best"] = 1
        row["seconds"] = round(time.perf_counter() - t0, 2)
        history.append(row)
        _append_log(run_dir / "log.csv", row)
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "epoch": epoch, "history": json.dumps(history),
                    "best": best, "best_model": best_state}, ckpt)
    return {"seed": seed, "best_state": best_state, "last_state": net.state_dict(),
            "history": history, "best": best, "transfer": transfer, "first_new": start}


_LOG_FIELDS = ["epoch", "train_loss", "val_loss", "val_auc", "val_accuracy", "val_f1", "lr", "best",
               "seconds"]


def _append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=_LOG_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def _concat(a: ClassData | SegData, b: ClassData | SegData) -> ClassData | SegData:
    if isinstance(a, ClassData) and isinstance(b, ClassData):
        return ClassData(np.concatenate([a.x, b.x]), np.concatenate([a.y, b.y]), a.classes,
                         list(a.ids) + list(b.ids))
    assert isinstance(a, SegData) and isinstance(b, SegData)
    return SegData(a.images + b.images, a.masks + b.masks, a.fovs + b.fovs, list(a.ids) + list(b.ids))


def _subset(data: ClassData | SegData, idx: np.ndarray) -> ClassData | SegData:
    ids = [data.ids[i] for i in idx] if data.ids else []
    if isinstance(data, ClassData):
        return ClassData(data.x[idx], data.y[idx], data.classes, ids)
    return SegData([data.images[i] for i in idx], [data.masks[i] for i in idx],
                   [data.fovs[i] for i in idx], ids)


def assign_folds(data: ClassData | SegData, k: int, seed: int = 0) -> np.ndarray:
    """The fold (0..k-1) of every sample: stratified by label for classification, seeded."""
    n = len(data)
    if k < 2 or k > n:
        raise InputError(None, f"train.folds = {k} does not fit {n} samples", "use 2 to 10 folds")
    rng = np.random.default_rng([seed, k])
    fold = np.empty(n, dtype=int)
    groups = [np.flatnonzero(data.y == c) for c in np.unique(data.y)] if isinstance(
        data, ClassData) else [np.arange(n)]
    offset = 0
    for g in groups:  # deal each class's shuffled samples round the folds, continuing the round
        g = rng.permutation(g)
        fold[g] = (np.arange(len(g)) + offset) % k
        offset += len(g)
    return fold


def train(cfg: dict[str, Any], out: str | Path, *, resume: bool = True, progress: bool = True,
          epochs: int | None = None, command: str = "") -> dict[str, Any]:
    """Train every member of ``cfg`` into ``out``; calibrate and choose the operating point on the
    validation split; write ``out/model.pt`` and the log and plots.  Returns the summary.

    With ``train.folds = K`` the train and validation splits are pooled and split into K folds
    (stratified, seeded by ``data.fold_seed``): one member per fold and seed, trained on the other
    folds with its best epoch chosen on its own fold; temperature and operating point are then fitted
    on the out-of-fold predictions of every pooled sample, and the validation figures are those
    out-of-fold figures.  ``[inference] tta`` names the test-time views (:mod:`medimg.models.tta`)
    used for calibration and stored with the model.
    """
    import torch

    from ..models.registry import model_from_states, save_model
    from ..models.tta import augment_problem
    from . import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    contract = contract_from_config(cfg)
    tta = str(cfg.get("inference", {}).get("tta") or "none")
    try:
        problem = augment_problem(tta, cfg.get("augment") or {}, cfg["task"])
    except ValueError as exc:
        problem = str(exc)
    if problem:
        raise InputError(cfg.get("source"), f"[inference] tta: {problem}")
    d = cfg["data"]
    train_data = load_split(d, cfg["task"], d["train_split"], contract)
    val_data = load_split(d, cfg["task"], d["val_split"], contract)
    if isinstance(train_data, ClassData) and not cfg["data"].get("classes"):
        contract = Contract(**{**contract.__dict__, "classes": tuple(train_data.classes)})
    n_out = _n_out(cfg, train_data)
    seeds = [int(s) for s in cfg["seeds"]]
    n_folds = int(cfg["train"].get("folds") or 0)
    members: list[dict[str, Any]] = []
    # groups: (indices into the calibration data, indices into members) predicted together
    groups: list[tuple[np.ndarray, list[int]]] = []
    if n_folds:
        calib_data = _concat(train_data, val_data)
        fold = assign_folds(calib_data, n_folds, int(d.get("fold_seed", 0)))
        for k in range(n_folds):
            inside, held = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            first = len(members)
            members += [fit_member(cfg, contract, _subset(calib_data, inside), _subset(calib_data, held),
                                   out / f"fold-{k}-seed-{s}", s, resume=resume, progress=progress,
                                   epochs=epochs) for s in seeds]
            groups.append((held, list(range(first, len(members)))))
    else:
        calib_data = val_data
        members = [fit_member(cfg, contract, train_data, val_data, out / f"member-{s}", s,
                              resume=resume, progress=progress, epochs=epochs) for s in seeds]
        groups.append((np.arange(len(val_data)), list(range(len(members)))))
    states = [m["best_state"] or m["last_state"] for m in members]
    arch_kw = {k: v for k, v in cfg["model"].items() if k != "arch"}
    cal = cfg["calibrate"]
    info: dict[str, Any] = {"config": {k: v for k, v in cfg.items() if k != "source"},
                            "seeds": seeds, "n_train": len(train_data) if not n_folds else len(calib_data),
                            "n_val": len(calib_data), "command": command, "folds": n_folds,
                            "tta": tta, "transfer": members[0]["transfer"]}

    def group_model(member_ids: list[int]) -> Any:
        return model_from_states(cfg["name"], cfg["model"]["arch"], arch_kw, contract, n_out,
                                 [states[i] for i in member_ids], tta=tta)

    if cfg["task"] == "classification":
        assert isinstance(calib_data, ClassData)
        z_parts = [(idx, group_model(ids).member_view_logits(torch.from_numpy(calib_data.x[idx]), 1024).numpy())
                   for idx, ids in groups]
        z = np.zeros((z_parts[0][1].shape[0], len(calib_data), n_out), dtype=np.float64)
        for idx, zi in z_parts:
            z[:, idx] = zi
        temp = fit_temperature(z, calib_data.y) if cal.get("temperature", True) else 1.0
        pv = softmax(z, temp).mean(axis=0)[:, contract.positive_class]
        yv = (calib_data.y == contract.positive_class).astype(int)
        thr = choose_threshold(yv, pv, cal["operating_point"], float(cal["target_sensitivity"]),
                               float(cal["threshold"]))
        val_metrics = classification_metrics(yv, pv, thr)
        chosen_on = f"out-of-fold predictions of {n_folds} folds" if n_folds else "validation split"
        info.update(operating_point={"rule": cal["operating_point"], "threshold": thr,
                                     "chosen_on": chosen_on,
                                     "target_sensitivity": cal.get("target_sensitivity")})
        label = "out-of-fold" if n_folds else "validation"
        plots.roc(yv, pv, out / "roc_val.png", f"{cfg['name']} ROC ({label})", thr)
        plots.calibration(yv, pv, out / "calibration_val.png", f"{cfg['name']} calibration ({label})")
    else:
        assert isinstance(calib_data, SegData)
        roi = tuple(int(v) for v in cfg["train"].get("roi_size", cfg["train"]["patch_size"]))
        info["roi_size"] = list(roi)
        temp = 1.0
        probs: list[Any] = [None] * len(calib_data)
        for idx, ids in groups:
            gm = group_model(ids)
            gm.info["roi_size"] = list(roi)
            for i in idx:
                probs[i] = gm.segment_proba(calib_data.images[i])
        if cal["operating_point"] == "fixed":
            thr = float(cal["threshold"])
        else:  # the threshold maximising pooled F1 on validation images
            cands = np.linspace(0.05, 0.95, 91)
            f1s = [segmentation_metrics(probs, calib_data.masks, calib_data.fovs, float(c), n_boot=0,
                                        hd95=False)["f1"] for c in cands]
            thr = float(cands[int(np.argmax(f1s))])
        val_metrics = segmentation_metrics(probs, calib_data.masks, calib_data.fovs, thr, n_boot=200,
                                           hd95=False)
        info.update(operating_point={"rule": "max F1 on validation" if cal["operating_point"] != "fixed"
                                     else "fixed", "threshold": thr,
                                     "chosen_on": "out-of-fold images" if n_folds else "validation images"})
    seconds = time.perf_counter() - t_start
    # Members may have been trained by earlier or parallel processes (resume): count the time of
    # every epoch as logged, plus this run's data loading and calibration.
    epoch_seconds = sum(float(r.get("seconds", 0.0)) for m in members for r in m["history"])
    info["training_seconds"] = round(epoch_seconds + seconds - sum(
        float(r.get("seconds", 0.0)) for m in members for r in m["history"][m["first_new"]:]), 1)
    info["epoch_seconds"] = round(epoch_seconds, 1)
    info["threads"] = torch.get_num_threads()
    info["val_metrics"] = val_metrics
    info["member_best_val"] = [m["best"] if np.isfinite(m["best"]) else None for m in members]
    save_model(out / "model.pt", name=cfg["name"], arch=cfg["model"]["arch"], arch_kwargs=arch_kw,
               contract=contract, n_out=n_out, states=states, temperature=temp, threshold=thr,
               info=info, tta=tta)
    plots.curves([m["history"] for m in members], out / "curves.png", cfg["name"])
    (out / "val_metrics.json").write_text(json.dumps(val_metrics, indent=2))
    (out / "training.json").write_text(json.dumps(info, indent=2, default=str))
    return {"model": str(out / "model.pt"), "val_metrics": val_metrics, "seconds": seconds,
            "temperature": temp, "threshold": thr}
