"""Errors raised by medimg.

Every error names the input it is about (a file, a series, a request) and says what is wrong and what to
do, in one line, so the CLI can print it as it is.  Library users can catch :class:`MedimgError` for all
of them, or the narrower classes below.
"""

from __future__ import annotations

from pathlib import Path


class MedimgError(Exception):
    """Base class of all medimg errors."""


class InputError(MedimgError):
    """An input cannot be read: unreadable file, not an image, broken or truncated data.

    ``source`` names the file or object; the message is already a complete sentence about it.
    """

    def __init__(self, source: str | Path | None, problem: str, hint: str | None = None) -> None:
        self.source = str(source) if source is not None else None
        self.problem = problem
        self.hint = hint
        text = f"{self.source}: {problem}" if self.source else problem
        if hint:
            text = f"{text}; {hint}"
        super().__init__(text)

    def __reduce__(self) -> tuple[type, tuple[str | None, str, str | None]]:
        # Keeps the error intact across process pools.
        return (type(self), (self.source, self.problem, self.hint))


class NotDicomError(InputError):
    """A file that is not DICOM at all (a licence text, an XML annotation): skipped when indexing folders."""


class SeriesError(InputError):
    """A series was read but no honest volume can be built from it (mixed geometry and so on)."""


class SeriesSelectionError(InputError):
    """The input holds zero or several series and the caller did not say which one to use."""


class UnsupportedFormatError(InputError):
    """The file format or the requested output format is not supported."""


class OutputError(MedimgError):
    """An output cannot be written (missing folder, permissions, a writer that failed)."""
