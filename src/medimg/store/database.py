"""The index database: an SQLAlchemy engine set up for durability.

SQLite (the default, a file in the store folder): write-ahead log with ``synchronous=FULL`` (a commit is
on disk when it returns), ``BEGIN IMMEDIATE`` for write transactions (engines from ``engine.execution_options(immediate=True)``:
a writer takes the lock up front, so two writers wait for each other instead of failing; readers are
never blocked), a generous busy timeout and foreign keys on; ``lower()`` is replaced by a Unicode-aware one
(person-name matching compares lower-cased names).
PostgreSQL (``postgresql+psycopg://...``): its defaults are already durable.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event

from ..errors import InputError
from .schema import metadata

__all__ = ["make_engine"]

# every association, STOW-RS request and API thread may hold a connection at once (the default 5 + 10
# would make the 16th concurrent sender wait 30 s for one)
_POOL: dict[str, Any] = {"pool_size": 8, "max_overflow": 72, "pool_timeout": 120}


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def make_engine(url: str) -> Engine:
    """Create the engine for ``url`` and the tables if they do not exist yet."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False},
                                   **_POOL)

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN itself
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=60000")
                cur.close()
                # SQLite's own lower() changes ASCII letters only: "Äneas" would not match "äneas*"
                dbapi_conn.create_function("lower", 1, _lower, deterministic=True)

            @event.listens_for(engine, "begin")
            def _begin_immediate(conn: Any) -> None:
                immediate = conn.get_execution_options().get("immediate", False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
        else:
            engine = create_engine(url, pool_pre_ping=True, **_POOL)
        metadata.create_all(engine)
    except Exception as exc:
        raise InputError(url, f"cannot open the index database ({type(exc).__name__}: {exc})",
                         "check the URL, that the server is running and that the driver is installed") from None
    return engine
