"""The run contract's files: spec round trip, events written and read from a byte offset."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from trainer.protocol import (
    DONE_MARKER,
    DataSource,
    EventWriter,
    ModelSource,
    ServeSpec,
    TrainSpec,
    placed_device,
    read_events,
    read_spec,
    spec_from_dict,
    write_spec,
)


def spec(tmp_path: Path) -> TrainSpec:
    return TrainSpec(
        run_id="r1",
        run_dir=str(tmp_path),
        method="sft",
        training_mode="lora",
        model=ModelSource("/models/tiny"),
        data=DataSource("project_jsonl", path="/d.jsonl"),
        adapter_name="a",
        training={"max_steps": 3},
    )


def test_spec_round_trip(tmp_path: Path):
    original = spec(tmp_path)
    assert read_spec(write_spec(original)) == original


def test_spec_from_another_protocol_version_is_refused(tmp_path: Path):
    path = write_spec(spec(tmp_path))
    path.write_text(path.read_text().replace('"protocol_version": 1', '"protocol_version": 99'))
    with pytest.raises(ValueError, match="protocol version"):
        read_spec(path)


def test_spec_from_dict_reads_every_kind_by_its_kind_field(tmp_path: Path):
    serve = ServeSpec(run_id="r2", run_dir=str(tmp_path), model=ModelSource("/models/tiny"), served_name="tiny")
    assert spec_from_dict(spec(tmp_path).to_dict()) == spec(tmp_path)  # training specs name no kind
    assert spec_from_dict(serve.to_dict()) == serve


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "JSON object"),
        ({"kind": "mine", "protocol_version": 1}, "unknown kind"),
        ({"kind": ["evaluate"], "protocol_version": 1}, "unknown kind"),
    ],
)
def test_spec_from_dict_refuses_what_is_no_spec(data, message: str):
    with pytest.raises(ValueError, match=message):
        spec_from_dict(data)


def test_events_are_read_incrementally_and_malformed_lines_are_counted(tmp_path: Path):
    stdout = io.StringIO()
    writer = EventWriter(tmp_path / "events.jsonl", stdout=stdout)
    writer.emit("started", run_id="r1")
    writer.emit("progress", step=1, loss=2.5)
    first = read_events(tmp_path / "events.jsonl", 0)
    assert [e.type for e in first.events] == ["started", "progress"] and first.malformed == 0
    with open(tmp_path / "events.jsonl", "a") as handle:
        handle.write('not json\n{"type": "nonsense", "time": 1}\n{"type": "eval", "time": 2, "step": 1, "eval_loss": 2.0}\n')
        handle.write('{"type": "progress", "time": 3, "step": 2')  # a line still being written
    second = read_events(tmp_path / "events.jsonl", first.offset)
    assert [e.type for e in second.events] == ["eval"] and second.malformed == 2
    assert read_events(tmp_path / "events.jsonl", second.offset).events == []
    writer.emit("done")
    writer.close()
    assert 'FINETUNE_PROGRESS {"step": 1, "loss": 2.5}' in stdout.getvalue()
    assert stdout.getvalue().rstrip().endswith(DONE_MARKER)


@pytest.mark.parametrize(
    ("requested", "visible", "device"),
    [
        ("auto", None, "cpu"),
        ("auto", "", "cpu"),
        ("auto", "-1", "cpu"),
        ("auto", "0", "cuda"),
        ("auto", "0,1", "cuda"),
        ("cpu", "0", "cpu"),
        ("cuda", "", "cuda"),
    ],
)
def test_the_trainer_derives_its_device_from_the_placement(requested, visible, device):
    environ = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert placed_device(requested, environ) == device
