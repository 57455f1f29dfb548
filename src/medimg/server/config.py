"""Configuration of ``medimg serve``: one dataclass, filled from a TOML file and/or the command line.

Example ``medimg.toml``::

    store = "/var/lib/medimg"            # folder of the study store
    database = ""                        # "" = SQLite in the store; or postgresql+psycopg://...
    host = "127.0.0.1"                   # bind address of both services
    aet = "MEDIMG"
    dicom_port = 11112
    http_port = 8080
    analysis = true
    quiet_seconds = 10                   # a study is complete after this long without new instances
    analysis_workers = 1                 # analyses run in this many worker processes
    max_attempts = 3                     # an analysis that errors is tried this often in all
    retry_seconds = 30                   # back-off before the 2nd attempt; doubles after each
    analysis_timeout = 1800              # seconds one analysis may run before its worker is stopped; 0 = none
    destination = "PACS"                 # where SR/SEG results go (a name under [peers])
    priors_from = "PACS"                 # where prior studies are fetched from
    webhook = "http://127.0.0.1:9000/urgent"
    conflict = "reject"                  # same SOP Instance UID, different bytes: reject | keep | replace
    cors_origins = ["http://localhost:3000"]   # e.g. an OHIF viewer served elsewhere
    auth = true                          # /api/* needs a signed-in user (false: only review/sign/users do)

    [peers.PACS]
    aet = "ORTHANC"
    host = "127.0.0.1"
    port = 4242
    dicomweb = "http://127.0.0.1:8043/dicom-web"   # optional

    [limits]
    max_pdu = 1048576
    max_associations = 16
    max_body_bytes = 1073741824
    max_query_results = 1000
    max_instance_bytes = 1073741824
    max_sequence_depth = 32
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["Limits", "Peer", "ServerConfig", "load_config"]


@dataclass(frozen=True)
class Peer:
    """A known DICOM node (a PACS, a modality, a workstation)."""

    aet: str
    host: str
    port: int
    dicomweb: str = ""  # base URL of its DICOMweb service, if any


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may cost; every one is enforced and tested."""

    max_pdu: int = 1 << 20  # our maximum PDU receive size (bytes; 0 would mean unlimited: refused)
    max_associations: int = 16  # concurrent DICOM associations
    max_body_bytes: int = 1 << 30  # HTTP request body (STOW-RS)
    max_query_results: int = 1000  # C-FIND / QIDO-RS matches returned per request
    max_instance_bytes: int = 1 << 30  # one instance
    max_sequence_depth: int = 32  # nesting of sequences in a received data set


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``medimg serve`` needs.  Only ``store`` is required."""

    store: Path
    database: str = ""
    host: str = "127.0.0.1"
    aet: str = "MEDIMG"
    dicom_port: int = 11112
    http_port: int = 8080
    analysis: bool = True
    quiet_seconds: float = 10.0
    analysis_workers: int = 1
    max_attempts: int = 3
    retry_seconds: float = 30.0  # back-off before the 2nd attempt of a failed analysis; doubles after
    analysis_timeout: float = 1800.0  # seconds one analysis may run (then its worker is killed); 0 = no limit
    destination: str = ""
    priors_from: str = ""
    webhook: str = ""
    conflict: str = "reject"
    peers: dict[str, Peer] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    tcp_nodelay: bool = True
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call DICOMweb (e.g. an OHIF viewer)
    auth: bool = True  # sessions required on /api/* (server/auth.py); false for ingest-only nodes

    def peer(self, name: str) -> Peer:
        """The peer called ``name`` (its key in [peers] or its AE title)."""
        if name in self.peers:
            return self.peers[name]
        for p in self.peers.values():
            if p.aet == name:
                return p
        raise InputError(name, "is not a configured peer", f"add it under [peers] (known: {', '.join(self.peers) or 'none'})")

    def with_overrides(self, **kw: Any) -> ServerConfig:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


def _check(cfg: ServerConfig, source: str) -> ServerConfig:
    if not cfg.aet or len(cfg.aet) > 16 or any(c in cfg.aet for c in "\\\n\r\t"):
        raise InputError(source, f"AE title {cfg.aet!r} is not 1-16 characters without backslash")
    for name, port in (("dicom_port", cfg.dicom_port), ("http_port", cfg.http_port)):
        if not 0 <= port <= 65535:
            raise InputError(source, f"{name} {port} is not a TCP port")
    if cfg.conflict not in ("reject", "keep", "replace"):
        raise InputError(source, f"conflict policy {cfg.conflict!r} is not reject, keep or replace")
    for name in (cfg.destination, cfg.priors_from):
        if name:
            cfg.peer(name)
    t = cfg.analysis_timeout
    if isinstance(t, bool) or not isinstance(t, int | float) or not t >= 0:
        raise InputError(source, f"analysis_timeout {cfg.analysis_timeout} is not a number of seconds >= 0",
                         "use 0 for no limit")
    lim = cfg.limits
    if lim.max_pdu < 4096 or lim.max_associations < 1 or lim.max_query_results < 1:
        raise InputError(source, "limits: max_pdu must be >= 4096, max_associations and "
                         "max_query_results >= 1")
    return cfg


def load_config(path: str | Path | None = None, **overrides: Any) -> ServerConfig:
    """Read a TOML config (optional) and apply command-line ``overrides`` (``None`` = not given)."""
    data: dict[str, Any] = {}
    source = str(path) if path else "command line"
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise InputError(path, f"cannot read the config ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(path, f"is not valid TOML ({exc})") from None
    known = {f.name for f in fields(ServerConfig)}
    unknown = set(data) - known
    if unknown:
        raise InputError(source, f"unknown setting(s): {', '.join(sorted(unknown))}",
                         f"known: {', '.join(sorted(known))}")
    try:
        peers = {k: Peer(**v) for k, v in data.pop("peers", {}).items()}
        limits = Limits(**data.pop("limits", {}))
    except TypeError as exc:
        raise InputError(source, f"bad [peers] or [limits] entry ({exc})") from None
    store = overrides.pop("store", None) or data.pop("store", None)
    data.pop("store", None)
    if not store:
        raise InputError(source, "no store folder given", "pass --store DIR or set store in the config")
    if "cors_origins" in data:
        data["cors_origins"] = tuple(data["cors_origins"])
    cfg = ServerConfig(store=Path(store), peers=peers, limits=limits, **data)
    return _check(cfg.with_overrides(**overrides), source)
