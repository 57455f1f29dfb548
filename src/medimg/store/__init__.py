"""The durable study store: DICOM instances on disk under server-generated names, indexed in SQLAlchemy
(SQLite by default, PostgreSQL by URL).  See :mod:`medimg.store.store` for the durability contract and
:mod:`medimg.store.query` for C-FIND / QIDO-RS matching."""

from .query import LEVELS, QueryError, find, supported_keys
from .store import (
    ConflictPolicy,
    InstanceRejected,
    Store,
    StoredInstance,
    StoreResult,
    VerifyReport,
)
from .validate import StructureError, check_dataset_structure

__all__ = [
    "LEVELS",
    "ConflictPolicy",
    "InstanceRejected",
    "QueryError",
    "Store",
    "StoreResult",
    "StoredInstance",
    "StructureError",
    "VerifyReport",
    "check_dataset_structure",
    "find",
    "supported_keys",
]
