"""Revision 0006 (a run's outcome in its row) on a real SQLite file: from blank, and from 0005 with rows in it."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

from alembic import command

from storage import Database
from storage.database import alembic_config, current_revision, head_revision, make_engine

OUTCOME_COLUMNS = {"started_payload", "done_payload", "failure_type", "failure_message", "last_event_at"}


def _columns(path: Path) -> set[str]:
    with sqlite3.connect(path) as raw:
        return {row[1] for row in raw.execute("PRAGMA table_info(runs)")}


def _migrate(path: Path, revision: str, downgrade: bool = False) -> None:
    engine = make_engine(path)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if downgrade else command.upgrade)(config, revision)
    engine.dispose()


def test_from_blank_a_run_has_no_outcome_until_one_is_stored(tmp_path: Path):
    db = Database.open(tmp_path / "ftapp.db")
    assert current_revision(db.engine) == head_revision()  # 0006 or a later revision
    assert OUTCOME_COLUMNS <= _columns(tmp_path / "ftapp.db")
    run_id = str(uuid.uuid4())
    with db.transaction() as tx:
        fresh = tx.runs.add(id=run_id, kind="serve", status="running")
        assert (fresh.started_payload, fresh.done_payload, fresh.failure_type, fresh.last_event_at) == (None,) * 4
        when = datetime(2026, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)
        tx.runs.update(
            run_id, started_payload='{"url": "http://127.0.0.1:1"}', failure_type="OSError", failure_message="disk", last_event_at=when
        )
    with db.transaction() as tx:
        stored = tx.runs.get(run_id)
    assert stored.started_payload == '{"url": "http://127.0.0.1:1"}' and stored.last_event_at == when
    db.close()


def test_from_0005_existing_runs_keep_their_values_and_get_null_outcomes(tmp_path: Path):
    path = tmp_path / "ftapp.db"
    _migrate(path, "0005")
    assert not OUTCOME_COLUMNS & _columns(path)
    run_id = str(uuid.uuid4())
    with sqlite3.connect(path) as raw:
        raw.execute(
            "INSERT INTO runs (id, kind, name, status, spec, run_dir, gpus, created_at, events_offset, "
            "malformed_events, devices_requested, error_text) VALUES (?, 'export', 'old', 'succeeded', '{}', "
            "'/h/runs/x', 'cpu', '2026-01-02T03:04:05+00:00', 812, 1, 'cpu', 'kept')",
            (run_id,),
        )

    db = Database.open(path)  # migrates to the head on open
    assert current_revision(db.engine) == head_revision()
    with db.transaction() as tx:
        old = tx.runs.get(run_id)
    assert (old.name, old.status, old.events_offset, old.malformed_events, old.error_text) == ("old", "succeeded", 812, 1, "kept")
    assert (old.started_payload, old.done_payload, old.failure_type, old.failure_message, old.last_event_at) == (None,) * 5
    db.close()

    _migrate(path, "0005", downgrade=True)  # and back: the columns go, the row stays
    assert not OUTCOME_COLUMNS & _columns(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT name, events_offset FROM runs").fetchall() == [("old", 812)]
