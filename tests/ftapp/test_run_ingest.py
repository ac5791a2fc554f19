"""How a run started and ended lives in its row (issue 15): ``ingest`` stores the ``started``/``done``/``failed``
events, the supervisor ends a run from its row, and export results, endpoints and compare workers still show after
``events.jsonl`` is gone. Real SQLite home, real supervisor, real (stand-in) processes whose events the test writes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ftapp.compare.request import CompareRequest
from ftapp.ids import new_id
from ftapp.run_vocabulary import RunKind
from ftapp.runs.enqueue import enqueue
from ftapp.runs.ingest import MAX_PAYLOAD_CHARS, ingest
from ftapp.runs.outcome import done_payload, read_outcome, started_payload
from ftapp.runs.process_identity import process_start_time
from ftapp.services import open_services
from storage import RunRecord
from storage.types import utc_now
from trainer.protocol import ExportSpec, ModelSource, ServeSpec

LIMITS = {
    "context_tokens": 512,
    "max_tokens": 16,
    "max_request_bytes": 1 << 20,
    "request_timeout_s": 120.0,
    "max_concurrent": 1,
    "max_queue": 32,
}


def write_events(run: RunRecord, *events: dict) -> Path:
    path = Path(run.run_dir) / "events.jsonl"
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(event) + "\n" for event in events)
    return path


@pytest.fixture
def alive() -> Iterator[subprocess.Popen]:
    """A process that stands in for a trainer the supervisor did not start (it watches it by pid and start time)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield process
    process.kill()
    process.wait()


def exited() -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process


def running_as(services, run: RunRecord, process: subprocess.Popen) -> None:
    with services.db.transaction() as tx:
        tx.runs.update(
            run.id, status="running", pid=process.pid, started_at=utc_now(), process_start_time=process_start_time(process.pid) or 1.0
        )


def export_run(services, registered, **spec_values) -> RunRecord:
    run_id = new_id()
    spec = ExportSpec(
        run_id=run_id,
        run_dir=str(services.settings.runs_dir / run_id),
        action="register",
        source=registered.model.location,
        name="tiny-registered",
        **spec_values,
    )
    return enqueue(
        services.db,
        services.supervisor,
        spec,
        kind=RunKind.EXPORT,
        name="register tiny",
        base_model_id=registered.model.id,
        devices_requested="cpu",
    )


def serve_run(services, registered) -> RunRecord:
    run_id = new_id()
    spec = ServeSpec(
        run_id=run_id,
        run_dir=str(services.settings.runs_dir / run_id),
        model=ModelSource(registered.model.source, registered.model.architecture),
        served_name="tiny",
    )
    return enqueue(
        services.db,
        services.supervisor,
        spec,
        kind=RunKind.SERVE,
        name="serve tiny",
        base_model_id=registered.model.id,
        devices_requested="cpu",
    )


def test_ingest_keeps_the_first_started_the_last_done_and_failure_and_the_last_events_time(services, registered):
    run = export_run(services, registered)
    write_events(
        run,
        {"type": "started", "time": 100.0, "action": "register", "mlflow_run_id": "abc"},
        {"type": "progress", "time": 101.0, "step": 1, "loss": 0.5},
    )
    with services.db.transaction() as tx:
        ingest(tx, tx.runs.get(run.id))
    first = services.runs.get(run.id)
    assert started_payload(first) == {"action": "register", "mlflow_run_id": "abc"} and first.mlflow_run_id == "abc"
    assert first.done_payload is None and first.failure_type is None
    assert first.last_event_at == datetime.fromtimestamp(101.0, tz=UTC)

    write_events(
        run,
        {"type": "started", "time": 102.0, "action": "again"},
        {"type": "failed", "time": 103.0, "error_type": "RuntimeError", "message": "first try"},
        {"type": "done", "time": 104.0, "version": "2"},
        {"type": "done", "time": 105.0, "version": "3"},
    )
    with services.db.transaction() as tx:
        ingest(tx, tx.runs.get(run.id))
        artifacts = tx.artifacts.find(run_id=run.id)
    final = services.runs.get(run.id)
    assert started_payload(final) == {"action": "register", "mlflow_run_id": "abc"}  # the first started stays
    assert done_payload(final) == {"version": "3"} and (final.failure_type, final.failure_message) == ("RuntimeError", "first try")
    assert final.last_event_at == datetime.fromtimestamp(105.0, tz=UTC) and final.malformed_events == 0
    outcome = read_outcome(final, artifacts)
    assert outcome.done and outcome.failure == ("RuntimeError", "first try") and outcome.outputs == []


def test_a_payload_too_large_to_store_still_says_done_and_is_counted(services, registered):
    run = export_run(services, registered)
    write_events(
        run,
        {"type": "started", "time": 1.0, "note": "x" * (MAX_PAYLOAD_CHARS + 1)},
        {"type": "done", "time": 2.0, "blob": ["y"] * MAX_PAYLOAD_CHARS},
        {"type": "progress", "time": 1e300, "step": 1},
    )
    with services.db.transaction() as tx:
        ingest(tx, tx.runs.get(run.id))
        artifacts = tx.artifacts.find(run_id=run.id)
    stored = services.runs.get(run.id)
    assert (stored.started_payload, stored.done_payload, stored.malformed_events) == ("{}", "{}", 2)
    assert stored.last_event_at is None  # 1e300 s is no time a clock reaches: not stored, never raised
    assert read_outcome(stored, artifacts).done and started_payload(stored) == {}


def test_the_supervisor_ends_a_run_from_its_row_and_the_export_result_needs_no_events_file(services, registered):
    run = export_run(services, registered)
    running_as(services, run, exited())
    events = write_events(
        run,
        {"type": "started", "time": 1.0, "action": "register"},
        {
            "type": "done",
            "time": 2.0,
            "action": "register",
            "registered_model": "tiny-registered",
            "version": "3",
            "model_uri": "models:/tiny-registered/3",
            "kind": "model",
        },
    )
    services.supervisor.tick()
    assert services.runs.get(run.id).status == "succeeded"
    events.unlink()
    result = services.exports.result(run.id)
    assert result.finished and result.registered is not None
    assert (result.registered.version, result.registered.model_uri, result.registered.kind) == ("3", "models:/tiny-registered/3", "model")
    assert result.registered.link.endswith("/#/models/tiny-registered/versions/3")


def test_a_run_whose_done_was_ingested_succeeds_though_its_events_file_is_gone_when_it_exits(services, registered, alive):
    run = serve_run(services, registered)
    running_as(services, run, alive)
    events = write_events(
        run,
        {"type": "started", "time": 1.0, "url": "http://127.0.0.1:4321", "merged_adapter": True, "limits": LIMITS},
        {"type": "done", "time": 2.0, "stopped": True},
    )
    services.supervisor.tick()  # alive: ingested, not finished
    events.unlink()  # before the supervisor notices the exit: the end is decided from the row
    alive.kill()
    alive.wait()
    services.supervisor.tick()
    final = services.runs.get(run.id)
    assert (final.status, final.error_text) == ("succeeded", None)
    endpoint = services.serving.endpoint(run.id)
    assert endpoint.state == "stopped" and endpoint.url is None and endpoint.merged_adapter and endpoint.limits == LIMITS


def test_a_server_the_user_stopped_ends_cancelled_though_it_shut_down_cleanly(services, registered):
    # Its own session, as the supervisor starts trainers: the stop signals the whole group.
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        run = serve_run(services, registered)
        running_as(services, run, server)
        # What a real server writes when SIGTERM asks it to stop: ``done``, then exit 0.
        write_events(run, {"type": "started", "time": 1.0, "url": "http://127.0.0.1:4321"}, {"type": "done", "time": 2.0, "stopped": True})
        services.serving.stop(run.id)
        server.wait(timeout=10)
        services.supervisor.tick()
    finally:
        server.kill()
    final = services.runs.get(run.id)
    assert (final.status, final.error_cause) == ("cancelled", "cancelled")
    assert services.serving.endpoint(run.id).state == "stopped"


def test_a_serving_endpoint_shows_its_url_from_its_row(services, registered, alive):
    run = serve_run(services, registered)
    running_as(services, run, alive)
    assert services.serving.endpoint(run.id).state == "starting"
    write_events(run, {"type": "started", "time": 1.0, "url": "http://127.0.0.1:4321", "limits": {"max_tokens": "lots"}})
    services.supervisor.tick()
    (Path(run.run_dir) / "events.jsonl").unlink()
    endpoint = services.serving.endpoint(run.id)
    assert endpoint.state == "serving" and endpoint.base_url == "http://127.0.0.1:4321/v1"
    assert endpoint.limits is None and not endpoint.merged_adapter  # limits it could not show are left out


@pytest.mark.parametrize(
    ("status", "said_started", "state"),
    [("queued", False, "queued"), ("failed", True, "failed"), ("cancelled", False, "cancelled"), ("succeeded", False, "stopped")],
)
def test_an_endpoint_state_is_one_of_the_defined_states_whatever_its_run_ended_as(services, registered, status, said_started, state):
    """A server that exited cleanly before it said it listens is stopped, not a state the Serve tab has no label for."""
    from ui.serve import STATE_LABELS

    run = serve_run(services, registered)
    started = json.dumps({"type": "started", "time": 1.0, "url": "http://127.0.0.1:4321"}) if said_started else None
    with services.db.transaction() as tx:
        tx.runs.update(run.id, status=status, started_payload=started)
    endpoint = services.serving.endpoint(run.id)
    assert endpoint.state == state and endpoint.state in STATE_LABELS


def test_a_compare_workers_readiness_and_last_activity_come_from_its_row(services, registered, alive):
    comparison = services.comparisons.start(CompareRequest(model_id=registered.model.id, prompt="hello"))
    worker_run = services.runs.get(comparison.worker_run_id)
    assert (Path(worker_run.run_dir) / "requests" / f"{comparison.request_id}.json").is_file()
    running_as(services, worker_run, alive)
    services.supervisor.tick()
    loading = services.comparisons.worker(registered.model.id)
    assert not loading.ready and loading.last_active is None and loading.device_name is None

    write_events(
        worker_run,
        {"type": "started", "time": 1000.0, "device": "cpu", "device_name": "Stand-in CPU", "idle_timeout_s": 600.0},
        {"type": "progress", "time": 1010.5, "step": 1, "tokens_per_s": 5.0},
    )
    services.supervisor.tick()
    (Path(worker_run.run_dir) / "events.jsonl").unlink()
    worker = services.comparisons.worker(registered.model.id)
    assert worker.ready and worker.device_name == "Stand-in CPU" and worker.served == 1 and worker.last_active == 1010.5


def test_runs_ingested_before_rows_kept_their_outcome_are_read_back_once_on_open(services, registered):
    """A home upgraded to revision 0006: its finished runs' rows have NULL outcome columns and their events on disk."""
    run = export_run(services, registered)
    events = write_events(
        run,
        {"type": "started", "time": 1.0, "action": "register"},
        {"type": "done", "time": 2.0, "registered_model": "tiny-registered", "version": "7"},
    )
    with services.db.transaction() as tx:
        tx.runs.update(run.id, status="succeeded", events_offset=events.stat().st_size, finished_at=utc_now())
    settings = services.settings
    services.close()

    reopened = open_services(settings)
    try:
        filled = reopened.runs.get(run.id)
        assert started_payload(filled) == {"action": "register"} and done_payload(filled)["version"] == "7"
        assert filled.last_event_at == datetime.fromtimestamp(2.0, tz=UTC)
        events.unlink()
        assert reopened.exports.result(run.id).registered.version == "7"
        assert reopened.supervisor.backfill_outcomes() == 0  # read once: the row has its outcome now
    finally:
        reopened.close()
