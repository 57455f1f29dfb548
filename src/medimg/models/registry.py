"""Model files, the registry of shipped models, and inference with the input contract enforced.

A model file (``.pt``, written by ``medimg train``) holds plain tensors and JSON-able metadata and
is read with ``torch.load(weights_only=True)``: loading never runs code.  It holds one or more
ensemble members (float16 weights, float32 batch-norm statistics), the architecture, the input
contract, the test-time views (:mod:`.tta`), the temperature fitted on validation (or out-of-fold)
data and the operating point chosen there.

Shipped models live in ``medimg/models/weights/NAME.pt``; their model cards in ``docs/models/NAME.md``.
``load(NAME)`` works offline; ``load(PATH)`` loads any model file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .contract import Contract, ContractError, prepare
from .tta import task_problem, views

__all__ = ["BATCH_IMAGES", "FORMAT", "Model", "ModelError", "available", "load", "save_model", "weights_dir"]

FORMAT = "medimg-model/1"


# Images per network call in Model.predict_proba (and the explanation check's curves): on 2 CPU cores
# the shipped classifiers ran 1.4-1.6x faster in batches of 128-256 than in one batch of 624
# (us-breast 27.8 vs 17.2 img/s, cxr-pneumonia 673 vs 495); batches of thousands were slower still.
BATCH_IMAGES = 128


class ModelError(InputError):
    """A model that cannot be loaded: unknown name, missing, corrupted or incompatible file."""

    def __init__(self, message: str, *_: Any) -> None:
        super().__init__(None, message)

    def __reduce__(self) -> tuple[type, tuple[str]]:  # type: ignore[override]
        return (type(self), (self.problem,))


def weights_dir() -> Path:
    return Path(__file__).resolve().parent / "weights"


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in weights_dir().glob("*.pt"))


@dataclass
class Model:
    """A loaded model: ensemble members, contract, calibration and operating point."""

    name: str
    arch: str
    arch_kwargs: dict[str, Any]
    contract: Contract
    members: list[Any]
    temperature: float = 1.0
    threshold: float = 0.5
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    tta: str = "none"  # test-time augmentation (medimg.models.tta): views averaged at inference

    # ---------------------------------------------------------------- raw tensors
    def member_view_logits(self, x: Any, batch_size: int = BATCH_IMAGES) -> Any:
        """``(k * v, n, classes)`` logits of every member in every test-time view of a prepared
        ``(n, c, y, x)`` tensor (one view, the image as it is, when the model has no TTA), run
        ``batch_size`` images at a time (see :data:`BATCH_IMAGES`)."""
        import torch

        from .tta import apply

        with torch.inference_mode():
            parts = []
            for b in torch.split(x, batch_size):
                seen = [apply(b, v) for v in views(self.tta)]  # each view made once, not per member
                parts.append(torch.stack([m(xv) for m in self.members for xv in seen]))
            return torch.cat(parts, dim=1)

    def predict_proba(self, x: Any, batch_size: int = BATCH_IMAGES) -> np.ndarray:
        """Calibrated ensemble probabilities ``(n, classes)`` of prepared inputs: the mean over
        members and test-time views of ``softmax(logits / temperature)``."""
        import torch

        t = torch.as_tensor(np.asarray(x, dtype=np.float32))
        self._check_batch(t)
        with torch.inference_mode():
            z = self.member_view_logits(t, batch_size)
            return (torch.softmax(z / self.temperature, 2).sum(0) / len(z)).numpy().astype(np.float64)

    def positive_proba(self, x: Any) -> np.ndarray:
        return self.predict_proba(x)[:, self.contract.positive_class]

    def segment_proba(self, x: np.ndarray) -> np.ndarray:
        """Ensemble foreground probability ``(y, x)`` of one prepared ``(c, y, x)`` image, by
        sliding-window inference (MONAI) with the model's window size, averaged over the members
        and the model's test-time views (each turned back before it is averaged)."""
        import torch
        from monai.inferers import sliding_window_inference

        from .tta import apply, invert

        t = torch.as_tensor(np.asarray(x, dtype=np.float32))[None]
        self._check_batch(t)
        roi = tuple(self.info.get("roi_size", (96, 96)))
        out = np.zeros(t.shape[-2:], dtype=np.float64)
        with torch.inference_mode():
            for m in self.members:
                for v in views(self.tta):
                    z: Any = sliding_window_inference(apply(t, v), roi, 8, m, overlap=0.25,
                                                      mode="gaussian")
                    out += torch.sigmoid(invert(z, v)[0, 0] / self.temperature).numpy()
        return (out / (len(self.members) * len(views(self.tta)))).astype(np.float32)

    def _check_batch(self, x: Any) -> None:
        want = self.contract.in_channels
        if x.ndim != 4 or x.shape[1] != want:
            got = x.shape[1] if x.ndim == 4 else "?"
            msg = (f"model {self.name!r}: input of shape {tuple(x.shape)} has {got} channel(s); "
                   f"expected (n, {want}, y, x) ({self.contract.channels})")
            raise ContractError(msg)
        if self.contract.size is not None and tuple(x.shape[-2:]) != tuple(self.contract.size):
            msg = (f"model {self.name!r}: input is {tuple(x.shape[-2:])} pixels; the model takes "
                   f"{tuple(self.contract.size)}; prepare it with medimg.models.contract.prepare")
            raise ContractError(msg)

    # ---------------------------------------------------------------- images
    def prepare_image(self, image: Any, source: str = "image") -> np.ndarray:
        """An Image checked against the contract and prepared as network input ``(c, y, x)``."""
        return prepare(self.contract.check_image(image, source), self.contract)

    @property
    def card_path(self) -> str:
        return f"docs/models/{self.name}.md"


def _build_member(arch: str, kw: dict[str, Any], contract: Contract, n_out: int,
                  state: dict[str, Any], source: str) -> Any:

    from .nets import build

    net = build(arch, contract.in_channels, n_out, **kw)
    try:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except (RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"{source}: weights do not fit architecture {arch!r} ({first}); "
                         "the file is from another model or version") from None
    net.eval()
    return net


def load(name_or_path: str | os.PathLike[str]) -> Model:
    """Load a shipped model by name (see :func:`available`) or a model file by path, offline.

    Raises
    ------
    ModelError
        Unknown name, missing file, a file that is not a medimg model or is corrupted, or a contract
        that does not validate.
    """
    import torch

    s = str(name_or_path)
    p = Path(s)
    if not (p.suffix == ".pt" or os.sep in s or p.exists()):
        p = weights_dir() / f"{s}.pt"
        if not p.is_file():
            names = ", ".join(available()) or "none"
            raise ModelError(f"{s}: no such shipped model (shipped: {names}); "
                             "pass a model name or the path of a model file")
    if not p.is_file():
        raise ModelError(f"{p}: no such model file; train one with `medimg train CONFIG`")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged zips and pickles
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ModelError(f"{p}: not a readable model file ({first}); the file is corrupted or "
                         "truncated: restore it (reinstall medimg or retrain)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{p}: not a medimg model file (format {FORMAT!r} expected); "
                         "pass a file written by `medimg train`")
    try:
        contract = Contract.from_dict(payload["contract"])
        members = payload["members"]
        arch, kw = payload["arch"], dict(payload.get("arch_kwargs", {}))
        n_out = int(payload["n_out"])
        tta = str(payload.get("tta", "none"))
        problem = task_problem(tta, contract.task)
        if problem:
            raise ValueError(f"test-time augmentation {problem}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{p}: model file lacks or has a bad entry ({exc}); retrain it") from None
    if not members:
        raise ModelError(f"{p}: model file has no weights; retrain it")
    nets = [_build_member(arch, kw, contract, n_out, st, str(p)) for st in members]
    return Model(name=str(payload.get("name", p.stem)), arch=arch, arch_kwargs=kw, contract=contract,
                 members=nets, temperature=float(payload.get("temperature", 1.0)),
                 threshold=float(payload.get("threshold", 0.5)),
                 info=dict(payload.get("info", {})), path=p, tta=tta)


# Batch-norm running statistics stay float32: in float16 a channel mean of a few hundred is rounded
# by a sizeable fraction of the channel's spread (the DRIVE U-Net lost 0.005 validation AUC to it).
_FULL_PRECISION = ("running_mean", "running_var")


def _stored(key: str, v: Any) -> Any:
    """A weight as a model file keeps it: float16, except normalisation statistics."""
    import torch

    v = v.detach()
    if not v.is_floating_point():
        return v
    return v.to(torch.float32 if key.endswith(_FULL_PRECISION) else torch.float16)


def save_model(path: str | os.PathLike[str], *, name: str, arch: str, arch_kwargs: dict[str, Any],
               contract: Contract, n_out: int, states: list[dict[str, Any]], temperature: float,
               threshold: float, info: dict[str, Any], tta: str = "none") -> Path:
    """Write a model file (float16 weights, float32 normalisation statistics, metadata as plain
    types)."""
    import torch

    members = [{k: _stored(k, v).clone() for k, v in st.items()} for st in states]
    payload = {"format": FORMAT, "name": name, "arch": arch, "arch_kwargs": arch_kwargs,
               "contract": contract.to_dict(), "n_out": int(n_out), "members": members,
               "temperature": float(temperature), "threshold": float(threshold), "info": info,
               "tta": tta}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, p)
    return p


def model_from_states(name: str, arch: str, arch_kwargs: dict[str, Any], contract: Contract,
                      n_out: int, states: list[dict[str, Any]], temperature: float = 1.0,
                      threshold: float = 0.5, info: dict[str, Any] | None = None,
                      tta: str = "none") -> Model:
    """A Model from in-memory weights, rounded as a model file will store them (:func:`_stored`)."""
    rounded = [{k: _stored(k, v) for k, v in st.items()} for st in states]
    nets = [_build_member(arch, arch_kwargs, contract, n_out, st, name) for st in rounded]
    return Model(name=name, arch=arch, arch_kwargs=arch_kwargs, contract=contract, members=nets,
                 temperature=temperature, threshold=threshold, info=dict(info or {}), tta=tta)


