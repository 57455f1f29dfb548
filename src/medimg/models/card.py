"""Model cards: ship a trained model (copy its weights into the package) and write docs/models/NAME.md.

The test-split figures in a card are measured once, here, by :func:`medimg.train.evaluate.evaluate`
on the shipped weights file; ``tests/models/test_registry.py`` measures them again and compares.

    python -m medimg.models.card runs/cxr-pneumonia/model.pt cxr-pneumonia xray/pneumoniamnist.npz \\
        --intended "..." --limits "..."
    python -m medimg.models.card explanation us-breast   # re-measure a card's explanation check
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

from .registry import load, weights_dir

__all__ = ["card_explanation", "card_metrics", "read_card_spec", "refresh_explanation", "ship"]

CLASS_KEYS = ("auc", "accuracy", "sensitivity", "specificity", "f1", "ppv", "npv", "brier")
SEG_KEYS = ("f1", "auc", "accuracy", "sensitivity", "specificity", "dice", "hd95")
_SPEC = re.compile(r"<!-- medimg-evaluate: (\{.*?\}) -->")
_ROW = re.compile(r"^\|\s*([a-z0-9_]+)\s*\|\s*([-0-9.]+)\s*\|")
_EXPLAIN_ROW = re.compile(r"^\|\s*(deletion|insertion)\b[^|]*\|\s*([-0-9.]+)\s*\|\s*([-0-9.]+)\s*\|")
EXPLAIN_N = 32  # images called positive whose Grad-CAM heatmaps a classifier's card checks
_EXPLAIN_HEAD = "## Explanation check"


def docs_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "docs" / "models"


def read_card_spec(text: str) -> dict[str, Any]:
    """The machine-readable line of a card: which data and split its test figures are on."""
    m = _SPEC.search(text)
    if not m:
        msg = "model card has no '<!-- medimg-evaluate: {...} -->' line"
        raise ValueError(msg)
    return dict(json.loads(m.group(1)))


def card_metrics(text: str) -> dict[str, float]:
    """The figures of the card's "Test metrics" table."""
    section = text.split("## Test metrics", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        m = _ROW.match(line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def card_explanation(text: str) -> dict[str, float]:
    """The figures of the card's "Explanation check" table (``deletion``, ``random_deletion``, ...)."""
    if _EXPLAIN_HEAD not in text:
        return {}
    section = text.split(_EXPLAIN_HEAD, 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        m = _EXPLAIN_ROW.match(line.strip())
        if m:
            out[m.group(1)], out[f"random_{m.group(1)}"] = float(m.group(2)), float(m.group(3))
    return out


def _explanation_section(name: str, data: str, split: str, e: dict[str, Any]) -> str:
    """The card section of a classifier's explanation check ``e`` (``evaluate(..., explain=N)``)."""
    if not e["n"]:
        return f"{_EXPLAIN_HEAD}\nNot measured: {e['selection']}.\n"
    text = "\n".join([
        _EXPLAIN_HEAD,
        f"Do the Grad-CAM heatmaps point at what the model uses? Checked on {e['selection']} of "
        f"`{split}` by deletion and insertion (`medimg.models.explain.faithfulness`, {e['steps']} steps, "
        f"pixels replaced by a {e['baseline']}): the area under the positive-class probability while "
        "the pixels the heatmap ranks highest are blurred away first (deletion: lower is better) or "
        "restored first into the blurred image (insertion: higher is better), against the same in a "
        "random order. Measured by "
        f"`medimg evaluate {name} {data} --split {split} --explain {EXPLAIN_N} --json`.",
        "",
        "| measure | Grad-CAM order | random order |",
        "|---|---|---|",
        f"| deletion (lower is better) | {e['deletion']:.4f} | {e['random_deletion']:.4f} |",
        f"| insertion (higher is better) | {e['insertion']:.4f} | {e['random_insertion']:.4f} |",
        "",
    ])
    if e["random_deletion"] > 0.9:
        text += ("\nThe probability stays near 1 even as the image is blurred away in a random order: "
                 "this model reads a blurred image as its positive class, so the check has little room on these "
                 "images and its differences are weak evidence either way.\n")
    return text


def refresh_explanation(name: str) -> Path:
    """Measure a shipped classifier's explanation check again and put it into its card (in place)."""
    out = docs_dir() / f"{name}.md"
    text = out.read_text()
    from ..train.config import resolve_data_path
    from ..train.evaluate import evaluate

    spec = read_card_spec(text)
    e = evaluate(name, resolve_data_path(spec["data"]), spec["split"], n_boot=10,
                 explain=EXPLAIN_N)["explanation"]
    section = _explanation_section(name, spec["data"], spec["split"], e)
    if _EXPLAIN_HEAD in text:
        head, rest = text.split(_EXPLAIN_HEAD, 1)
        tail = rest.split("\n## ", 1)
        text = head + section + ("\n## " + tail[1] if len(tail) > 1 else "")
    else:
        anchor = next((a for a in ("## Against the bars", "## Notes") if a in text), None)
        text = (text.replace(anchor, section + "\n" + anchor, 1) if anchor
                else text.rstrip("\n") + "\n\n" + section)
    out.write_text(text)
    return out


def _table(metrics: dict[str, Any], keys: tuple[str, ...]) -> str:
    rows = ["| metric | value | 95% CI (bootstrap, 1000) |", "|---|---|---|"]
    for k in keys:
        if k in metrics and metrics[k] is not None:
            lo, hi = metrics.get(f"{k}_ci", [float("nan")] * 2)
            rows.append(f"| {k} | {metrics[k]:.4f} | {lo:.4f} - {hi:.4f} |")
    return "\n".join(rows)


def _split_line(info: dict[str, Any], data: str, split: str, n_test: int) -> str:
    dcfg = info.get("config", {}).get("data", {})
    tr, va = dcfg.get("train_split", "train"), dcfg.get("val_split", "val")
    never = (f"reported on `{split}` ({n_test} samples), never used to choose weights, calibration or "
             "the operating point.")
    if info.get("folds"):
        k = info["folds"]
        return (f"- data: `{data}`; splits `{tr}` and `{va}` pooled ({info.get('n_val')} samples) and "
                f"divided into {k} stratified folds: each member trained on {k - 1} folds; temperature "
                f"and operating point fitted on the out-of-fold predictions of all {info.get('n_val')}; "
                + never)
    return (f"- data: `{data}`; trained on split `{tr}` ({info.get('n_train')} samples), calibrated and "
            f"operating point chosen on `{va}` ({info.get('n_val')} samples); " + never)


def _tta_line(tta: str) -> str:
    from .tta import views

    n = len(views(tta))
    return "none" if n == 1 else f"{tta} ({n} views per member, outputs averaged)"


def ship(model_file: Path, name: str, data: str, split: str, *, intended: str, limits: str,
         bars: str = "", notes: str = "", data_label: str | None = None,
         command: str = "") -> Path:
    """Copy ``model_file`` to the package as ``name``, evaluate it on ``data``/``split``, write its card."""
    from ..train.config import resolve_data_path
    from ..train.evaluate import evaluate

    dest = weights_dir() / f"{name}.pt"
    if Path(model_file).resolve() != dest.resolve():
        shutil.copyfile(model_file, dest)
    model = load(name)
    classifier = model.contract.task == "classification"
    res = evaluate(name, resolve_data_path(data), split, explain=EXPLAIN_N if classifier else 0)
    explanation = res.pop("explanation", None)
    info = model.info
    keys = CLASS_KEYS if model.contract.task == "classification" else SEG_KEYS
    c = model.contract
    op = info.get("operating_point", {})
    val = info.get("val_metrics", {})
    size_kib = dest.stat().st_size / 1024
    spec = json.dumps({"data": data, "split": split})
    lines = [
        f"# Model card: {name}",
        "",
        f"<!-- medimg-evaluate: {spec} -->",
        "",
        "**Not for diagnosis.** A research model for decision support under review by a qualified reader.",
        "",
        "## Intended use",
        intended,
        "",
        "## Input contract (checked at load and at every inference)",
        f"- task: {c.task}; modalities: {', '.join(c.modalities)}; channels: {c.channels}",
        f"- size: {'x'.join(map(str, c.size)) + ' (every image is resized to this)' if c.size else 'any (sliding window ' + 'x'.join(map(str, info.get('roi_size', []))) + ')'}",
        f"- intensities: {c.normalise} (uint8 / 255, other types by their 0.5/99.5 percentiles"
        + ("; then per-image z-score)" if c.normalise == "zscore" else ")"),
        *( [f"- classes: {', '.join(c.classes)}; positive class: {c.classes[c.positive_class]}"]
           if c.classes else []),
        "",
        "## Limits",
        limits,
        "",
        "## Data and split",
        _split_line(info, data_label or data, split, res["n"]),
        "",
        "## Model",
        f"- architecture: `{model.arch}` {json.dumps(model.arch_kwargs)} (MONAI blocks), "
        f"{len(model.members)} member(s) (seeds {info.get('seeds')})"
        + (", probabilities averaged" if len(model.members) > 1 else ""),
        f"- test-time augmentation: {_tta_line(model.tta)}",
        f"- temperature (fitted on {'out-of-fold predictions' if info.get('folds') else 'validation'}): "
        f"{model.temperature:.4f}",
        f"- operating point: threshold {model.threshold:.4f} ({op.get('rule', '')}, chosen on the "
        f"{op.get('chosen_on', 'validation split')})",
        f"- weights file: `medimg/models/weights/{name}.pt`, {size_kib:.0f} KiB (float16 weights, float32 "
        "batch-norm statistics)",
        "",
        "## Training",
        f"- command: `{command or info.get('command') or 'see configs/' + name + '.toml'}`",
        f"- time: {info.get('training_seconds', 0) / 60:.1f} min of CPU training, summed over every "
        f"member's epochs on a shared 2-core CPU machine ({info.get('threads', 1)} torch thread(s) in the "
        "process that finished the run)",
        f"- transfer: {json.dumps(info.get('transfer')) if info.get('transfer') else 'none (trained from scratch)'}",
        "",
        "## Validation metrics (out-of-fold, used for model selection)" if info.get("folds")
        else "## Validation metrics (used for model selection)",
        _table(val, keys),
        "",
        "## Test metrics",
        f"Measured by `medimg evaluate {name} {data}{' --split ' + split if split else ''} --json` on the shipped weights.",
        "",
        _table(res, keys),
        "",
    ]
    if explanation is not None:
        lines += [_explanation_section(name, data, split, explanation)]
    if bars:
        lines += ["## Against the bars", bars, ""]
    if notes:
        lines += ["## Notes", notes, ""]
    out = docs_dir() / f"{name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    (out.parent / f"{name}.json").write_text(json.dumps(res, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["explanation"]:
        ex = argparse.ArgumentParser(prog="python -m medimg.models.card explanation",
                                     description="measure a shipped classifier's explanation check "
                                                 "again and rewrite that section of its card")
        ex.add_argument("name")
        print(refresh_explanation(ex.parse_args(args[1:]).name))
        return 0
    ap = argparse.ArgumentParser(prog="python -m medimg.models.card")
    ap.add_argument("model_file")
    ap.add_argument("name")
    ap.add_argument("data")
    ap.add_argument("--split", default="test")
    ap.add_argument("--intended", required=True)
    ap.add_argument("--limits", required=True)
    ap.add_argument("--bars", default="")
    ap.add_argument("--notes", default="")
    ap.add_argument("--command", default="", help="the training command(s), if not the recorded one")
    a = ap.parse_args(args)
    print(ship(Path(a.model_file), a.name, a.data, a.split, intended=a.intended, limits=a.limits,
               bars=a.bars, notes=a.notes, command=a.command))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
