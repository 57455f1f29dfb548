"""Atomic file output shared by the writers: a failed write never leaves a half-written file."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError

__all__ = ["atomic_output"]


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path with ``path``'s file name, in a hidden folder beside ``path``.

    The writer writes there (and may write side files, such as the ``.raw`` of a ``.mhd``).  When the
    block ends without an exception every file written is moved into ``path``'s folder with
    :func:`os.replace`, the file named like ``path`` last, so ``path`` appears only once its data is
    complete.  On an exception everything written is removed and the exception propagates.

    Raises
    ------
    InputError
        The destination folder does not exist or cannot be written.
    """
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        msg = f"the folder {str(folder)!r} does not exist"
        raise InputError(target, msg, "create it first")
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=folder))
    except OSError as exc:
        msg = f"cannot write in {str(folder)!r} ({exc.strerror})"
        raise InputError(target, msg, "choose a writable folder") from None
    try:
        tmp = tmpdir / target.name
        yield tmp
        if not tmp.is_file():
            msg = "the writer produced no file"
            raise InputError(target, msg, "this is a bug in medimg; please report it")
        try:
            for side in sorted(p for p in tmpdir.iterdir() if p.name != target.name):
                os.replace(side, folder / side.name)
            os.replace(tmp, target)
        except OSError as exc:
            msg = f"cannot move the written file into place ({exc.strerror})"
            raise InputError(target, msg, "check that the path is not a folder and is writable") from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
