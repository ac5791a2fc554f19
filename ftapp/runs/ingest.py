"""Turn trainer events into stored state: metric points, progress fields, artifacts, and how the run started and ended.

The ``started`` and ``done`` payloads, the ``failed`` event and the last event's time go into the run's row, so
that no service reads ``events.jsonl`` and the supervisor decides the final status from the row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ftapp.ids import new_id
from ftapp.number_bounds import storable_int
from ftapp.run_vocabulary import RunKind
from ftapp.runs.evaluation_events import answer_rows, score_rows, verdict_rows
from storage import RunRecord, Transaction
from trainer.protocol import (
    ARTIFACT,
    DONE,
    EVAL,
    EVENTS_FILE,
    FAILED,
    PROGRESS,
    PROGRESS_METRICS_FIELD,
    SAMPLE,
    STARTED,
    Event,
    finite_number,
    read_events,
)

# progress keys stored as metric points, under these names
PROGRESS_METRICS = {"loss": "loss", "lr": "learning_rate", "grad_norm": "grad_norm", "tokens_per_s": "tokens_per_s", "epoch": "epoch"}
# Events are untrusted: a payload larger than this (or not storable as JSON) is kept as {}: that the event came
# still counts (a run that said done is done), its details do not.
MAX_PAYLOAD_CHARS = 64 * 1024
MAX_FAILURE_TYPE_CHARS = 200  # the column's width
MAX_FAILURE_MESSAGE_CHARS = 20_000


def ingest(tx: Transaction, run: RunRecord) -> int:
    """Store what the run wrote since the last read; returns how many events were read.

    Events are untrusted: a value the database cannot hold (a step of 2**70, a non-text MLflow id) is dropped and
    counted with the malformed lines, never raised, so one run's events cannot stop the supervision of the others.
    """
    if not run.run_dir:
        return 0
    batch = read_events(Path(run.run_dir) / EVENTS_FILE, run.events_offset)
    points: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    scores: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    updates, dropped = outcome_values(run, batch.events)
    for event in batch.events:
        step = storable_int(event.data.get("step"))
        if run.kind == RunKind.EVALUATION and event.type == SAMPLE:
            answers += answer_rows(run.id, event)
            verdicts += verdict_rows(run.id, event)  # an LLM judge's batch: ``sample {verdicts}``
        elif run.kind == RunKind.EVALUATION and event.type == EVAL:
            scores += score_rows(run.id, event)
        elif event.type == STARTED:
            mlflow_run_id = event.data.get("mlflow_run_id")
            mlflow_run_id = mlflow_run_id if isinstance(mlflow_run_id, str) and len(mlflow_run_id) <= 64 else None
            total, bad = _optional_int(event.data, "total_steps")
            updates.update(mlflow_run_id=mlflow_run_id, total_steps=total)
            dropped += bad + (event.data.get("mlflow_run_id") is not None and mlflow_run_id is None)
        elif event.type == PROGRESS and step is not None:
            total, bad = _optional_int(event.data, "total_steps")
            updates.update(
                step=step,
                total_steps=total if "total_steps" in event.data else run.total_steps,
                eta_s=finite_number(event.data.get("eta_s")),
            )
            dropped += bad
            for key, name in PROGRESS_METRICS.items():
                value = finite_number(event.data.get(key))
                if value is not None:
                    points.append({"run_id": run.id, "step": step, "name": name, "value": value, "time": event.time})
            points += method_points(run.id, step, event)
        elif event.type == EVAL and step is not None:
            for key, raw in event.data.items():
                value = finite_number(raw)
                if key != "step" and value is not None:
                    points.append({"run_id": run.id, "step": step, "name": key, "value": value, "time": event.time})
        elif event.type in (PROGRESS, EVAL):
            dropped += 1  # no step, or one no database column can hold
        elif event.type == ARTIFACT and event.data.get("path"):
            artifact = _artifact(run.id, event)
            if artifact is None:
                dropped += 1
            else:
                tx.artifacts.add(**artifact)
    tx.metric_points.add_many(points)
    tx.evaluation_answers.add_missing(answers, ["run_id", "position", "row_index"])
    tx.evaluation_scores.add_missing(scores, ["run_id", "position", "metric"])
    tx.evaluation_verdicts.add_missing(verdicts, ["run_id", "position", "row_index"])
    tx.runs.update(
        run.id,
        events_offset=batch.offset,
        malformed_events=run.malformed_events + batch.malformed + dropped,
        **{k: v for k, v in updates.items() if v is not None},
    )
    return len(batch.events)


def _optional_int(data: dict[str, Any], key: str) -> tuple[int | None, int]:
    """(the value when storable, 1 when one was given that is not)."""
    value = storable_int(data.get(key))
    return value, int(data.get(key) is not None and value is None)


def _artifact(run_id: str, event: Event) -> dict[str, Any] | None:
    try:
        path = Path(str(event.data["path"]))
        size = (
            sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            if path.is_dir()
            else (path.stat().st_size if path.exists() else None)
        )
    except (OSError, ValueError):  # a path with a NUL byte, a folder that vanished while summed
        return None
    return {"id": new_id(), "run_id": run_id, "kind": str(event.data.get("kind", "file"))[:64], "path": str(path), "size_bytes": size}


def method_points(run_id: str, step: int, event: Event) -> list[dict[str, Any]]:
    """DPO/GRPO numbers of a progress event (``metrics``), stored under TRL's names as given."""
    metrics = event.data.get(PROGRESS_METRICS_FIELD)
    if not isinstance(metrics, dict):
        return []
    points = []
    for name, raw in metrics.items():
        value = finite_number(raw)
        if isinstance(name, str) and name and value is not None:
            points.append({"run_id": run_id, "step": step, "name": name, "value": value, "time": event.time})
    return points


def outcome_values(run: RunRecord, events: list[Event]) -> tuple[dict[str, Any], int]:
    """The row's outcome columns these events set: the first ``started`` payload, the last ``done`` payload, the first
    ``failed`` event, the last event's time; and how many payloads could not be stored (kept as {})."""
    values: dict[str, Any] = {}
    dropped = 0
    for event in events:
        if event.type == STARTED and run.started_payload is None and "started_payload" not in values:
            values["started_payload"], bad = _payload(event.data)
            dropped += bad
        elif event.type == DONE:
            values["done_payload"], bad = _payload(event.data)
            dropped += bad
        elif event.type == FAILED and run.failure_type is None and "failure_type" not in values:
            # The first: each rank of a multi-GPU run reports its own failure, and the later ones are mostly about
            # losing the rank that failed first.
            values.update(
                failure_type=str(event.data.get("error_type", ""))[:MAX_FAILURE_TYPE_CHARS],
                failure_message=str(event.data.get("message", ""))[:MAX_FAILURE_MESSAGE_CHARS],
            )
    when = _moment(events[-1].time) if events else None
    if when is not None:
        values["last_event_at"] = when
    return values, dropped


def backfill_outcome(tx: Transaction, run: RunRecord, folder: Path) -> bool:
    """Fill the outcome columns of a run ingested before its row kept them (revision 0006, or an older export's
    import) from its events file in ``folder``, read once; whether there was anything to fill. After this the row
    has ``last_event_at``, so it is not read again."""
    if run.events_offset <= 0 or run.last_event_at is not None:
        return False
    values, dropped = outcome_values(run, read_events(folder / EVENTS_FILE, 0).events)
    if not values:
        return False
    tx.runs.update(run.id, malformed_events=run.malformed_events + dropped, **values)
    return True


def _payload(data: dict[str, Any]) -> tuple[str, int]:
    """(the payload as JSON text, 0), or ("{}", 1) when it cannot be stored."""
    try:
        text = json.dumps(data, allow_nan=False, default=str)
    except (ValueError, TypeError, RecursionError):
        return "{}", 1
    return (text, 0) if len(text) <= MAX_PAYLOAD_CHARS else ("{}", 1)


def _moment(seconds: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):  # a finite time no clock reaches (1e300)
        return None
