"""A stored run's spec read back typed (``ftapp.runs.run_spec``), and shown (``spec_dict``): rows are untrusted."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from ftapp.runs import RunRecord, TrainSpec, UnreadableSpecError, run_spec, spec_dict
from trainer.protocol import DataSource, ModelSource, ServeSpec

SPEC = TrainSpec(
    run_id="r1",
    run_dir="/home/runs/r1",
    method="dpo",
    training_mode="qlora",
    model=ModelSource("/models/tiny"),
    data=DataSource("project_jsonl", path="/d.jsonl"),
    adapter_name="a",
    training={"max_steps": 3},
)
ROW = RunRecord(
    id="r1",
    kind="finetune",
    name="a",
    status="succeeded",
    spec=json.dumps(SPEC.to_dict()),
    run_dir=SPEC.run_dir,
    log_path=None,
    base_model_id=None,
    dataset_id=None,
    prompt_id=None,
    adapter_id=None,
    parent_run_id=None,
    gpus="",
    created_at=datetime.now(UTC),
    started_at=None,
    finished_at=None,
    pid=None,
    process_start_time=None,
    exit_code=None,
    error_text=None,
    error_cause=None,
    mlflow_run_id=None,
    events_offset=0,
    malformed_events=0,
    step=None,
    total_steps=None,
    eta_s=None,
    cancel_requested_at=None,
    devices_requested="auto",
)


def test_a_stored_spec_reads_back_typed():
    assert run_spec(ROW) == SPEC
    assert run_spec(ROW, TrainSpec).training_mode == "qlora"
    assert spec_dict(ROW) == SPEC.to_dict()


def test_a_spec_of_another_kind_than_asked_is_refused():
    with pytest.raises(UnreadableSpecError, match="not a ServeSpec"):
        run_spec(ROW, ServeSpec)


@pytest.mark.parametrize(
    "stored",
    [
        "not json",
        "[1, 2]",
        json.dumps({**SPEC.to_dict(), "protocol_version": 99}),
        json.dumps({**SPEC.to_dict(), "model": "a string, not an object"}),
        json.dumps({**SPEC.to_dict(), "surprise": 1}),
        "[" * 100_000,  # deeper than the parser's stack
    ],
)
def test_an_unreadable_row_is_a_domain_error_and_still_shows(stored: str):
    row = replace(ROW, spec=stored)
    with pytest.raises(UnreadableSpecError, match="run r1 has no readable spec"):
        run_spec(row)
    shown = spec_dict(row)
    assert shown == (json.loads(stored) if stored.startswith("{") else {})  # what it holds, for history views
