"""SQLite storage: tables, migrations, transactions. Records leave as frozen dataclasses.

Imports nothing of the project.
"""

from storage.database import Database, Transaction
from storage.errors import DuplicateError, MissingReferenceError, SnapshotError, StorageError
from storage.records import (
    AdapterRecord,
    ArtifactRecord,
    ConfigRecord,
    DatasetRecord,
    MetricPointRecord,
    ModelRecord,
    PromptRecord,
    RunRecord,
)

__all__ = [
    "AdapterRecord",
    "ArtifactRecord",
    "ConfigRecord",
    "Database",
    "DatasetRecord",
    "DuplicateError",
    "MetricPointRecord",
    "MissingReferenceError",
    "ModelRecord",
    "PromptRecord",
    "RunRecord",
    "SnapshotError",
    "StorageError",
    "Transaction",
]
