"""Training configurations: TOML files (``tomllib``, no extra dependency) into a checked dict.

A config has a ``name``, a ``task`` (``classification`` or ``segmentation``), ``seeds`` (one member
per seed: several seeds make an ensemble) and tables ``[data]``, ``[model]``, ``[train]``,
``[augment]``, ``[calibrate]`` and ``[inference]``.  Relative data paths are resolved against the
config file's folder, then against ``$MEDIMG_DATA`` / ``../shared/data``.  See docs/training.md for
every key.
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["DEFAULTS", "load_config", "resolve_data_path"]

DEFAULTS: dict[str, Any] = {
    "task": "classification",
    "seeds": [0],
    "data": {"source": "auto", "train_split": "train", "val_split": "val", "test_split": "test",
             "val_fraction": 0.15, "modality": "OT", "channels": "grey", "size": None,
             "normalise": "unit", "positive_class": 1, "limit": None, "fold_seed": 0},
    "model": {"arch": "small_cnn"},
    "train": {"epochs": 20, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4,
              "label_smoothing": 0.0, "steps_per_epoch": None, "patch_size": [64, 64],
              "select": "auc", "loss": "ce", "init_from": None, "val_every": 1, "folds": 0},
    "augment": {},
    "inference": {"tta": "none"},
    "calibrate": {"temperature": True, "operating_point": "youden", "target_sensitivity": 0.95,
                  "threshold": 0.5},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_data_path(path: str | os.PathLike[str], base: Path | None = None) -> Path:
    """A data path as given, relative to ``base``, or under ``$MEDIMG_DATA`` / ``../shared/data``."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    candidates = [base / p] if base else []
    candidates.append(Path.cwd() / p)
    env = os.environ.get("MEDIMG_DATA")
    roots = [Path(env)] if env else []
    roots.append(Path(__file__).resolve().parents[3].parent / "shared" / "data")
    for root in roots:
        parts = p.parts
        candidates.append(root / p)
        if "data" in parts:  # "../shared/data/xray/x.npz" under a data root
            candidates.append(root.joinpath(*parts[parts.index("data") + 1:]))
    return next((c for c in candidates if c.exists()), candidates[0])


def load_config(path: str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
    """Read and check a TOML training config (or take a dict), with defaults filled in.

    Raises
    ------
    InputError
        Missing or unparsable file, unknown task, missing ``name`` or ``data.path``, or a data path
        that does not exist.
    """
    if isinstance(path, dict):
        raw, src, base = path, "config", Path.cwd()
    else:
        src = str(path)
        p = Path(path)
        if not p.is_file():
            raise InputError(p, "no such config file", "pass a TOML training config")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(p, f"not valid TOML ({exc})", "fix the syntax") from None
        base = p.resolve().parent
    cfg = _merge(DEFAULTS, raw)
    if not cfg.get("name"):
        raise InputError(src, "config has no name", 'add name = "my-model"')
    if cfg["task"] not in ("classification", "segmentation"):
        raise InputError(src, f"task {cfg['task']!r} is not classification or segmentation")
    if not cfg["data"].get("path"):
        raise InputError(src, "config has no data.path", "name the dataset file or folder")
    data_path = resolve_data_path(cfg["data"]["path"], base)
    if not data_path.exists():
        msg = f"data.path {cfg['data']['path']!r} does not exist (looked for {data_path})"
        raise InputError(src, msg, "check the path or set MEDIMG_DATA")
    cfg["data"]["path"] = str(data_path)
    init = cfg["train"].get("init_from")
    if init and not Path(init).is_absolute() and not isinstance(path, dict):
        cfg["train"]["init_from"] = str((base / init) if (base / init).exists() else Path(init))
    if isinstance(cfg["seeds"], int):
        cfg["seeds"] = [cfg["seeds"]]
    cfg["source"] = src
    return cfg
