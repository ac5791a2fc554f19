"""Owner-scoped transactions (the public demo): a visitor sees shared rows and its own, changes only its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import Database, NotOwnedError


@pytest.fixture
def db(tmp_path: Path):
    database = Database.open(tmp_path / "ftapp.db")
    yield database
    database.close()


def dataset(tx, ident: str) -> None:
    tx.datasets.add(id=ident, name=ident, type="project_jsonl", location=f"/data/{ident}.jsonl")


def test_a_visitor_sees_shared_rows_and_its_own_and_stamps_what_it_adds(db: Database):
    with db.transaction() as tx:
        dataset(tx, "shared")
    with db.for_owner("alice").transaction() as tx:
        dataset(tx, "alices")
    with db.for_owner("bob").transaction() as tx:
        dataset(tx, "bobs")
        bob_sees = sorted(d.name for d in tx.datasets.list())
        bob_count = tx.datasets.count()
        alices_from_bob = tx.datasets.get("alices")
    with db.transaction() as tx:
        owners = {d.name: d.owner for d in tx.datasets.list()}

    assert bob_sees == ["bobs", "shared"] and bob_count == 2 and alices_from_bob is None
    assert owners == {"shared": None, "alices": "alice", "bobs": "bob"}


def test_a_visitor_changes_only_its_own_rows(db: Database):
    with db.transaction() as tx:
        dataset(tx, "shared")
    with db.for_owner("alice").transaction() as tx:
        dataset(tx, "alices")
    with pytest.raises(NotOwnedError), db.for_owner("alice").transaction() as tx:
        tx.datasets.update("shared", description="mine now")
    with pytest.raises(NotOwnedError), db.for_owner("alice").transaction() as tx:
        tx.datasets.remove("shared")
    with db.for_owner("bob").transaction() as tx:
        assert tx.datasets.remove("alices") is False  # not even visible
        with pytest.raises(KeyError):
            tx.datasets.update("alices", description="x")
    with db.for_owner("alice").transaction() as tx:
        assert tx.datasets.remove("alices") is True
    with db.transaction() as tx:
        assert [d.name for d in tx.datasets.list()] == ["shared"] and tx.datasets.get("shared").description == ""


def test_tables_without_owners_are_shared_by_everyone(db: Database):
    with db.for_owner("alice").transaction() as tx:
        tx.models.add(id="m", name="tiny", type="project", location="/models/tiny")
    with db.for_owner("bob").transaction() as tx:
        assert [m.name for m in tx.models.list()] == ["tiny"]
