"""The run contract shared by ftapp (the supervisor) and the trainer processes. Standard library only.

ftapp writes ``<run_dir>/spec.json`` (a ``TrainSpec``, every input resolved to paths or hub ids) and
starts ``python -m trainer <verb> <run_dir>/spec.json``. The trainer appends one JSON object per line
to ``<run_dir>/events.jsonl`` and flushes after each; the supervisor tails that file from a stored
byte offset. Lines that do not parse are skipped and counted, never fatal. The trainer also prints
``FINETUNE_PROGRESS {...}`` to stdout for every progress event and ``JOB_DONE`` only after its
artifact is on disk (seed 000's contract).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

PROTOCOL_VERSION = 1
SPEC_FILE = "spec.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "trainer.log"
PROGRESS_PREFIX = "FINETUNE_PROGRESS "
DONE_MARKER = "JOB_DONE"
SPLIT_FILE = "split.json"  # <run_dir>/split.json: the held-out rows of a training run, for later evaluation
EXIT_CANCELLED = 128 + 15  # the exit status of a trainer that stopped on SIGTERM (after a checkpoint when training)

# Event types, in the order a healthy run emits them (progress/eval/sample/artifact repeat).
STARTED, PROGRESS, EVAL, SAMPLE, ARTIFACT, FAILED, DONE = (
    "started", "progress", "eval", "sample", "artifact", "failed", "done",
)
EVENT_TYPES = (STARTED, PROGRESS, EVAL, SAMPLE, ARTIFACT, FAILED, DONE)


@dataclass(frozen=True)
class ModelSource:
    source: str  # a Hugging Face hub id or a local directory written by save_pretrained
    architecture: str | None = None
    revision: str | None = None


@dataclass(frozen=True)
class DataSource:
    kind: str  # project_csv | project_json | project_jsonl | project_parquet | project | huggingface
    path: str | None = None  # local file or directory
    hub_name: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"
    format: str = "plain"  # plain | alpaca | messages | sharegpt | preference
    prompt_template: str | None = None
    input_template: str | None = None
    completion_template: str | None = None
    fraction: float = 1.0  # of the rows, sampled with the seed before splitting
    train_split: float = 0.9  # the rest is the validation split
    seed: int = 42


@dataclass(frozen=True)
class TrainSpec:
    run_id: str
    run_dir: str
    method: str  # sft | dpo | grpo
    training_mode: str  # lora | qlora | full
    model: ModelSource
    data: DataSource
    adapter_name: str
    training: dict[str, Any]  # resolved TrainingArguments fields (ftapp.config_schemas)
    lora: dict[str, Any] = field(default_factory=dict)
    bitsandbytes: dict[str, Any] | None = None
    device: str = "cpu"  # cpu | cuda
    num_processes: int = 1
    cpu_threads: int | None = None
    resume_from: str | None = None  # a checkpoint directory of an earlier run
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "ftapp"
    protocol_version: int = PROTOCOL_VERSION

    @property
    def output_dir(self) -> Path:
        return Path(self.run_dir) / "output"

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.run_dir) / "checkpoints"

    @property
    def events_path(self) -> Path:
        return Path(self.run_dir) / EVENTS_FILE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        if data.get("protocol_version") != PROTOCOL_VERSION:
            raise ValueError(f"spec has protocol version {data.get('protocol_version')!r}, expected {PROTOCOL_VERSION}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"spec has unknown fields: {', '.join(unknown)}")
        values = dict(data)
        values["model"] = ModelSource(**data["model"])
        values["data"] = DataSource(**data["data"])
        return cls(**values)


def write_spec(spec: TrainSpec, path: Path | None = None) -> Path:
    path = Path(path or Path(spec.run_dir) / SPEC_FILE)
    temp = path.with_suffix(".partial")
    temp.write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    os.replace(temp, path)
    return path


def read_spec(path: Path) -> TrainSpec:
    return TrainSpec.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Event:
    type: str
    time: float
    data: dict[str, Any]

    def to_line(self) -> str:
        return json.dumps({"type": self.type, "time": self.time, **self.data}, allow_nan=False, default=str) + "\n"


def parse_event(line: str) -> Event | None:
    """The event on one line, or None when the line is not a well-formed event."""
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("type") not in EVENT_TYPES:
        return None
    when = raw.pop("time", None)
    kind = raw.pop("type")
    if not isinstance(when, (int, float)):
        return None
    return Event(kind, float(when), raw)


class EventWriter:
    """Appends events and mirrors progress and completion on stdout for log readers."""

    def __init__(self, path: Path, stdout: TextIO | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the run
        self._stdout = stdout

    def emit(self, kind: str, /, **data: Any) -> Event:
        # Positional-only: artifact events carry a "kind" field of their own.
        if kind not in EVENT_TYPES:
            raise ValueError(f"unknown event type {kind!r}")
        event = Event(kind, time.time(), data)
        self._file.write(event.to_line())
        self._file.flush()
        if self._stdout is not None:
            if kind == PROGRESS:
                self._stdout.write(PROGRESS_PREFIX + json.dumps(data, default=str) + "\n")
            elif kind == DONE:
                self._stdout.write(DONE_MARKER + "\n")
            self._stdout.flush()
        return event

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class EventBatch:
    events: list[Event]
    offset: int  # byte offset just past the last complete line read
    malformed: int


def read_events(path: Path, offset: int = 0) -> EventBatch:
    """Events on complete lines after ``offset``; a partly written last line waits for the next read."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except FileNotFoundError:
        return EventBatch([], offset, 0)
    end = chunk.rfind(b"\n")
    if end < 0:
        return EventBatch([], offset, 0)
    events, malformed = [], 0
    for raw in chunk[: end + 1].splitlines():
        if not raw.strip():
            continue
        event = parse_event(raw.decode("utf-8", errors="replace"))
        if event is None:
            malformed += 1
        else:
            events.append(event)
    return EventBatch(events, offset + end + 1, malformed)
