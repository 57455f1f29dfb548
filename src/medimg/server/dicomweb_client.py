"""A small DICOMweb client (httpx): QIDO-RS search, WADO-RS retrieve of Part 10 files, STOW-RS, and
:func:`import_study` that copies a study from another PACS's DICOMweb service into the store.

Retrieved bodies are parsed as they arrive, one instance in memory at a time, and a study is fetched
series by series::

    counts = import_study(server, "http://pacs:8042/dicom-web", "1.2.3...")
    # {"received": 128, "stored": 128, "duplicate": 0, "failed": 0}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import InputError
from ..store import InstanceRejected, Store
from .multipart import MultipartError, iter_parts, new_boundary, parse_media_type

if TYPE_CHECKING:
    from .app import MedimgServer

__all__ = ["DicomWebClient", "DicomWebError", "import_study"]

log = logging.getLogger("medimg.server.dicomweb_client")

ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'


class DicomWebError(InputError):
    """A DICOMweb request that failed: ``status`` is the HTTP status (0 when no answer came)."""

    def __init__(self, url: str, problem: str, status: int = 0, hint: str | None = None) -> None:
        super().__init__(url, problem, hint)
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, self.problem, self.status, self.hint))


def _values(item: dict[str, Any], tag: str) -> list[Any]:
    return list(item.get(tag, {}).get("Value", []))


class DicomWebClient:
    """Client of one DICOMweb service at ``base_url`` (e.g. ``http://host:8042/dicom-web``)."""

    def __init__(self, base_url: str, *, timeout: float = 120.0, headers: dict[str, str] | None = None,
                 client: httpx.Client | None = None, auth: tuple[str, str] | None = None) -> None:
        """``auth``: (user name, password) sent as HTTP Basic credentials (a medimg server with
        ``auth = true``, an Orthanc with users)."""
        self.base_url = base_url.rstrip("/")
        self._own = client is None
        self.http = client or httpx.Client(timeout=timeout, headers=headers or {}, auth=auth)

    def close(self) -> None:
        if self._own:
            self.http.close()

    def __enter__(self) -> DicomWebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ plumbing
    def _url(self, path: str) -> str:
        return self.base_url + path

    def _fail(self, response: httpx.Response) -> DicomWebError:
        text = response.text.strip().replace("\n", " ")[:300] if response.content else ""
        return DicomWebError(str(response.request.url), f"HTTP {response.status_code} {text}".strip(),
                             response.status_code)

    def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        url = self._url(path)
        try:
            r = self.http.get(url, params=params, headers={"Accept": "application/dicom+json"})
        except httpx.HTTPError as exc:
            raise DicomWebError(url, f"no answer ({exc})") from None
        if r.status_code == 204:
            return []
        if r.status_code != 200:
            raise self._fail(r)
        try:
            return r.json() if r.content else []
        except ValueError:
            raise DicomWebError(url, "the answer is not JSON") from None

    # ------------------------------------------------------------------------------ QIDO-RS
    def search_studies(self, **query: Any) -> list[dict[str, Any]]:
        """QIDO-RS studies; ``query`` holds match keys and ``limit``/``offset``/``includefield``."""
        return list(self._get_json("/studies", query))

    def search_series(self, study_uid: str | None = None, **query: Any) -> list[dict[str, Any]]:
        path = f"/studies/{study_uid}/series" if study_uid else "/series"
        return list(self._get_json(path, query))

    def search_instances(self, study_uid: str | None = None, series_uid: str | None = None,
                         **query: Any) -> list[dict[str, Any]]:
        if study_uid and series_uid:
            path = f"/studies/{study_uid}/series/{series_uid}/instances"
        elif study_uid:
            path = f"/studies/{study_uid}/instances"
        else:
            path = "/instances"
        return list(self._get_json(path, query))

    def metadata(self, study_uid: str, series_uid: str | None = None,
                 sop_uid: str | None = None) -> list[dict[str, Any]]:
        path = f"/studies/{study_uid}"
        if series_uid:
            path += f"/series/{series_uid}"
            if sop_uid:
                path += f"/instances/{sop_uid}"
        return list(self._get_json(path + "/metadata"))

    # ------------------------------------------------------------------------------ WADO-RS
    def retrieve(self, study_uid: str, series_uid: str | None = None,
                 sop_uid: str | None = None) -> Iterator[bytes]:
        """The Part 10 files of a study, series or instance, as stored by the server, one at a time."""
        path = f"/studies/{study_uid}"
        if series_uid:
            path += f"/series/{series_uid}"
            if sop_uid:
                path += f"/instances/{sop_uid}"
        url = self._url(path)
        try:
            with self.http.stream("GET", url, headers={"Accept": ACCEPT_DICOM}) as r:
                if r.status_code != 200:
                    r.read()
                    raise self._fail(r)
                ctype = r.headers.get("content-type", "")
                try:
                    mt = parse_media_type(ctype)
                except MultipartError:
                    raise DicomWebError(url, f"unexpected Content-Type {ctype!r}") from None
                if mt.type == "application/dicom":
                    yield r.read()
                    return
                if mt.type != "multipart/related" or not mt.param("boundary"):
                    raise DicomWebError(url, f"unexpected Content-Type {ctype!r}")
                try:
                    for part in iter_parts(r.iter_bytes(), mt.param("boundary")):
                        yield part.content
                except MultipartError as exc:
                    raise DicomWebError(url, f"malformed multipart answer: {exc}") from None
        except httpx.HTTPError as exc:
            raise DicomWebError(url, f"the transfer failed ({exc})") from None

    # ------------------------------------------------------------------------------ STOW-RS
    def store(self, files: Iterable[bytes], study_uid: str | None = None) -> tuple[int, dict[str, Any]]:
        """STOW-RS the Part 10 ``files`` in one request; returns (HTTP status, response JSON)."""
        boundary = new_boundary()

        def body() -> Iterator[bytes]:
            for data in files:
                yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                yield data
                yield b"\r\n"
            yield f"--{boundary}--\r\n".encode()

        url = self._url(f"/studies/{study_uid}" if study_uid else "/studies")
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": "application/dicom+json"}
        try:
            r = self.http.post(url, content=body(), headers=headers)
        except httpx.HTTPError as exc:
            raise DicomWebError(url, f"no answer ({exc})") from None
        if r.status_code not in (200, 202, 409):
            raise self._fail(r)
        try:
            return r.status_code, (r.json() if r.content else {})
        except ValueError:
            return r.status_code, {}


def import_study(target: MedimgServer | Store, base_url: str, study_uid: str, *,
                 client: DicomWebClient | None = None) -> dict[str, int]:
    """Copy study ``study_uid`` from the DICOMweb service at ``base_url`` into ``target`` (a running
    :class:`~medimg.server.app.MedimgServer`, which is told of each stored instance, or a bare
    :class:`~medimg.store.Store`).  Series by series; every file goes through the store's checks.

    Returns counts: received, stored (new or replaced), duplicate (already held, same bytes or kept),
    failed (refused by the store or in conflict)."""
    store = target if isinstance(target, Store) else target.store
    own = client is None
    dw = client or DicomWebClient(base_url)
    source = f"dicomweb:{base_url}"[:96]
    counts = {"received": 0, "stored": 0, "duplicate": 0, "failed": 0}
    try:
        series = dw.search_series(study_uid)
        if not series:
            raise DicomWebError(f"{dw.base_url}/studies/{study_uid}", "the study has no series there",
                                404)
        for item in series:
            series_uid = next(iter(_values(item, "0020000E")), None)
            if not series_uid:
                continue
            for data in dw.retrieve(study_uid, str(series_uid)):
                counts["received"] += 1
                try:
                    result = store.put_file_bytes(data, source=source)
                except InstanceRejected as exc:
                    counts["failed"] += 1
                    log.warning("import of study %s: %s", study_uid, exc)
                    continue
                if not result.ok:
                    counts["failed"] += 1
                    log.warning("import of study %s: %s %s", study_uid, result.sop_instance_uid,
                                result.reason)
                elif result.outcome in ("stored", "replaced"):
                    counts["stored"] += 1
                else:
                    counts["duplicate"] += 1
                if result.ok and not isinstance(target, Store):
                    target.instance_stored(result, source)
    finally:
        if own:
            dw.close()
    return counts
