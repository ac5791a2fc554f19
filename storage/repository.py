"""Generic create/read/update/delete over one table, inside one session."""

from __future__ import annotations

import builtins
import re
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.errors import DuplicateError, MissingReferenceError, NotOwnedError
from storage.records import MetricPointRecord, to_record
from storage.tables import Base, MetricPointRow

R = TypeVar("R")

_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)")


def translate_integrity_error(error: IntegrityError) -> Exception:
    text = str(error.orig)
    match = _UNIQUE.search(text)
    if match:
        cols = [c.strip() for c in match.group(1).split(",")]
        table = cols[0].split(".")[0]
        return DuplicateError(table, [c.split(".")[-1] for c in cols])
    if "FOREIGN KEY" in text:
        return MissingReferenceError(text)
    return error


class Repository(Generic[R]):
    """``owner`` scopes a table that has an owner column to one demo visitor: it sees its own rows and
    the shared ones (owner NULL), changes only its own, and stamps what it adds. None: every row."""

    def __init__(self, session: Session, row_cls: type[Base], record_cls: type[R], owner: str | None = None):
        self.session, self.row_cls, self.record_cls = session, row_cls, record_cls
        self.owner = owner if "owner" in row_cls.__table__.c else None

    def _visible(self, query):
        if self.owner is None:
            return query
        column = self.row_cls.__table__.c.owner
        return query.where(or_(column.is_(None), column == self.owner))

    def _row(self, ident: str) -> Any:
        row: Any = self.session.get(self.row_cls, ident)  # a row of any table; it has an owner when self.owner is set
        if row is None or self.owner is None or row.owner in (None, self.owner):
            return row
        return None

    def _owned_row(self, ident: str) -> Any:
        row = self._row(ident)
        if row is not None and self.owner is not None and row.owner != self.owner:
            raise NotOwnedError(self.row_cls.__tablename__, ident)
        return row

    def _order(self):
        cols = self.row_cls.__table__.c
        return (cols.created_at, cols.id) if "created_at" in cols else (cols.id,)

    def _flush(self) -> None:
        try:
            self.session.flush()
        except IntegrityError as error:
            raise translate_integrity_error(error) from error

    def add(self, **values: Any) -> R:
        if self.owner is not None:
            values.setdefault("owner", self.owner)
        row = self.row_cls(**values)
        self.session.add(row)
        self._flush()
        return to_record(self.record_cls, row)

    def get(self, ident: str) -> R | None:
        row = self._row(ident)
        return None if row is None else to_record(self.record_cls, row)

    def find(self, **filters: Any) -> list[R]:
        query = self._visible(select(self.row_cls).filter_by(**filters)).order_by(*self._order())
        return [to_record(self.record_cls, row) for row in self.session.scalars(query)]

    def find_one(self, **filters: Any) -> R | None:
        found = self.find(**filters)
        return found[0] if found else None

    def list(self) -> list[R]:
        return self.find()

    def count(self, **filters: Any) -> int:
        query = self._visible(select(func.count()).select_from(self.row_cls).filter_by(**filters))
        return int(self.session.scalar(query) or 0)

    def update(self, ident: str, **values: Any) -> R:
        row = self._owned_row(ident)
        if row is None:
            raise KeyError(ident)
        for key, value in values.items():
            if not hasattr(row, key):
                raise AttributeError(f"{self.row_cls.__tablename__} has no column {key!r}")
            setattr(row, key, value)
        self._flush()
        return to_record(self.record_cls, row)

    # builtins.list: inside this class, a bare ``list`` in an annotation names the method above.
    def add_missing(self, rows: builtins.list[dict[str, Any]], key: builtins.list[str]) -> int:
        """Insert rows, skipping ones whose ``key`` columns are stored already (re-reading an events file is harmless)."""
        if not rows:
            return 0
        statement = sqlite_insert(self.row_cls).on_conflict_do_nothing(index_elements=key)
        # Core execution (not ORM) so executemany reports how many rows were really inserted.
        result = self.session.connection().execute(statement, rows)
        return int(result.rowcount or 0)

    def remove(self, ident: str) -> bool:
        row = self._owned_row(ident)
        if row is None:
            return False
        self.session.delete(row)
        self._flush()
        return True


class MetricPointRepository(Repository[MetricPointRecord]):
    def __init__(self, session: Session):
        super().__init__(session, MetricPointRow, MetricPointRecord)

    def add_many(self, points: list[dict[str, Any]]) -> int:
        return self.add_missing(points, ["run_id", "name", "step"])

    def series(self, run_id: str) -> dict[str, list[tuple[int, float]]]:
        query = (
            select(MetricPointRow.name, MetricPointRow.step, MetricPointRow.value)
            .where(MetricPointRow.run_id == run_id)
            .order_by(MetricPointRow.name, MetricPointRow.step)
        )
        out: dict[str, list[tuple[int, float]]] = {}
        for name, step, value in self.session.execute(query):
            out.setdefault(name, []).append((step, value))
        return out

    def remove_for_run(self, run_id: str) -> int:
        result = self.session.execute(delete(MetricPointRow).where(MetricPointRow.run_id == run_id))
        assert isinstance(result, CursorResult)  # a DELETE's result is a cursor's, which counts the rows it removed
        return int(result.rowcount or 0)

    def _order(self):
        cols = MetricPointRow.__table__.c
        return (cols.run_id, cols.name, cols.step)
