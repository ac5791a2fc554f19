"""DB export -> import into an empty home -> export again: identical, and no secrets in it."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

import pytest

from ftapp.errors import ValidationError
from ftapp.prompts.configs import AddConfigRequest
from ftapp.services import open_services
from ftapp.settings import Settings

TOKEN = "hf_" + "A1b2C3d4" * 5


def test_round_trip_is_identical_and_secret_free(services, registered, demo_kit, tmp_path: Path, monkeypatch):
    services.hf_token.store(TOKEN)
    services.configs.add(AddConfigRequest(type="lora_config", config='{"r": 4}'))
    first = services.database.export_to(tmp_path / "export.json").read_text()
    assert TOKEN not in first and "hf_token" not in first
    data = json.loads(first)
    assert {len(data["tables"][t]) for t in ("models", "datasets", "prompts")} == {1}

    other = open_services(Settings.from_env(tmp_path / "other-home"))
    try:
        # The model folder lies outside both homes: the importer vouches for it, and for the home the export came
        # from (its dataset copy), so every path is kept as it was.
        trusted = (services.settings.home, demo_kit.model_dir)
        report = other.database.import_from(tmp_path / "export.json", trusted_roots=trusted)
        # Presets already exist in a fresh home, so those configs come back as counted duplicates.
        assert report.imported["models"] == 1 and report.imported["prompts"] == 1
        assert report.duplicates["configs"] == len(data["tables"]["configs"]) - 1
        assert other.database.export_json() == first
        again = other.database.import_from(tmp_path / "export.json", trusted_roots=trusted)
        assert again.total_imported == 0 and again.duplicates["models"] == 1
    finally:
        other.close()


def test_another_homes_paths_are_re_rooted_and_folders_nobody_vouched_for_refused(services, registered, demo_kit, tmp_path: Path):
    services.database.export_to(tmp_path / "export.json")
    other = open_services(Settings.from_env(tmp_path / "other-home"))
    try:
        with pytest.raises(ValidationError) as refused:
            other.database.import_from(tmp_path / "export.json")
        assert [p.rule_id for p in refused.value.problems] == ["DB-003"]
        assert "models row 0 ('tiny'): location" in str(refused.value) and str(demo_kit.model_dir) in str(refused.value)
        assert other.models.list() == [] and other.datasets.list() == []

        report = other.database.import_from(tmp_path / "export.json", trusted_roots=(demo_kit.model_dir,))
        moved = other.datasets.get(registered.dataset.id).location
        assert moved == str(other.settings.datasets_dir / Path(registered.dataset.location).relative_to(services.settings.datasets_dir))
        assert len(report.rerooted) == 1 and report.rerooted[0].startswith("datasets row 0 ('intents'): location ")
    finally:
        other.close()


def test_live_runs_of_an_export_come_in_as_failed_history_without_a_process(services, registered, tmp_path: Path):
    statuses = {"queued": None, "running": os.getpid(), "succeeded": os.getpid(), "cancelled": None}
    with services.db.transaction() as tx:
        for status, pid in statuses.items():
            run_id = str(uuid.uuid4())
            run_dir = services.settings.runs_dir / run_id
            tx.runs.add(
                id=run_id,
                kind="finetune",
                name=status,
                status=status,
                spec="{}",
                run_dir=str(run_dir),
                log_path=str(run_dir / "trainer.log"),
                pid=pid,
                process_start_time=1.0 if pid else None,
                base_model_id=registered.model.id,
            )
    services.database.export_to(tmp_path / "export.json")
    other = open_services(Settings.from_env(tmp_path / "other-home"))
    try:
        report = other.database.import_from(tmp_path / "export.json", trusted_roots=(registered.model.location,))
        assert report.live_runs_made_history == 2 and report.imported["runs"] == 4
        runs = {r.name: r for r in other.runs.list()}
        assert {name: r.status for name, r in runs.items()} == {
            "queued": "failed",
            "running": "failed",
            "succeeded": "succeeded",
            "cancelled": "cancelled",
        }
        assert all(r.pid is None and r.process_start_time is None for r in runs.values())
        assert runs["running"].error_text.startswith("imported while running; imported runs are history")
        assert runs["queued"].error_cause == "imported" and runs["queued"].finished_at is not None
        assert all(r.run_dir == str(other.settings.runs_dir / r.id) for r in runs.values())
    finally:
        other.close()


def test_token_file_is_private_and_never_in_the_database(services, tmp_path: Path):
    services.hf_token.store(TOKEN)
    mode = stat.S_IMODE(os.stat(services.hf_token.path).st_mode)
    assert mode == 0o600
    assert services.hf_token.status().source in ("file", "environment")
    assert TOKEN.encode() not in services.settings.db_path.read_bytes()
    services.hf_token.clear()
    assert services.hf_token.status().source in ("none", "environment")


def test_run_payloads_travel_scrubbed_as_untrusted_json_and_an_older_export_still_imports(services, registered, tmp_path: Path):
    run_id = str(uuid.uuid4())
    run_dir = services.settings.runs_dir / run_id
    with services.db.transaction() as tx:
        tx.runs.add(
            id=run_id,
            kind="export",
            name="shipped",
            status="succeeded",
            spec="{}",
            run_dir=str(run_dir),
            base_model_id=registered.model.id,
            started_payload='{"action": "push"}',
            done_payload=json.dumps({"repo_id": "me/tiny", "hf_token": TOKEN}),
        )
    exported = json.loads(services.database.export_json())
    assert TOKEN not in json.dumps(exported)  # a payload is scrubbed like a spec
    shipped = next(r for r in exported["tables"]["runs"] if r["id"] == run_id)
    assert json.loads(shipped["done_payload"])["repo_id"] == "me/tiny"

    def import_into(name: str, data: dict):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        home = open_services(Settings.from_env(tmp_path / name))
        try:
            return home.database.import_from(path, trusted_roots=(registered.model.location,)), home.runs.list()
        except ValidationError as error:
            return error, home.runs.list()
        finally:
            home.close()

    shipped["done_payload"] = '["not", "an", "object"]'
    refused, runs = import_into("bad-payload", exported)
    assert isinstance(refused, ValidationError) and refused.rule_ids == ["DB-001"] and runs == []
    assert "done_payload must be a JSON object" in str(refused)

    older = json.loads(json.dumps(exported))  # an export made before revision 0006: no outcome columns at all
    older["schema_revision"] = "0005"
    for row in older["tables"]["runs"]:
        for column in ("started_payload", "done_payload", "failure_type", "failure_message", "last_event_at"):
            row.pop(column, None)
    report, runs = import_into("older", older)
    assert report.imported["runs"] == 1 and runs[0].id == run_id
    assert runs[0].status == "succeeded" and runs[0].started_payload is None and runs[0].done_payload is None
