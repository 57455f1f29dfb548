"""The ``medimg`` command line: a thin layer that parses, calls the library and prints.

Exit codes (stable, documented in docs/cli.md):

* 0 -- done;
* 2 -- the input cannot be used (unreadable file, no series, ambiguous series, unsupported format);
  one line on stderr says which file, what is wrong and what to do;
* 3 -- the output cannot be written;
* 4 -- ``analyze`` refused: no series in the input can be analysed (no DICOM image, a single slice,
  no protocol fits, the image does not fit the protocol); the report written says why;
* 5 -- ``analyze`` refused: the chosen series failed the quality check; the report written says why;
  ``qa``: the image failed the quality check (verdict ``fail``); the report printed says why;
* 6 -- ``store verify`` found missing, changed or unindexed files (listed on stdout);
* 1 -- an internal error (a bug): one line on stderr; set ``MEDIMG_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InputError, MedimgError, OutputError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2
EXIT_OUTPUT = 3
EXIT_REFUSED = 4
EXIT_REFUSED_QUALITY = 5
EXIT_STORE_DAMAGED = 6


# ------------------------------------------------------------------------------------ helpers
def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr (only when stderr is a terminal and ``enabled``)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=_stderr_console(), transient=True) as prog:
        task = prog.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update


def _fmt_spacing(spacing: Sequence[float] | Any) -> str:
    return " x ".join(f"{s:.4g}" for s in spacing)


def _is_dicom_input(path: Path) -> bool:
    from .io.dicom import is_dicom_path

    return is_dicom_path(path)


# ------------------------------------------------------------------------------------ info
def series_listing(path: Path, show_progress: bool = False) -> dict[str, Any]:
    """What ``medimg info --json`` prints: ``{"series": [...], "errors": [...], ...}``."""
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if not _is_dicom_input(path):
        from .io import read

        image = read(path)
        return {
            "path": str(path),
            "series": [_image_entry(path, image)],
            "errors": [],
            "files_seen": 1,
            "skipped_non_dicom": 0,
        }
    from .errors import NotDicomError
    from .io.dicom import index, summarize

    with progress_bar("Indexing headers", show_progress) as update:
        idx = index(path, progress=update)
    series = []
    for entry in idx.series:
        item: dict[str, Any] = {
            "study_instance_uid": entry.study_instance_uid,
            "series_instance_uid": entry.series_instance_uid,
            "series_key": entry.key,
            "series_number": entry.series_number,
            "modality": entry.modality,
            "description": entry.description,
            "study_description": entry.instances[0].meta.get("study_description", ""),
            "body_part_examined": entry.instances[0].meta.get("body_part_examined", ""),
            "instances": len(entry.instances),
            "transfer_syntaxes": entry.transfer_syntaxes,
            "transfer_syntax_names": sorted({r.transfer_syntax_name for r in entry.instances}),
        }
        try:
            summary = summarize(entry)
            item.update(shape=list(summary.shape), spacing=[float(s) for s in summary.spacing],
                        warnings=summary.warnings, loadable=True)
        except InputError as exc:
            item.update(shape=None, spacing=None, loadable=False,
                        warnings=[{"code": "not_loadable", "message": str(exc)}])
        series.append(item)
    not_dicom = [e for e in idx.errors if isinstance(e, NotDicomError)]
    errors = [e for e in idx.errors if not isinstance(e, NotDicomError)]
    return {
        "path": str(path),
        "series": series,
        "errors": [{"file": e.source, "message": str(e)} for e in errors],
        "files_seen": idx.files_seen,
        "skipped_non_dicom": len(not_dicom),
    }


def _image_entry(path: Path, image: Any) -> dict[str, Any]:
    meta = image.meta
    return {
        "study_instance_uid": meta.get("study_instance_uid", ""),
        "series_instance_uid": meta.get("series_instance_uid", ""),
        "series_key": str(path),
        "series_number": meta.get("series_number"),
        "modality": image.modality,
        "description": meta.get("series_description", meta.get("format", "")),
        "instances": 1,
        "transfer_syntaxes": [],
        "transfer_syntax_names": [],
        "format": meta.get("format", path.suffix.lstrip(".")),
        "shape": list(image.shape),
        "spacing": [float(s) for s in image.spacing],
        "dtype": str(image.array.dtype),
        "warnings": image.warnings,
        "loadable": True,
    }


def _print_listing(listing: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    # A pipe gets a wide table (rich would use 80 columns), a terminal its own width.
    console = Console(width=None if sys.stdout.isatty() else 220)
    by_study: dict[str, list[dict[str, Any]]] = {}
    for s in listing["series"]:
        by_study.setdefault(s["study_instance_uid"], []).append(s)
    if not listing["series"]:
        console.print(f"No image series found in {listing['path']}.")
    for study, items in by_study.items():
        desc = items[0].get("study_description") or ""
        table = Table(title=f"Study {study or '(none)'} {desc}".strip(), title_justify="left")
        for col in ("#", "Series", "Modality", "Description", "Files", "Shape (z,y,x)",
                    "Spacing mm (z,y,x)", "Transfer syntax", "Warnings"):
            table.add_column(col, overflow="fold")
        for s in items:
            warns = ", ".join(w["code"] for w in s["warnings"]) or "-"
            table.add_row(
                "" if s["series_number"] is None else str(s["series_number"]),
                s["series_key"],
                s["modality"],
                s.get("description") or "",
                str(s["instances"]),
                " x ".join(map(str, s["shape"])) if s["shape"] else "not loadable",
                _fmt_spacing(s["spacing"]) if s["spacing"] else "-",
                ", ".join(s["transfer_syntax_names"]) or s.get("format", ""),
                warns,
            )
        console.print(table)
        for s in items:
            for w in s["warnings"]:
                console.print(f"  [yellow]warning[/] {s['series_key']}: {w['code']}: {w['message']}",
                              highlight=False, markup=True)
    if listing["skipped_non_dicom"]:
        console.print(f"{listing['skipped_non_dicom']} non-DICOM file(s) skipped.")
    for e in listing["errors"]:
        console.print(f"[red]unreadable[/] {e['message']}", highlight=False)


def cmd_info(args: argparse.Namespace) -> int:
    listing = series_listing(Path(args.path), show_progress=not args.json and not args.quiet)
    if args.json:
        print(json.dumps(listing, indent=2))
    else:
        _print_listing(listing)
    return EXIT_OK


# ------------------------------------------------------------------------------------ convert
def cmd_convert(args: argparse.Namespace) -> int:
    from .io import read, write

    src = Path(args.input)
    out = Path(args.output)
    if not src.exists():
        raise InputError(src, "no such file or folder")
    with progress_bar("Reading", not args.quiet) as update:
        kwargs: dict[str, Any] = {"series": args.series}
        if update is not None:
            kwargs["progress"] = update
        image = read(src, **kwargs)
    options: dict[str, Any] = {}
    if args.slice is not None:
        options["slice_index"] = args.slice
    if args.window is not None:
        options["window"] = args.window
    if not out.parent.exists():
        raise OutputError(f"{out}: the output folder {out.parent} does not exist; create it first")
    try:
        write(image, out, **options)
    except InputError:
        raise
    except OSError as exc:
        raise OutputError(f"{out}: cannot write ({exc.strerror or exc})") from None
    for w in image.warnings:
        print(f"warning: {w['code']}: {w['message']}", file=sys.stderr)
    if not args.quiet:
        print(f"{out}: {image.modality} {' x '.join(map(str, image.shape))} "
              f"spacing {_fmt_spacing(image.spacing)} mm")
    return EXIT_OK


def _window(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        msg = f"--window must be LOW,HIGH (e.g. -1000,400), got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if high <= low:
        msg = f"--window HIGH must be above LOW, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return (low, high)


# ------------------------------------------------------------------------------------ analyze
def cmd_analyze(args: argparse.Namespace) -> int:
    from .pipeline import analyze, refusal_kind
    from .report.outputs import FILENAMES, write_report

    src = Path(args.path)
    out = Path(args.output)
    evidence = out / "evidence"  # OUT holds one analysis: no evidence left from an older one
    if evidence.is_dir():
        shutil.rmtree(evidence)
    report, image = analyze(src, protocol=args.protocol, priors=args.prior, series=args.series,
                            evidence_dir=evidence,
                            context=args.context)
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = write_report(report, image, out)
        for fmt, name in FILENAMES.items():  # OUT holds one analysis: no SEG/SR left from an older one
            if fmt not in written and (out / name).is_file():
                (out / name).unlink()
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the report ({exc.strerror or exc})") from None
    if not args.quiet:
        for fmt, path in written.items():
            print(f"{fmt}: {path}")
        if report.triage is not None:
            print(f"{report.protocol}: {report.status}, {len(report.findings)} finding(s), "
                  f"priority {report.triage.priority}: {report.triage.reason}")
    kind = refusal_kind(report)
    if kind is None:
        return EXIT_OK
    print(f"medimg: {src}: analysis refused: {report.refusal}; see {out / 'report.html'}",
          file=sys.stderr)
    return EXIT_REFUSED_QUALITY if kind == "quality" else EXIT_REFUSED


# ------------------------------------------------------------------------------------ qa
def cmd_qa(args: argparse.Namespace) -> int:
    from .quality import assess

    src = Path(args.path)
    if not src.exists():
        raise InputError(src, "no such file or folder")
    report = assess(src, protocol=args.protocol)
    print(report.to_json() if args.json else report)
    readable = report.get("readable")
    if readable is not None and readable.status == "fail":
        print(f"medimg: {src}: {readable.reason}", file=sys.stderr)
        return EXIT_INPUT
    return EXIT_REFUSED_QUALITY if report.verdict == "fail" else EXIT_OK


def _qa_protocol_name(text: str) -> str:
    from .quality import PROTOCOLS as QA_PROTOCOLS

    if text not in QA_PROTOCOLS:
        msg = f"unknown protocol {text!r}; use one of {', '.join(sorted(QA_PROTOCOLS))}"
        raise argparse.ArgumentTypeError(msg)
    return text


def _protocol_name(text: str) -> str:
    from .protocols import PROTOCOLS  # imported only when the option is used (it loads scipy)

    if text not in PROTOCOLS:
        msg = f"unknown protocol {text!r}; use one of {', '.join(sorted(PROTOCOLS))}"
        raise argparse.ArgumentTypeError(msg)
    return text


def _context_name(text: str) -> str:
    from .pipeline import CONTEXTS

    if text not in CONTEXTS:
        msg = f"unknown context {text!r}; use one of {', '.join(CONTEXTS)}"
        raise argparse.ArgumentTypeError(msg)
    return text


# ------------------------------------------------------------------------------------ train / evaluate
def cmd_train(args: argparse.Namespace) -> int:
    from .train.config import load_config
    from .train.loop import train

    cfg = load_config(args.config)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.seeds:
        cfg["seeds"] = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out or Path("runs") / cfg["name"])
    command = " ".join(["medimg", "train", *sys.argv[2:]]) if sys.argv[1:2] == ["train"] else ""
    result = train(cfg, out, resume=not args.restart, progress=not args.quiet, epochs=args.epochs,
                   command=command)
    if not args.quiet:
        v = result["val_metrics"]
        keys = [k for k in ("auc", "accuracy", "sensitivity", "specificity", "f1", "dice") if k in v]
        print(f"model: {result['model']} ({result['seconds']:.0f} s)")
        label = "out-of-fold" if cfg["train"].get("folds") else "validation"
        print(f"{label}: " + ", ".join(f"{k} {v[k]:.4f}" for k in keys)
              + f" at threshold {result['threshold']:.4f}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .train.evaluate import evaluate

    result = evaluate(args.model, args.data, args.split, n_boot=args.boot, out=args.out,
                      explain=args.explain)
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    print(f"{result['model']} on {result['data']} ({result['split']}, n={result['n']}):")
    for k, v in result.items():
        if isinstance(v, float) and f"{k}_ci" in result:
            lo, hi = result[f"{k}_ci"]
            print(f"  {k:<12} {v:.4f}  (95% CI {lo:.4f}-{hi:.4f})")
    print(f"  threshold    {result['threshold']:.4f}")
    e = result.get("explanation")
    if e and e["n"]:
        print(f"  Grad-CAM on {e['selection']}: deletion {e['deletion']:.4f} (random order "
              f"{e['random_deletion']:.4f}, lower is better), insertion {e['insertion']:.4f} (random "
              f"{e['random_insertion']:.4f}, higher is better)")
    elif e:
        print(f"  Grad-CAM: {e['selection']}")
    return EXIT_OK


# ------------------------------------------------------------------------------------ parser
# ------------------------------------------------------------------------------------ server, store
def cmd_serve(args: argparse.Namespace) -> int:
    from .server.app import MedimgServer
    from .server.config import load_config

    cfg = load_config(args.config, store=args.store, database=args.db, host=args.host, aet=args.aet,
                      dicom_port=args.dicom_port, http_port=args.http_port,
                      analysis=False if args.no_analysis else None, quiet_seconds=args.quiet_seconds,
                      destination=args.destination, webhook=args.webhook,
                      auth=False if args.no_auth else None)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = MedimgServer(cfg)
    print(f"medimg serve: DICOM {cfg.aet}@{cfg.host}:{cfg.dicom_port}, DICOMweb "
          f"http://{cfg.host}:{cfg.http_port}/dicomweb, store {cfg.store}", file=sys.stderr, flush=True)
    server.serve_forever()
    return EXIT_OK


def _open_store(args: argparse.Namespace) -> Any:
    from .store import Store

    return Store(args.dir, args.db or None)


def cmd_store_import(args: argparse.Namespace) -> int:
    from .store.admin import import_paths

    def report(exc: InputError) -> None:
        print(f"medimg: {exc}", file=sys.stderr)

    with _open_store(args) as store:
        counts = import_paths(store, args.paths, on_error=report)
    print(json.dumps(counts) if args.json else
          ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "nothing found")
    return EXIT_OK if not counts["rejected"] else EXIT_INPUT


def cmd_store_verify(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        rep = store.verify()
    if args.json:
        print(json.dumps({"checked": rep.checked, "ok": rep.ok, "missing": rep.missing,
                          "corrupt": rep.corrupt, "orphans": rep.orphans, "clean": rep.clean}))
    else:
        print(f"{rep.checked} instances checked: {rep.ok} ok, {len(rep.missing)} missing, "
              f"{len(rep.corrupt)} changed, {len(rep.orphans)} files without an index row")
        for uid in rep.missing:
            print(f"missing  {uid}")
        for uid in rep.corrupt:
            print(f"changed  {uid}")
        for rel in rep.orphans:
            print(f"orphan   {rel}")
    return EXIT_OK if rep.clean else EXIT_STORE_DAMAGED


def cmd_store_ls(args: argparse.Namespace) -> int:
    from .store import find

    with _open_store(args) as store:
        rows = find(store.engine, args.level.upper(), {}, limit=args.limit)
    if args.json:
        print(json.dumps(rows, default=str))
        return EXIT_OK
    for r in rows:
        if args.level == "study":
            print(f"{r['StudyInstanceUID']}  {r['PatientID'] or '-'}  {r['StudyDate'] or '-'}  "
                  f"{'/'.join(r['ModalitiesInStudy']) or '-'}  {r['NumberOfStudyRelatedSeries']} series  "
                  f"{r['NumberOfStudyRelatedInstances']} instances  {r['StudyDescription']}")
        else:
            print(f"{r['SeriesInstanceUID']}  {r['Modality'] or '-'}  #{r['SeriesNumber']}  "
                  f"{r['NumberOfSeriesRelatedInstances']} instances  {r['SeriesDescription']}")
    return EXIT_OK


def _new_password(args: argparse.Namespace) -> str:
    """The password: the first line of stdin with --password-stdin, else asked twice on the terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise InputError(args.name, "the two passwords differ", "run the command again")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    from .server import auth

    with _open_store(args) as store:
        try:
            if args.user_command == "add":
                user = auth.create_user(store, args.name, _new_password(args), args.role, args.display_name)
                print(f"user {user.username} ({user.role}) created")
            elif args.user_command == "ls":
                users = auth.list_users(store)
                if args.json:
                    print(json.dumps([{**u.to_dict(), "active": u.active} for u in users]))
                else:
                    for u in users:
                        print(f"{u.username}  {u.role}  {'active' if u.active else 'disabled'}  {u.display_name}")
            elif args.user_command == "passwd":
                auth.set_password(store, args.name, _new_password(args))
                print(f"password of {args.name} changed; its sessions ended")
            else:  # disable | enable
                auth.set_active(store, args.name, args.user_command == "enable")
                print(f"user {args.name} {args.user_command}d")
        except ValueError as exc:
            raise InputError(None, str(exc)) from None
        except KeyError:
            raise InputError(args.name, "no such user", "list them with `medimg user ls --store DIR`") from None
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medimg",
        description="Medical image analysis: read, check, convert and analyse imaging studies.",
    )
    parser.add_argument("--version", action="version", version=f"medimg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="list the studies and series in a folder or file")
    p.add_argument("path", help="DICOM folder or file, or a NIfTI/NRRD/MHA/PNG/... file")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert a series or image to NIfTI, NRRD, MHA or PNG")
    p.add_argument("input", help="DICOM folder or file, or any supported image file")
    p.add_argument("output", help="output file; the format follows the extension "
                                  "(.nii, .nii.gz, .nrrd, .mha, .mhd, .png)")
    p.add_argument("--series", help="Series Instance UID (or key from `medimg info`) to convert "
                                    "when the input holds several")
    p.add_argument("--slice", type=int, help="PNG only: which slice (z index) of a volume to write")
    p.add_argument("--window", type=_window, metavar="LOW,HIGH",
                   help="PNG only: map this value range to 0-255 (e.g. --window=-1000,400 for lung; note the =)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("qa", help="check image quality: pass, warn or fail with one line per check")
    p.add_argument("path", help="DICOM folder or file, or a NIfTI/NRRD/MHA/PNG/JPEG/... file")
    p.add_argument("--protocol", type=_qa_protocol_name,
                   help="also check what this protocol needs (chest_ct, abdomen_ct, head_ct, "
                        "brain_mri, chest_xray, retina, roi)")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(func=cmd_qa)

    p = sub.add_parser("analyze", help="analyse a study (e.g. chest CT): findings, measurements, "
                                       "recommendations and reports in OUT")
    p.add_argument("path", help="DICOM study folder or file")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="folder for report.json, report.html, report.pdf, sr.dcm, seg.dcm, fhir.json")
    p.add_argument("--protocol", type=_protocol_name,
                   help="use this protocol (chest_ct, chest_xray, breast_us, retina) instead of "
                        "routing by the DICOM headers; needed for a PNG/JPEG/TIFF photograph")
    p.add_argument("--series", help="Series Instance UID (or key from `medimg info`) to analyse "
                                    "instead of choosing one")
    p.add_argument("--prior", action="append", metavar="PATH",
                   help="an earlier study of the same patient to compare with (repeatable)")
    p.add_argument("--context", type=_context_name,
                   help="why the CT was done, which decides the guidelines that apply: incidental, "
                        "screening, known-cancer or immunocompromised (default: incidental finding "
                        "assumed, and said so in the report)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("train", help="train a model from a TOML config (classification or segmentation)")
    p.add_argument("config", help="training config (.toml); see docs/training.md")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/NAME); resumes from its checkpoints")
    p.add_argument("--seeds", help="train only these members, e.g. 0,1 (others can run in parallel)")
    p.add_argument("--epochs", type=int, help="override the config's epochs")
    p.add_argument("--restart", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics with 95%% CIs of a model on a dataset")
    p.add_argument("model", help="shipped model name (e.g. cxr-pneumonia) or a model.pt file")
    p.add_argument("data", help="NPZ file, folder (class subfolders, or images/ + masks/) or CSV")
    p.add_argument("--split", help="split to evaluate (default: test, or all of a plain folder)")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples for the CIs")
    p.add_argument("--out", metavar="DIR", help="also write ROC/calibration plots or probability maps")
    p.add_argument("--explain", type=int, default=0, metavar="N",
                   help="also check the Grad-CAM heatmaps of the first N images called positive "
                        "(deletion/insertion against a random order)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("serve", help="run a DICOM node and DICOMweb service with a study store that "
                                     "analyses what arrives")
    p.add_argument("--config", metavar="FILE", help="TOML config (see docs/server.md); options override it")
    p.add_argument("--store", metavar="DIR", help="study store folder (created if missing)")
    p.add_argument("--db", metavar="URL", help="index database URL (default: SQLite in the store; "
                                               "postgresql+psycopg://user@host/db)")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--aet", help="our AE title (default MEDIMG)")
    p.add_argument("--dicom-port", type=int, help="DICOM port (default 11112)")
    p.add_argument("--http-port", type=int, help="HTTP port for DICOMweb and the API (default 8080)")
    p.add_argument("--no-analysis", action="store_true", help="store only; never analyse")
    p.add_argument("--quiet-seconds", type=float, help="a study is complete after this long without "
                                                       "new instances (default 10)")
    p.add_argument("--destination", help="peer (from the config) that receives the SR and SEG results")
    p.add_argument("--webhook", help="URL notified (POST JSON) of urgent findings")
    p.add_argument("--no-auth", action="store_true",
                   help="leave /api open without sessions (review, sign and users still need one)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("store", help="look after a study store: import, ls, verify")
    ssub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    q = ssub.add_parser("import", help="store DICOM files and folders")
    q.add_argument("dir", help="store folder")
    q.add_argument("paths", nargs="+", help="DICOM files or folders")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_store_import)
    q = ssub.add_parser("ls", help="list studies or series")
    q.add_argument("dir", help="store folder")
    q.add_argument("--level", choices=["study", "series"], default="study")
    q.add_argument("--limit", type=int, default=1000)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_store_ls)
    q = ssub.add_parser("verify", help="re-check every stored file against its SHA-256 (exit 6 if damaged)")
    q.add_argument("dir", help="store folder")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_store_verify)
    for q in (ssub.choices["import"], ssub.choices["ls"], ssub.choices["verify"]):
        q.add_argument("--db", metavar="URL", help="index database URL (default: SQLite in the store)")

    p = sub.add_parser("user", help="workstation accounts of a store: add, ls, passwd, disable, enable")
    usub = p.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    q = usub.add_parser("add", help="create an account (the password is asked twice, or read from stdin)")
    q.add_argument("name", help="user name: 1-64 of a-z 0-9 . _ -")
    q.add_argument("--role", required=True, choices=["radiologist", "technologist", "admin"])
    q.add_argument("--display-name", default="", help='as reports print it, e.g. "Dr Ada Lovelace"')
    q = usub.add_parser("passwd", help="set a new password (ends the user's sessions)")
    q.add_argument("name")
    for q in (usub.choices["add"], usub.choices["passwd"]):
        q.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    q = usub.add_parser("ls", help="list the accounts")
    q.add_argument("--json", action="store_true")
    for action in ("disable", "enable"):
        usub.add_parser(action, help=f"{action} an account").add_argument("name")
    for q in usub.choices.values():
        q.add_argument("--store", dest="dir", required=True, metavar="DIR", help="the server's store folder")
        q.add_argument("--db", metavar="URL", help="index database URL (default: SQLite in the store)")
        q.set_defaults(func=cmd_user)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"medimg: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except OutputError as exc:
        print(f"medimg: {exc}", file=sys.stderr)
        return EXIT_OUTPUT
    except MedimgError as exc:  # any other refusal of the request (a model's input contract, ...)
        print(f"medimg: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("medimg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line, traceback on request
        if os.environ.get("MEDIMG_DEBUG"):
            raise
        print(f"medimg: internal error ({type(exc).__name__}: {exc}); please report it "
              f"(set MEDIMG_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
