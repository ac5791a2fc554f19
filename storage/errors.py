"""Errors ``storage`` raises; the service layer translates them into domain errors."""

from __future__ import annotations


class StorageError(Exception):
    pass


class DuplicateError(StorageError):
    """A UNIQUE constraint refused the row."""

    def __init__(self, table: str, columns: list[str]):
        self.table, self.columns = table, columns
        super().__init__(f"{table}: a row with the same {', '.join(columns)} already exists")


class MissingReferenceError(StorageError):
    """A FOREIGN KEY constraint refused the change (a dangling id, or a delete that would orphan rows)."""


class SnapshotError(StorageError):
    """A database export file that is not one this version can import."""
