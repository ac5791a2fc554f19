"""Storage against a real SQLite file: migrations from blank, pragmas, constraints, records."""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from storage import Database, DuplicateError, MissingReferenceError, ModelRecord
from storage.database import current_revision, head_revision
from storage.tables import Base


def _id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def db(tmp_path: Path):
    database = Database.open(tmp_path / "ftapp.db")
    yield database
    database.close()


def test_migrations_from_blank_build_exactly_the_tables(db: Database):
    assert current_revision(db.engine) == head_revision()
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_reopening_an_up_to_date_database_keeps_its_rows(tmp_path: Path):
    first = Database.open(tmp_path / "x.db")
    with first.transaction() as tx:
        tx.models.add(id=_id(), name="m", type="project", location="/m")
    first.close()
    again = Database.open(tmp_path / "x.db")
    with again.transaction() as tx:
        assert [m.name for m in tx.models.list()] == ["m"]
    again.close()


def test_pragmas_wal_foreign_keys_busy_timeout(db: Database):
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_unique_names_are_enforced_by_the_database_itself(db: Database, tmp_path: Path):
    with db.transaction() as tx:
        tx.datasets.add(id=_id(), name="same", type="project_csv", location="/a.csv")
    # Bypass the ORM: even raw SQL cannot insert a duplicate name.
    raw = sqlite3.connect(tmp_path / "ftapp.db")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        raw.execute(
            "INSERT INTO datasets (id, name, type, format, features, description, created_at) "
            "VALUES ('x', 'same', 'project_csv', 'plain', '{}', '', '2026-01-01T00:00:00+00:00')"
        )
    raw.close()
    with pytest.raises(DuplicateError) as caught:
        with db.transaction() as tx:
            tx.datasets.add(id=_id(), name="same", type="project_csv", location="/b.csv")
    assert caught.value.table == "datasets" and caught.value.columns == ["name"]


def test_failed_transaction_writes_nothing(db: Database):
    with pytest.raises(MissingReferenceError):
        with db.transaction() as tx:
            tx.models.add(id=_id(), name="kept-out", type="project", location="/m")
            tx.adapters.add(id=_id(), name="a", type="project", model_id="no-such-model")
    with db.transaction() as tx:
        assert tx.models.count() == 0 and tx.adapters.count() == 0


def test_a_model_with_adapters_cannot_be_deleted(db: Database):
    model_id = _id()
    with db.transaction() as tx:
        tx.models.add(id=model_id, name="base", type="project", location="/m")
        tx.adapters.add(id=_id(), name="a", type="project", model_id=model_id)
    with pytest.raises(MissingReferenceError):
        with db.transaction() as tx:
            tx.models.remove(model_id)


def test_records_are_frozen_and_times_are_utc(db: Database):
    with db.transaction() as tx:
        record = tx.models.add(id=_id(), name="m", type="project", location="/m")
    assert isinstance(record, ModelRecord)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.name = "other"  # type: ignore[misc]
    assert record.created_at.utcoffset().total_seconds() == 0


def test_metric_points_ignore_reingested_steps_and_come_back_in_order(db: Database):
    run_id = _id()
    with db.transaction() as tx:
        tx.runs.add(id=run_id, kind="finetune")
        points = [{"run_id": run_id, "step": s, "name": "loss", "value": 1.0 / (s + 1), "time": float(s)} for s in (2, 0, 1)]
        assert tx.metric_points.add_many(points) == 3
        assert tx.metric_points.add_many(points[:2]) == 0
        assert tx.metric_points.series(run_id) == {"loss": [(0, 1.0), (1, 0.5), (2, 1 / 3)]}
    with db.transaction() as tx:
        tx.runs.remove(run_id)
        assert tx.metric_points.count() == 0  # cascade
