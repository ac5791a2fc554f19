"""How a run started and ended, read from its row (and its artifacts): what ``ingest`` stored from its events.

Functions of stored state: nothing here opens ``events.jsonl``. The payload columns are untrusted text (an
import brings them too), so they are parsed defensively: a column that holds something other than a JSON object
still says that the event came, with no details.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage import ArtifactRecord, RunRecord

OUTPUT_KINDS = ("adapter", "model")  # the artifacts a run exists to make


@dataclass(frozen=True)
class RunOutcome:
    done: bool = False
    failure: tuple[str, str] | None = None  # (error_type, message)
    outputs: list[Path] = field(default_factory=list)  # oldest first


def read_outcome(run: RunRecord, artifacts: list[ArtifactRecord]) -> RunOutcome:
    """What the run's ingested events say about how it ended; ``artifacts``: the run's, oldest first."""
    failed = run.failure_type is not None or run.failure_message is not None
    return RunOutcome(
        done=run.done_payload is not None,
        failure=(run.failure_type or "", run.failure_message or "") if failed else None,
        outputs=[Path(a.path) for a in artifacts if a.run_id == run.id and a.kind in OUTPUT_KINDS],
    )


def output_on_disk(outcome: RunOutcome) -> Path | None:
    """The newest output the run reported that is a folder with something in it (the one look at the disk here)."""
    return next((p for p in reversed(outcome.outputs) if p.is_dir() and any(p.iterdir())), None)


def started_payload(run: RunRecord) -> dict[str, Any] | None:
    """The ``started`` event's fields; None while the run has not said it started."""
    return _parsed(run.started_payload)


def done_payload(run: RunRecord) -> dict[str, Any] | None:
    """The ``done`` event's fields; None unless the run said it was done."""
    return _parsed(run.done_payload)


def _parsed(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
