"""Database imports as an attacker writes them (issue 14, items 1 and 2), against a real SQLite home, the real
supervisor and the real CLI: nothing imported is launched, re-attached or signalled; ids and paths from an import
cannot reach outside the home; a malformed file ends with a rule ID, no traceback, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from ftapp.errors import ValidationError
from ftapp.runs.fine_tune_request import FineTuneRequest
from ftapp.runs.process_identity import process_start_time
from ftapp.runs.specs import build_train_spec
from ftapp.services import Services
from trainer.protocol import RewardSpec, write_spec

CLI = str(Path(sys.executable).parent / "ftapp")


def crafted(services: Services, tmp_path: Path, **extra: list[dict]) -> Path:
    """This home's own export (every row a duplicate) with the attacker's rows added."""
    data = json.loads(services.database.export_json())
    for table, rows in extra.items():
        data["tables"][table].extend(rows)
    path = tmp_path / f"crafted-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def refused(services: Services, path: Path) -> ValidationError:
    before = services.database.export_json()
    with pytest.raises(ValidationError) as caught:
        services.database.import_from(path)
    assert services.database.export_json() == before, "a refused import wrote something"
    return caught.value


def run_row(run_dir: Path, status: str, run_id: str | None = None, **values) -> dict:
    run_id = run_id or run_dir.name
    return {
        "id": run_id,
        "kind": "finetune",
        "name": f"evil-{status}",
        "status": status,
        "spec": "{}",
        "run_dir": str(run_dir),
        "log_path": str(run_dir / "trainer.log"),
        **values,
    }


def grpo_spec_running(services: Services, registered, run_dir: Path, marker: Path):
    """A valid GRPO spec whose custom_python reward writes ``marker`` the moment a trainer loads it."""
    code = run_dir / "reward.py"
    code.write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n\ndef reward(completion, reference, row):\n    return 0.0\n"
    )
    request = FineTuneRequest(
        base_model_id=registered.model.id,
        dataset_id=registered.dataset.id,
        prompt_id=registered.prompt.id,
        adapter_name="evil",
        gpus="cpu",
        method="grpo",
        rewards=({"kind": "exact_match"},),
        overrides={"max_steps": 1},
    )
    with services.db.transaction() as tx:
        spec = build_train_spec(tx, services.settings, request, run_dir.name, device="cpu")
    spec = replace(spec, run_dir=str(run_dir), rewards=(RewardSpec(kind="custom_python", code_path=str(code)),))
    write_spec(spec)
    return spec


def supervise(services: Services, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        services.supervisor.tick()
        time.sleep(0.2)


# -- 1. an import starts no code and signals no process ------------------------------------------------------


@pytest.mark.slow  # starts real processes
def test_a_queued_run_whose_folder_holds_a_crafted_spec_is_never_launched(services, registered, tmp_path):
    marker = tmp_path / "pwned"
    outside = tmp_path / "attacker" / str(uuid.uuid4())
    outside.mkdir(parents=True)
    spec = grpo_spec_running(services, registered, outside, marker)
    attack = crafted(
        services, tmp_path, runs=[run_row(outside, "queued", spec=json.dumps(spec.to_dict()), base_model_id=registered.model.id)]
    )

    error = refused(services, attack)

    assert {p.rule_id for p in error.problems} == {"DB-003"}
    assert "runs row 0 ('evil-queued'): run_dir" in str(error) and "custom reward code_path" in str(error)
    supervise(services, 3)
    assert services.runs.list() == []
    assert not marker.exists() and not (outside / "trainer.log").exists(), "a trainer was started"


@pytest.mark.slow  # starts real processes
def test_a_queued_run_inside_the_home_comes_in_as_history_and_is_never_launched(services, registered, tmp_path):
    marker = tmp_path / "pwned"
    planted = services.settings.runs_dir / str(uuid.uuid4())  # as if the attacker could place files in the home
    planted.mkdir(parents=True)
    spec = grpo_spec_running(services, registered, planted, marker)
    attack = crafted(
        services, tmp_path, runs=[run_row(planted, "queued", spec=json.dumps(spec.to_dict()), base_model_id=registered.model.id)]
    )

    report = services.database.import_from(attack)
    supervise(services, 3)

    assert report.imported["runs"] == 1 and report.live_runs_made_history == 1
    run = services.runs.get(planted.name)
    assert (run.status, run.error_cause, run.pid) == ("failed", "imported", None)
    assert run.error_text == "imported while queued; imported runs are history (never launched, re-attached or signalled)"
    assert not marker.exists() and not (planted / "trainer.log").exists(), "a trainer was started"


@pytest.mark.slow  # starts real processes
def test_a_running_row_naming_a_real_process_group_is_never_signalled(services, registered, tmp_path):
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        run_dir = services.settings.runs_dir / str(uuid.uuid4())
        attack = crafted(
            services, tmp_path, runs=[run_row(run_dir, "running", pid=sleeper.pid, process_start_time=process_start_time(sleeper.pid))]
        )
        home = str(services.settings.home)

        imported = subprocess.run([CLI, "--home", home, "db", "import", str(attack)], capture_output=True, text=True, timeout=120)
        cancel = subprocess.run([CLI, "--home", home, "runs", "cancel", run_dir.name], capture_output=True, text=True, timeout=120)
        supervise(services, 2)

        assert sleeper.poll() is None, "the foreign process was signalled"
        os.killpg(sleeper.pid, 0)  # its group is there too
        assert imported.returncode == 0, imported.stderr
        assert "1 queued or running run(s) imported as failed" in imported.stdout
        assert cancel.returncode == 2 and "already failed" in cancel.stderr and "Traceback" not in cancel.stderr
        run = services.runs.get(run_dir.name)
        assert (run.status, run.pid, run.process_start_time) == ("failed", None, None)
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.slow  # starts real processes
def test_resuming_an_imported_run_reads_its_row_never_a_spec_json_it_points_at(services, registered, tmp_path):
    """A failed run with checkpoints in its folder: resume takes the spec stored in the row, re-checked like a
    new request (a shared app refuses custom code, FT-018), never the spec.json the folder holds."""
    from ftapp.services import open_services
    from ftapp.settings import Settings

    marker = tmp_path / "pwned"
    run_dir = services.settings.runs_dir / str(uuid.uuid4())
    run_dir.mkdir(parents=True)
    spec = grpo_spec_running(services, registered, run_dir, marker)
    (run_dir / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    attack = crafted(
        services, tmp_path, runs=[run_row(run_dir, "failed", spec=json.dumps(spec.to_dict()), base_model_id=registered.model.id)]
    )
    services.database.import_from(attack)
    home = services.settings.home
    services.close()
    shared = open_services(Settings.from_env(home, allowed_roots=(tmp_path / "uploads",)))
    try:
        with pytest.raises(ValidationError) as caught:
            shared.runs.resume(run_dir.name)
        assert caught.value.rule_ids == ["FT-018"]
        assert [r.id for r in shared.runs.list()] == [run_dir.name]
        supervise(shared, 2)
        assert not marker.exists()
    finally:
        shared.close()


# -- 2. ids and paths from an import ---------------------------------------------------------------------------


def test_a_dataset_id_that_climbs_out_of_the_home_is_refused_and_the_victim_kept(services, registered, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    # datasets_dir / "../../victim" is tmp_path / "victim"
    assert (services.settings.datasets_dir / "../../victim").resolve() == victim
    evil = {"id": "../../victim", "name": "evil", "type": "project_csv", "location": str(services.settings.datasets_dir / "x.csv")}

    error = refused(services, crafted(services, tmp_path, datasets=[evil]))

    assert error.rule_ids == ["DB-002"] and "datasets row 1 ('evil'): id '../../victim' is not a UUID" in str(error)
    # A row like that already in the database (an old import) still cannot name a folder to delete.
    with services.db.transaction() as tx:
        tx.datasets.add(**evil)
    with pytest.raises(ValidationError) as caught:
        services.datasets.remove("../../victim")
    assert caught.value.rule_ids == ["DB-002"]
    assert (victim / "precious.txt").read_text() == "keep me"
    assert services.datasets.get("../../victim").name == "evil"


def test_a_dataset_folder_that_is_a_symlink_out_of_the_home_is_not_followed_on_remove(services, registered, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    dataset_id = str(uuid.uuid4())
    (services.settings.datasets_dir / dataset_id).symlink_to(victim, target_is_directory=True)
    with services.db.transaction() as tx:
        tx.datasets.add(
            id=dataset_id, name="linked", type="project_csv", location=str(services.settings.datasets_dir / dataset_id / "x.csv")
        )

    with pytest.raises(ValidationError) as caught:
        services.datasets.remove(dataset_id)

    assert caught.value.rule_ids == ["DB-003"]
    assert (victim / "precious.txt").read_text() == "keep me" and services.datasets.get(dataset_id)


def _id() -> str:
    return str(uuid.uuid4())


OUTSIDE = {
    "dataset at /etc/passwd": lambda h, reg: {
        "datasets": [{"id": _id(), "name": "passwd", "type": "project_csv", "location": "/etc/passwd"}]
    },
    "model at /root": lambda h, reg: {"models": [{"id": _id(), "name": "root", "type": "project", "location": "/root"}]},
    "adapter at /etc": lambda h, reg: {
        "adapters": [{"id": _id(), "name": "etc", "type": "project", "model_id": reg.model.id, "location": "/etc"}]
    },
    "run folder /root": lambda h, reg: {"runs": [run_row(Path("/root"), "failed", run_id=_id())]},
    "run log /etc/passwd": lambda h, reg: {"runs": [{**run_row(h / "runs" / (i := _id()), "failed", run_id=i), "log_path": "/etc/passwd"}]},
    "run folder not named by its id": lambda h, reg: {"runs": [run_row(h / "runs" / _id(), "failed", run_id=_id())]},
    "artifact /etc/shadow": lambda h, reg: {"artifacts": [{"id": _id(), "kind": "adapter", "path": "/etc/shadow"}]},
    "relative path": lambda h, reg: {"datasets": [{"id": _id(), "name": "rel", "type": "project_csv", "location": "datasets/x.csv"}]},
    "another home's folder climbing out": lambda h, reg: {
        "datasets": [
            {"id": _id(), "name": "climb", "type": "project_csv", "location": f"/old/home/datasets/{_id()}/../../../../etc/passwd"}
        ]
    },
}


@pytest.mark.parametrize("case", sorted(OUTSIDE))
def test_paths_outside_the_home_are_refused_naming_the_row(services, registered, tmp_path, case):
    error = refused(services, crafted(services, tmp_path, **OUTSIDE[case](services.settings.home, registered)))

    assert error.rule_ids == ["DB-003"], str(error)
    assert " row " in str(error) and ("does not resolve inside" in str(error) or "named by the run's id" in str(error))


def test_a_path_inside_the_home_that_links_outside_is_refused(services, registered, tmp_path):
    link = services.settings.datasets_dir / "innocent.csv"
    link.symlink_to("/etc/passwd")
    error = refused(
        services, crafted(services, tmp_path, datasets=[{"id": _id(), "name": "linked", "type": "project_csv", "location": str(link)}])
    )
    assert error.rule_ids == ["DB-003"] and "innocent.csv" in str(error)


def test_rows_already_pointing_outside_the_home_are_not_read(services, registered, tmp_path):
    """Defence in depth: a dataset preview and a run's log tail read only inside the home (one check, DB-003)."""
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    run_id = _id()
    with services.db.transaction() as tx:
        dataset = tx.datasets.add(id=_id(), name="secret", type="project_csv", location=str(secret))
        tx.runs.add(id=run_id, kind="finetune", status="failed", run_dir=str(tmp_path / run_id), log_path=str(secret))

    with pytest.raises(ValidationError) as preview:
        services.datasets.preview(dataset.id)
    with pytest.raises(ValidationError) as tail:
        services.runs.log_tail(run_id)

    assert preview.value.rule_ids == ["DB-003"] and tail.value.rule_ids == ["DB-003"]
    assert "hunter2" not in str(preview.value) + str(tail.value)


# -- malformed files -----------------------------------------------------------------------------------------------


def _export(services: Services) -> dict:
    return json.loads(services.database.export_json())


MALFORMED = {
    "deep nesting": lambda s: '{"format": "ftapp-database", "tables": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "unknown table": lambda s: json.dumps({**(d := _export(s)), "tables": {**d["tables"], "sqlite_master": []}}),
    "a number where an id belongs": lambda s: _with(s, "models", {"id": 12345, "name": "n", "type": "project"}),
    "a list where a name belongs": lambda s: _with(s, "models", {"id": _id(), "name": [[["x"]]], "type": "project"}),
    "text where a number belongs": lambda s: _with(s, "models", {"id": _id(), "name": "n", "type": "project", "num_parameters": "lots"}),
    "an integer too large for SQLite": lambda s: _with(
        s, "models", {"id": _id(), "name": "n", "type": "project", "num_parameters": 10**30}
    ),
    "a string where true/false belongs": lambda s: _with(s, "models", {"id": _id(), "name": "n", "type": "project", "gated": "yes"}),
    "an id longer than its column": lambda s: _with(s, "models", {"id": "a" * 5000, "name": "n", "type": "project"}),
    "a row that is not an object": lambda s: _with(s, "models", ["not", "a", "row"]),
    "tables that are a list": lambda s: json.dumps({**_export(s), "tables": []}),
    "a top level that is a list": lambda s: "[1, 2, 3]",
    "not UTF-8": lambda s: b"\xff\xfe\x00garbage",
    "a run spec nested 100,000 deep": lambda s: _with(
        s, "runs", {"id": _id(), "kind": "finetune", "status": "failed", "spec": "[" * 100_000 + "]" * 100_000}
    ),
    "a run spec that is not an object": lambda s: _with(s, "runs", {"id": _id(), "kind": "finetune", "status": "failed", "spec": "[1]"}),
    "a config that is not JSON": lambda s: _with(
        s, "configs", {"id": _id(), "type": "lora_config", "config": "{r: 8", "content_hash": "x"}
    ),
    "a timestamp without a zone": lambda s: _with(
        s, "models", {"id": _id(), "name": "n", "type": "project", "created_at": "2024-01-01T00:00:00"}
    ),
}


def _with(services: Services, table: str, row) -> str:
    data = _export(services)
    data["tables"][table].append(row)
    return json.dumps(data)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_import_ends_with_a_rule_id_and_writes_nothing(services, registered, tmp_path, case):
    content = MALFORMED[case](services)
    path = tmp_path / "malformed.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))

    error = refused(services, path)

    assert error.rule_ids == ["DB-001"], str(error)


def test_a_huge_file_a_folder_and_a_fifo_are_refused_unread(services, tmp_path, monkeypatch):
    monkeypatch.setattr("ftapp.transfer.service.MAX_IMPORT_BYTES", 1000)
    huge = tmp_path / "huge.json"
    huge.write_text(" " * 1001)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opened blocking, this would wait for a writer forever
    for path, words in ((huge, "larger than"), (tmp_path, "not a regular file"), (fifo, "not a regular file")):
        error = refused(services, path)
        assert error.rule_ids == ["DB-001"] and words in str(error)


def test_configs_and_prompts_meet_the_rules_they_meet_when_typed_in(services, registered, tmp_path):
    token = "hf_" + "a" * 34
    error = refused(
        services,
        crafted(
            services,
            tmp_path,
            configs=[
                {
                    "id": _id(),
                    "type": "training_arguments",
                    "config": json.dumps({"hub_token": token}),
                    "content_hash": "h1",
                    "model_family": "",
                },
                {
                    "id": _id(),
                    "type": "training_arguments",
                    "config": json.dumps({"max_steps": 10**31}),
                    "content_hash": "h2",
                    "model_family": "",
                },
            ],
            prompts=[
                {
                    "id": _id(),
                    "name": "wide",
                    "dataset_id": registered.dataset.id,
                    "prompt_template": "{instruction:>{w}}",
                    "input_template": "{instruction!r}",
                    "completion_template": "{output}",
                }
            ],
        ),
    )

    assert sorted(set(error.rule_ids)) == ["CF-005", "PR-007"], str(error)
    assert "configs row" in str(error) and "prompts row" in str(error) and token not in str(error)
    assert token.encode() not in (services.settings.home / "ftapp.db").read_bytes()


@pytest.mark.slow  # starts real processes
def test_the_cli_shows_the_rule_id_and_no_traceback(services, registered, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    passwd = crafted(services, tmp_path, datasets=[{"id": _id(), "name": "passwd", "type": "project_csv", "location": "/etc/passwd"}])
    home = str(services.settings.home)
    for path, rule in ((deep, "DB-001"), (passwd, "DB-003")):
        result = subprocess.run([CLI, "--home", home, "db", "import", str(path)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and f"error: {rule}: " in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert [d.name for d in services.datasets.list()] == ["intents"]


def test_the_settings_tab_shows_the_rule_id(services, registered, tmp_path):
    import gradio as gr

    from ui import settings as settings_tab

    attack = crafted(services, tmp_path, datasets=[{"id": "../../victim", "name": "evil", "type": "project_csv"}])
    with pytest.raises(gr.Error) as caught:
        settings_tab.import_database(services, str(attack))
    assert "DB-002" in caught.value.message and "../../victim" in caught.value.message
    assert [d.name for d in services.datasets.list()] == ["intents"]
