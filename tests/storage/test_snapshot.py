"""Whole-database export/import: lossless round trip, duplicates counted, bad files refused."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from storage import Database, SnapshotError
from storage.snapshot import export_snapshot, import_snapshot


def _fill(db: Database) -> None:
    model, dataset, prompt, run, adapter = (str(uuid.uuid4()) for _ in range(5))
    with db.transaction() as tx:
        tx.models.add(id=model, name="base", type="project", location="/m", num_parameters=123)
        tx.datasets.add(id=dataset, name="data", type="project_csv", location="/d.csv", features='{"a": "string"}', num_rows=2)
        tx.prompts.add(id=prompt, name="p", dataset_id=dataset, prompt_template="{a}", input_template="{a}", completion_template="")
        tx.configs.add(id=str(uuid.uuid4()), type="lora_config", config='{"r":8}', content_hash="h1")
        tx.runs.add(id=run, kind="finetune", status="succeeded", base_model_id=model, dataset_id=dataset, prompt_id=prompt)
        tx.adapters.add(id=adapter, name="ad", type="project", model_id=model, run_id=run, prompt_id=prompt, location="/a")
        tx.runs.add(id=str(uuid.uuid4()), kind="evaluate", adapter_id=adapter, parent_run_id=run)
        tx.metric_points.add_many([{"run_id": run, "step": s, "name": "loss", "value": 2.0 - s, "time": 1.5 * s} for s in range(3)])
        tx.artifacts.add(id=str(uuid.uuid4()), run_id=run, kind="adapter", path="/a", size_bytes=10)


def test_round_trip_into_an_empty_database_is_identical(tmp_path: Path):
    source = Database.open(tmp_path / "a.db")
    _fill(source)
    with source.transaction() as tx:
        first = export_snapshot(tx)
    target = Database.open(tmp_path / "b.db")
    with target.transaction() as tx:
        report = import_snapshot(tx, json.loads(json.dumps(first)))
    assert report["metric_points"].imported == 3 and report["runs"].imported == 2
    assert all(r.duplicates == 0 for r in report.values())
    with target.transaction() as tx:
        assert export_snapshot(tx) == first


def test_importing_twice_counts_every_row_as_duplicate(tmp_path: Path):
    db = Database.open(tmp_path / "a.db")
    _fill(db)
    with db.transaction() as tx:
        snapshot = export_snapshot(tx)
    with db.transaction() as tx:
        report = import_snapshot(tx, snapshot)
    assert {t: r.imported for t, r in report.items()} == {t: 0 for t in report}
    assert report["models"].duplicates == 1 and report["metric_points"].duplicates == 3
    assert report["models"].duplicate_keys == ["base"]


def test_same_name_other_id_is_a_duplicate_and_children_are_repointed(tmp_path: Path):
    source = Database.open(tmp_path / "a.db")
    _fill(source)
    with source.transaction() as tx:
        snapshot = export_snapshot(tx)
    target = Database.open(tmp_path / "b.db")
    existing = str(uuid.uuid4())
    with target.transaction() as tx:
        tx.models.add(id=existing, name="base", type="project", location="/elsewhere")
    with target.transaction() as tx:
        report = import_snapshot(tx, snapshot)
    assert report["models"].duplicates == 1 and report["adapters"].imported == 1
    with target.transaction() as tx:
        assert tx.adapters.find_one(name="ad").model_id == existing


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.update(format="other"), "not an ftapp database export"),
        (lambda s: s.update(schema_revision="9999"), "schema revision"),
        (lambda s: s["tables"].update(bogus=[]), "unknown tables"),
        (lambda s: s["tables"]["models"][0].update(colour="red"), "unknown columns"),
        (lambda s: s["tables"]["models"][0].pop("name"), "missing name"),
        (lambda s: s["tables"]["models"][0].update(created_at="yesterday"), "not a timestamp"),
        (lambda s: s["tables"]["prompts"][0].update(dataset_id="gone"), "refer to rows"),
        (lambda s: s["tables"]["models"][0].update(id=12345), "id must be text"),
        (lambda s: s["tables"]["models"][0].update(name=[[["nested"]]]), "name must be text"),
        (lambda s: s["tables"]["models"][0].update(num_parameters="lots"), "num_parameters must be a whole number"),
        (lambda s: s["tables"]["models"][0].update(num_parameters=True), "num_parameters must be a whole number"),
        (lambda s: s["tables"]["models"][0].update(num_parameters=10**30), "out of the 64-bit range"),
        (lambda s: s["tables"]["models"][0].update(gated="yes"), "gated must be true or false"),
        (lambda s: s["tables"]["models"][0].update(name="x" * 201), "name is longer than 200"),
        (lambda s: s["tables"]["metric_points"][0].update(value="nan"), "value must be a number"),
        (lambda s: s["tables"]["metric_points"][0].update(value=10**400), "too large"),
        (lambda s: s["tables"]["models"][0].update(created_at="2024-01-01T00:00:00"), "no time zone"),
    ],
)
def test_bad_snapshots_are_refused_and_nothing_is_written(tmp_path: Path, mutate, message):
    source = Database.open(tmp_path / "a.db")
    _fill(source)
    with source.transaction() as tx:
        snapshot = export_snapshot(tx)
    if "refer to rows" in message:
        snapshot["tables"]["datasets"] = []
    mutate(snapshot)
    target = Database.open(tmp_path / "b.db")
    with pytest.raises(SnapshotError, match=message):
        with target.transaction() as tx:
            import_snapshot(tx, snapshot)
    with target.transaction() as tx:
        assert tx.models.count() == 0 and tx.prompts.count() == 0 and tx.runs.count() == 0


def test_the_callers_vet_sees_only_the_rows_that_will_be_written_and_can_refuse_them(tmp_path: Path):
    source = Database.open(tmp_path / "a.db")
    _fill(source)
    with source.transaction() as tx:
        snapshot = export_snapshot(tx)
    target = Database.open(tmp_path / "b.db")
    with target.transaction() as tx:
        tx.models.add(id=str(uuid.uuid4()), name="base", type="project", location="/elsewhere")
    seen = {}

    def vet(planned):
        seen.update({table: [index for index, _row in rows] for table, rows in planned.items() if rows})
        raise SnapshotError("refused by policy")

    with pytest.raises(SnapshotError, match="refused by policy"):
        with target.transaction() as tx:
            import_snapshot(tx, snapshot, vet)
    assert "models" not in seen and seen["runs"] == [0, 1] and seen["metric_points"] == [0, 1, 2]
    with target.transaction() as tx:
        assert tx.models.count() == 1 and tx.datasets.count() == 0 and tx.runs.count() == 0


def test_an_export_of_revision_0005_imports_with_null_outcome_columns(tmp_path: Path):
    """Exports made before revision 0006 carry no outcome columns for runs; their rows come in with NULL there."""
    source = Database.open(tmp_path / "a.db")
    _fill(source)
    with source.transaction() as tx:
        run_id = tx.runs.find(kind="finetune")[0].id
        tx.runs.update(run_id, done_payload='{"ok": true}', failure_type="X")  # not in a 0005 export
        snapshot = export_snapshot(tx)
    outcome = ("started_payload", "done_payload", "failure_type", "failure_message", "last_event_at")
    for row in snapshot["tables"]["runs"]:
        for column in outcome:
            row.pop(column)
    snapshot["schema_revision"] = "0005"
    target = Database.open(tmp_path / "b.db")
    with target.transaction() as tx:
        report = import_snapshot(tx, json.loads(json.dumps(snapshot)))
    assert report["runs"].imported == 2
    with target.transaction() as tx:
        imported = tx.runs.get(run_id)
    assert imported.status == "succeeded" and all(getattr(imported, column) is None for column in outcome)
    snapshot["schema_revision"] = "0004"  # older than that, the rows may not fit: refused
    with pytest.raises(SnapshotError, match="schema revision '0004'; this version reads '0008', '0005', '0006', '0007'"):
        with Database.open(tmp_path / "c.db").transaction() as tx:
            import_snapshot(tx, snapshot)
