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


class NotOwnedError(StorageError):
    """A demo visitor's transaction tried to change a row it can see but does not own (a shared one)."""

    def __init__(self, table: str, ident: str):
        self.table, self.ident = table, ident
        super().__init__(f"{table} row {ident} is shared; a visitor's transaction may only change its own rows")
