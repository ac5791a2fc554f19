"""One run cannot wedge the others, and a cancel always ends (issue 14, items 4 and 5, and three minor ones).

Against a real SQLite home, real trainer processes and the real CLI: absurd numbers are refused with their rule ID
and write nothing; a run whose events cannot be stored is failed while a healthy run next to it trains to the end;
a queued row that is not what ftapp made is never launched; a trainer that ignores SIGTERM, cancelled from the CLI,
is killed by another process's supervisor after the grace period; a CLI-launched trainer killed from outside is
`killed`, not `crashed`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import fields
from pathlib import Path

import pytest

from cli.main import main
from ftapp.evaluation.request import Combination, EvaluationRequest, validate_evaluation
from ftapp.prompts.config_schemas import SCHEMAS, check_config, defaults
from ftapp.runs.fine_tune_request import FineTuneRequest, validate_fine_tune
from ftapp.runs.machine import Machine
from ftapp.runs.process_identity import is_alive, process_start_time
from ftapp.services import open_services
from ftapp.settings import Settings
from storage.types import utc_now
from trainer.protocol import SPEC_FILE, read_spec, write_spec

CLI = str(Path(sys.executable).parent / "ftapp")
CPU = Machine(gpus=(), cpu_count=2, memory_available_mib=16_000)
FAST = {
    "max_steps": 6,
    "logging_steps": 1,
    "eval_steps": 3,
    "save_steps": 3,
    "per_device_train_batch_size": 4,
    "max_length": 64,
    "learning_rate": 3e-3,
}
# Long enough to be cancelled or killed mid-training; no checkpoint to slow it down.
HUNG = {**FAST, "max_steps": 2000, "eval_steps": 10_000, "save_steps": 10_000}


def sets(values: dict) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def train_args(registered, name: str, values: dict) -> list[str]:
    return [
        "train",
        "--model",
        registered.model.id,
        "--dataset",
        registered.dataset.id,
        "--prompt",
        registered.prompt.id,
        "--name",
        name,
        "--gpus",
        "cpu",
        *sets(values),
    ]


def cli(home: Path, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "--home", str(home), *argv], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def wait_for(predicate, services, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        services.supervisor.tick()
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def home_state(services) -> tuple[list, list]:
    runs_dir = services.settings.runs_dir
    return [r.id for r in services.runs.list()], sorted(p.name for p in runs_dir.iterdir()) if runs_dir.is_dir() else []


# -- item 4a: every number a user can type is bounded -------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "rule"),
    [
        (["--set", "max_steps=1e30"], "CF-005"),
        (["--set", f"max_steps={10**30}"], "CF-005"),
        (["--set", "num_train_epochs=Infinity"], "CF-005"),
        (["--set", "learning_rate=NaN"], "CF-005"),
        (["--set", "per_device_train_batch_size=1000000"], "CF-005"),
        (["--set", "max_length=100000000"], "CF-005"),
        (["--epochs", "1e20"], "FT-008"),
        (["--epochs", "nan"], "FT-008"),
        (["--lr", "inf"], "FT-009"),
        (["--method", "grpo", "--reward", "exact_match", "--method-set", f"max_completion_length={2**70}"], "FT-019"),
    ],
)
def test_absurd_numbers_are_refused_by_the_cli_with_their_rule_and_write_nothing(argv, rule, services, registered, capsys):
    home = services.settings.home
    before = home_state(services)
    capsys.readouterr()
    code = main(["--home", str(home), *train_args(registered, "absurd", {}), *argv])
    err = capsys.readouterr().err
    assert code == 2 and f"error: {rule}: " in err, err
    assert "Traceback" not in err and "must be a" in err  # the message names the allowed range
    assert home_state(services) == before


def test_every_numeric_config_field_has_a_stated_bound_that_refuses_the_absurd():
    for config_type, schema in SCHEMAS.items():
        for spec in fields(schema):
            if not any(kind in str(spec.type) for kind in ("int", "float")):
                continue
            bound = spec.metadata.get("bound")
            assert bound is not None, f"{config_type}.{spec.name} has no bound"
            assert bound.text in spec.metadata["help"], f"{config_type}.{spec.name}: the help does not state the range"
            for absurd in (10**30, bound.high * 2, -(10**30), math.inf, math.nan, 1e30):
                problems = check_config(config_type, {spec.name: absurd})
                assert [p.rule_id for p in problems] == ["CF-005"], (config_type, spec.name, absurd, problems)
        assert check_config(config_type, defaults(config_type)) == []


def test_request_numbers_and_stored_configs_are_bounded(services, registered):
    def fine_tune(**changes):
        request = FineTuneRequest(
            base_model_id=registered.model.id,
            dataset_id=registered.dataset.id,
            prompt_id=registered.prompt.id,
            adapter_name="ok",
            gpus="cpu",
            **changes,
        )
        with services.db.transaction() as tx:
            return {p.rule_id for p in validate_fine_tune(tx, request, CPU)}

    assert fine_tune(
        num_epochs=1e20, learning_rate=2.0, dataset_fraction=math.nan, train_test_split=math.inf, cpu_threads=10**30, num_processes=1.5
    ) == {"FT-004", "FT-007", "FT-008", "FT-009", "FT-010", "FT-011"}
    assert fine_tune(rewards=({"kind": "length_penalty", "weight": 1e9, "target_length": 2**70},), method="grpo") == {"FT-018"}
    # A config stored before these bounds (or brought by an import) is checked again when a run uses it.
    with services.db.transaction() as tx:
        tx.configs.add(
            id=str(uuid.uuid4()), type="training_arguments", name="old", config=json.dumps({"max_steps": 10**30}), content_hash="x" * 64
        )
        stale = tx.configs.find_one(name="old").id
    assert fine_tune(training_arguments_config_id=stale) == {"CF-005"}

    def evaluation(**changes):
        request = EvaluationRequest(
            dataset_id=registered.dataset.id,
            prompt_id=registered.prompt.id,
            combinations=(Combination(registered.model.id),),
            gpus="cpu",
            **changes,
        )
        with services.db.transaction() as tx:
            return [p.field for p in validate_evaluation(tx, request, CPU)]

    assert sorted(evaluation(seed=2**40, batch_size=10**9, max_rows=10**30, dataset_fraction=math.inf)) == [
        "batch_size",
        "dataset_fraction",
        "max_rows",
        "seed",
    ]


# -- item 4b: one run's failure is that run's, never the tick's ------------------------------------------------

FAKE_TRAINER = textwrap.dedent("""
    import json, pathlib, sys, time
    run_dir = pathlib.Path(sys.argv[1])
    events = run_dir / "events.jsonl"
    lines = [{{"type": "started", "time": 1.0, "total_steps": 1e30}},
             {{"type": "progress", "time": 2.0, "step": 2**70, "total_steps": 10**30, "loss": 1.0}},
             {{"type": "progress", "time": 3.0, "step": 1, "total_steps": 2**64, "loss": 10**400, "eta_s": 1e308}},
             {{"type": "progress", "time": 4.0, "step": 2, "total_steps": 3, "loss": 0.5}},
             {{"type": "eval", "time": 5.0, "step": -2**63 - 1, "eval_loss": 0.4}}]
    events.write_text("".join(json.dumps(line) + "\\n" for line in lines))
    if {unreadable}:
        events.unlink()
        events.mkdir()  # an events file no reader can open
    print("ready", flush=True)
    time.sleep(600)  # a hung trainer
""")


def fake_trainer(services, registered, unreadable: bool) -> tuple[str, subprocess.Popen]:
    run_id = str(uuid.uuid4())
    run_dir = services.settings.runs_dir / run_id
    run_dir.mkdir(parents=True)
    process = subprocess.Popen(
        [sys.executable, "-c", FAKE_TRAINER.format(unreadable=unreadable), str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout.readline().strip() == "ready"
    with services.db.transaction() as tx:
        tx.runs.add(
            id=run_id,
            kind="finetune",
            name=f"fake-{unreadable}",
            status="running",
            run_dir=str(run_dir),
            log_path=str(run_dir / "trainer.log"),
            pid=process.pid,
            process_start_time=process_start_time(process.pid),
            started_at=utc_now(),
            gpus="cpu-fake",
            base_model_id=registered.model.id,
        )
    return run_id, process


@pytest.mark.slow  # starts real processes
def test_a_run_whose_events_cannot_be_stored_fails_alone_and_a_healthy_run_trains_to_the_end(services, registered):
    absurd_id, absurd = fake_trainer(services, registered, unreadable=False)
    broken_id, broken = fake_trainer(services, registered, unreadable=True)
    healthy, _ = services.runs.submit(
        FineTuneRequest(
            base_model_id=registered.model.id,
            dataset_id=registered.dataset.id,
            prompt_id=registered.prompt.id,
            adapter_name="healthy",
            gpus="cpu",
            overrides=FAST,
        )
    )
    try:
        final = services.runs.wait(healthy.id, timeout_s=300)
        assert final.status == "succeeded", final.error_text
        assert any(a.run_id == healthy.id for a in services.adapters.list())

        # Numbers no column holds are dropped and counted, the rest stored; the run goes on.
        numbers = services.runs.get(absurd_id)
        assert (numbers.status, numbers.step, numbers.total_steps, numbers.malformed_events) == ("running", 2, 3, 4)
        assert services.runs.metrics(absurd_id) == {"loss": [(2, 0.5)]}
        # Events no reader can open: that run is failed with the reason, and its process stopped.
        unreadable = services.runs.get(broken_id)
        assert (unreadable.status, unreadable.error_cause) == ("failed", "bad events")
        assert "IsADirectoryError" in unreadable.error_text and "Suggestion:" in unreadable.error_text
        assert broken.wait(timeout=10) == -signal.SIGKILL

        # A restarted supervisor on the same home ticks without error and leaves them as they are.
        again = open_services(Settings.from_env(services.settings.home))
        try:
            again.supervisor.tick()
            assert [again.runs.get(i).status for i in (absurd_id, broken_id, healthy.id)] == ["running", "failed", "succeeded"]
        finally:
            again.close()
    finally:
        for process in (absurd, broken):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.slow  # starts real processes
def test_the_supervisor_launches_only_the_spec_ftapp_wrote_into_the_runs_folder(services, registered, tmp_path):
    request = FineTuneRequest(
        base_model_id=registered.model.id,
        dataset_id=registered.dataset.id,
        prompt_id=registered.prompt.id,
        adapter_name="tampered",
        gpus="cpu",
        overrides=FAST,
    )
    moved, _ = services.runs.submit(request)
    outside = tmp_path / "outside"
    # 1. ftapp's own queued run, its row pointed elsewhere afterwards (by hand or an import): refused.
    elsewhere = outside / moved.id
    elsewhere.mkdir(parents=True)
    with services.db.transaction() as tx:
        tx.runs.update(moved.id, run_dir=str(elsewhere), log_path=str(elsewhere / "trainer.log"))
    # 2. A queued row with a spec.json of its own outside the home: no spec in <home>/runs/<id>, refused.
    foreign_id = str(uuid.uuid4())
    foreign = outside / foreign_id
    foreign.mkdir()
    spec = read_spec(services.settings.runs_dir / moved.id / SPEC_FILE)
    write_spec(type(spec).from_dict({**spec.to_dict(), "run_id": foreign_id, "run_dir": str(foreign)}), foreign / SPEC_FILE)
    # 3. An id that is no UUID, and 4. devices the scheduler cannot read (this once wedged every start).
    with services.db.transaction() as tx:
        tx.runs.add(id=foreign_id, kind="finetune", status="queued", run_dir=str(foreign), spec="{}")
        tx.runs.add(id="../../climb", kind="finetune", status="queued", run_dir=str(outside / "climb"), spec="{}")
        tx.runs.add(id=str(uuid.uuid4()), kind="finetune", status="queued", devices_requested="0,x", spec="{}")

    for _ in range(4):  # one CPU run starts per tick: each refusal frees the slot for the next
        services.supervisor.tick()

    runs = services.runs.list()
    assert {(r.status, r.error_cause, r.pid) for r in runs} == {("failed", "launch refused", None)}
    texts = {r.id: r.error_text for r in runs}
    assert "not " + str(services.settings.runs_dir.resolve() / moved.id) in texts[moved.id]
    assert "no spec.json that ftapp wrote" in texts[foreign_id] and "not a UUID" in texts["../../climb"]
    assert not any(outside.rglob("trainer.log")) and not (services.settings.runs_dir / moved.id / "trainer.log").exists()


@pytest.mark.slow  # starts real processes
def test_a_run_with_an_output_dir_is_launched_from_its_spec_in_the_home(services, registered, tmp_path):
    out = tmp_path / "elsewhere"
    out.mkdir()
    run, _ = services.runs.submit(
        FineTuneRequest(
            base_model_id=registered.model.id,
            dataset_id=registered.dataset.id,
            prompt_id=registered.prompt.id,
            adapter_name="out",
            gpus="cpu",
            overrides=FAST,
            output_dir=str(out),
        )
    )
    home_spec = read_spec(services.settings.runs_dir / run.id / SPEC_FILE)
    assert run.run_dir == str(out / run.id) == home_spec.run_dir  # FT-003: its files go there; its spec is in the home too
    services.supervisor.tick()
    running = services.runs.get(run.id)
    assert running.status == "running" and running.log_path == str(out / run.id / "trainer.log")
    services.runs.cancel(run.id)
    assert wait_for(lambda: (r := services.runs.get(run.id)).status != "running" and r, services, 30).status == "cancelled"


# -- item 5 and the minor ones, through the real CLI ------------------------------------------------------------


@pytest.mark.slow  # starts real processes
def test_a_cli_cancel_of_a_trainer_ignoring_sigterm_is_escalated_by_the_apps_supervisor(services, registered):
    home = services.settings.home
    hung = {"FTAPP_TRAINER_FAULT": "ignore_sigterm"}
    started = cli(home, *train_args(registered, "hung", HUNG), env=hung)
    assert started.returncode == 0 and " started; follow it" in started.stdout, started.stdout + started.stderr
    run_id = started.stdout.split()[1]
    queued = cli(home, *train_args(registered, "waiting", FAST))  # the one CPU slot is taken
    assert queued.returncode == 0 and " queued (it starts when its devices are free)" in queued.stdout, queued.stdout
    waiting_id = queued.stdout.split()[1]
    assert cli(home, "runs", "cancel", waiting_id).returncode == 0 and services.runs.get(waiting_id).status == "cancelled"
    # The app (this process) watches the run that the CLI started: not its child.
    running = wait_for(lambda: (r := services.runs.get(run_id)).step and r, services, 180)

    cancelled = cli(home, "runs", "cancel", run_id)
    assert cancelled.returncode == 0 and "cancel requested" in cancelled.stdout
    asked = time.monotonic()
    time.sleep(2)
    services.supervisor.tick()
    assert services.runs.get(run_id).status == "running" and is_alive(running.pid, running.process_start_time)  # SIGTERM ignored

    final = wait_for(lambda: (r := services.runs.get(run_id)).status != "running" and r, services, 20)
    grace = services.supervisor.cancel_grace_s
    assert final.status == "cancelled" and grace - 1 <= time.monotonic() - asked < grace + 10
    assert "SIGKILL" in final.error_text and not is_alive(running.pid, running.process_start_time)


@pytest.mark.slow  # starts real processes
def test_a_cli_launched_trainer_killed_from_outside_is_killed_not_crashed(services, registered):
    home = services.settings.home
    started = cli(home, *train_args(registered, "doomed", HUNG))
    assert started.returncode == 0 and " started; " in started.stdout, started.stdout + started.stderr
    run_id = started.stdout.split()[1]
    running = wait_for(lambda: (r := services.runs.get(run_id)).step and r, services, 180)
    os.kill(running.pid, signal.SIGKILL)
    final = wait_for(lambda: (r := services.runs.get(run_id)).status != "running" and r, services, 10)
    assert (final.status, final.error_cause) == ("failed", "killed")
    assert "exit code is unknown" in final.error_text and "SIGKILL" in final.error_text


@pytest.mark.parametrize("action", ["cancel", "resume", "show", "logs"])
def test_an_unknown_run_is_named_with_its_rule(action, services, capsys):
    capsys.readouterr()
    code = main(["--home", str(services.settings.home), "runs", action, str(uuid.uuid4())])
    assert code == 2 and "error: RN-001: run '" in capsys.readouterr().err
