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
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

from trainer.protocol.evaluation_parts import BenchmarkSpec, JudgeSpec
from trainer.protocol.rewards import RewardSpec
from trainer.protocol.template_fields import TemplateError, compile_template, is_plain_field, render_template, template_problems  # noqa: F401 - re-exported for ftapp

PROTOCOL_VERSION = 1
SPEC_FILE = "spec.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "trainer.log"
PROGRESS_PREFIX = "FINETUNE_PROGRESS "
DONE_MARKER = "JOB_DONE"
SPLIT_FILE = "split.json"  # <run_dir>/split.json: the held-out rows of a training run, for later evaluation
AUTO_DEVICE = "auto"  # a spec's device until the trainer starts: the placement travels in CUDA_VISIBLE_DEVICES
EXIT_CANCELLED = 128 + 15  # the exit status of a trainer that stopped on SIGTERM (after a checkpoint when training)

# ``progress`` events of DPO and GRPO runs also carry ``metrics``: {name: number} with the method's own
# numbers under TRL's names (DPO: rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies;
# GRPO: reward, reward_std, rewards/<reward name>/mean and /std, kl, completions/mean_length). The
# supervisor stores each as a metric point of that name.
PROGRESS_METRICS_FIELD = "metrics"
# An evaluation's preference rows (sample events) carry the pair as one ``reference``: chosen, this, rejected.
REJECTED_DIVIDER = "\n\n--- rejected ---\n"

# Event types, in the order a healthy run emits them (progress/eval/sample/artifact repeat).
STARTED, PROGRESS, EVAL, SAMPLE, ARTIFACT, FAILED, DONE = (
    "started",
    "progress",
    "eval",
    "sample",
    "artifact",
    "failed",
    "done",
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


class RunSpecFile:
    """What every run spec has besides its fields: where its events go, and its JSON form."""

    run_dir: str
    num_processes = 1  # a class default; TrainSpec has it as a field (DDP)
    strategy = "ddp"  # likewise: how several processes share the model (trainer.protocol.parallelism)

    @property
    def events_path(self) -> Path:
        return Path(self.run_dir) / EVENTS_FILE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class TrainSpec(RunSpecFile):
    run_id: str
    run_dir: str
    method: str  # sft | dpo | grpo
    training_mode: str  # lora | qlora | full
    model: ModelSource
    data: DataSource
    adapter_name: str
    training: dict[str, Any]  # resolved TrainingSettings fields (ftapp.prompts.config_schemas)
    lora: dict[str, Any] = field(default_factory=dict)
    bitsandbytes: dict[str, Any] | None = None
    device: str = AUTO_DEVICE  # cpu | cuda | auto (placed_device decides at start)
    num_processes: int = 1
    strategy: str = "ddp"  # ddp | fsdp2, as ftapp's preflight decided (trainer.protocol.parallelism); one process: ddp
    cpu_threads: int | None = None
    resume_from: str | None = None  # a checkpoint directory of an earlier run
    init_adapter: str | None = None  # DPO/GRPO: an adapter directory (e.g. an SFT run's) to keep training
    method_settings: dict[str, Any] = field(default_factory=dict)  # DPO/GRPO hyper-parameters (ftapp.prompts.config_schemas)
    rewards: tuple[RewardSpec, ...] = ()  # GRPO: the weighted verifiable rewards
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "ftapp"
    # trl: ftapp's own recipes (the method's verb); axolotl: Axolotl trains ``axolotl_config`` (trainer.protocol.axolotl_config).
    framework: str = "trl"
    axolotl_config: dict[str, Any] | None = None  # the stored YAML, parsed and checked; the run's paths are written in at start
    protocol_version: int = PROTOCOL_VERSION

    @property
    def output_dir(self) -> Path:
        return Path(self.run_dir) / "output"

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.run_dir) / "checkpoints"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        values = _checked_fields(cls, data)
        values["model"] = ModelSource(**data["model"])
        values["data"] = DataSource(**data["data"])
        values["rewards"] = tuple(RewardSpec(**r) for r in data.get("rewards", ()))
        return cls(**values)

    @property
    def verb(self) -> str:
        return self.method if self.framework == "trl" else self.framework


@dataclass(frozen=True)
class EvalCombination:
    """One column of an evaluation: a base model alone or with one adapter. Position 1 is the baseline."""

    position: int
    label: str
    model: ModelSource
    adapter_path: str | None = None
    dpo_beta: float | None = None  # the beta of the DPO run that trained the adapter: reward_margin's scale (None: 1)


@dataclass(frozen=True)
class EvaluationSpec(RunSpecFile):
    """``python -m trainer evaluate``: every combination generates an answer for every row.

    Combinations sharing a base model share one loaded copy of it and answer each chunk of rows before the
    next chunk starts (in turn or in blocks on the graphed path, else in PEFT's mixed-adapter batches:
    ``trainer.evaluation.answer_batches``), so a row's answers arrive chunk by chunk. Preference data
    (``data.format`` "preference") is scored instead of generated: each combination's log-likelihood
    of the chosen and the rejected answer. ``rewards`` score every generated answer (GRPO's rewards).
    ``benchmark``: lm-eval tasks every combination is scored on (then ``data`` may be None and
    ``row_indices`` empty); ``judge``: a model that compares each combination's answers with #1's.
    """

    run_id: str
    run_dir: str
    combinations: tuple[EvalCombination, ...]
    data: DataSource | None
    row_indices: tuple[int, ...]  # source positions to evaluate, ascending
    rows_from: str  # for people: "validation split of run X" or "5% sample, seed 42"
    generation: dict[str, Any]  # ftapp.prompts.config_schemas.GenerationSettings fields
    seed: int = 42
    batch_size: int = 16  # rows per batch; each row is generated once per combination of its base model
    device: str = AUTO_DEVICE
    cpu_threads: int | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "ftapp-evaluation"
    rewards: tuple[RewardSpec, ...] = ()
    benchmark: BenchmarkSpec | None = None
    judge: JudgeSpec | None = None
    kind: str = "evaluate"
    protocol_version: int = PROTOCOL_VERSION

    verb = "evaluate"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationSpec:
        values = _checked_fields(cls, data)
        values["combinations"] = tuple(EvalCombination(**{**c, "model": ModelSource(**c["model"])}) for c in data["combinations"])
        values["data"] = DataSource(**data["data"]) if data["data"] is not None else None
        values["row_indices"] = tuple(data["row_indices"])
        values["rewards"] = tuple(RewardSpec(**r) for r in data.get("rewards", ()))
        values["benchmark"] = BenchmarkSpec.from_dict(data["benchmark"]) if data.get("benchmark") else None
        values["judge"] = JudgeSpec.from_dict(data["judge"]) if data.get("judge") else None
        return cls(**values)


@dataclass(frozen=True)
class InferenceSpec(RunSpecFile):
    """``python -m trainer infer``: a worker that keeps one base model loaded and answers requests.

    Requests are files ``<run_dir>/requests/<id>.json`` (an ``InferenceRequest``), written whole by
    rename (``write_json_atomically``); the worker takes the oldest by renaming it to ``<id>.taken``.
    The answer streams into ``<run_dir>/responses/<id>.jsonl``, one JSON object per line, flushed:

    * ``{"accepted": true, "labels": [...]}`` once the request is taken (adapters may still load);
    * ``{"step": n, "texts": [...]}`` per decoding step: every target's text so far, in target order;
    * last, ``{"done": true, "texts", "new_tokens", "seconds", "tokens_per_s"}``, or
      ``{"error": message, "error_type": name}`` when this request failed (the worker keeps serving).

    The worker exits with ``done`` after ``idle_timeout_s`` without a request, which frees its GPU.
    Before that it renames ``requests/`` to ``requests.closed/`` and answers whatever landed there
    meanwhile, so a writer whose write fails (no ``requests/`` any more) knows to start a new worker
    and no request is ever left unanswered. Events: ``started {device, device_name, model,
    idle_timeout_s}`` once the model is loaded, ``progress {step: requests served, tokens_per_s}``
    per request, ``done {served}``.
    """

    run_id: str
    run_dir: str
    model: ModelSource
    idle_timeout_s: float = 600.0
    device: str = AUTO_DEVICE
    cpu_threads: int | None = None
    kind: str = "infer"
    protocol_version: int = PROTOCOL_VERSION

    verb = "infer"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InferenceSpec:
        values = _checked_fields(cls, data)
        values["model"] = ModelSource(**data["model"])
        return cls(**values)


@dataclass(frozen=True)
class InferenceTarget:
    label: str
    adapter_path: str | None = None  # None: the base model alone


@dataclass(frozen=True)
class InferenceRequest:
    request_id: str
    prompt: str | list[dict[str, str]]  # text as is, or chat turns rendered with the tokenizer's chat template
    targets: tuple[InferenceTarget, ...]
    generation: dict[str, Any]
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InferenceRequest:
        return cls(
            request_id=str(data["request_id"]),
            prompt=data["prompt"],
            targets=tuple(InferenceTarget(**t) for t in data["targets"]),
            generation=dict(data.get("generation") or {}),
            seed=int(data.get("seed", 0)),
        )


REQUESTS_DIR, RESPONSES_DIR = "requests", "responses"
CLOSED_REQUESTS_DIR = "requests.closed"  # an idle worker's last look: see InferenceSpec


def _checked_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    if data.get("protocol_version") != PROTOCOL_VERSION:
        raise ValueError(f"spec has protocol version {data.get('protocol_version')!r}, expected {PROTOCOL_VERSION}")
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"spec has unknown fields: {', '.join(unknown)}")
    return dict(data)


def placed_device(requested: str, environ: dict[str, str] | None = None) -> str:
    """The device a run uses: an explicit cpu/cuda as written (bundles, hand-written specs); ``auto`` is CUDA when
    the supervisor placed GPUs in CUDA_VISIBLE_DEVICES (it sets "" for a CPU placement), else the CPU. The spec
    stays as submitted, so spec.json and the runs.spec column agree."""
    if requested != AUTO_DEVICE:
        return requested
    visible = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES", "").strip()
    return "cuda" if visible and visible != "-1" else "cpu"


def check_device(device: str) -> None:
    if device not in ("cpu", "cuda", AUTO_DEVICE):
        raise ValueError(f"spec.device must be 'cpu', 'cuda' or '{AUTO_DEVICE}', got {device!r}")


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """A reader polling for ``path`` sees nothing or the whole file, never half of it."""
    temp = path.with_name(path.name + ".partial")
    temp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(temp, path)


@dataclass(frozen=True)
class Event:
    type: str
    time: float
    data: dict[str, Any]

    def to_line(self) -> str:
        return json.dumps({"type": self.type, "time": self.time, **self.data}, allow_nan=False, default=str) + "\n"


def finite_number(value: Any) -> float | None:
    """A JSON-safe number or None: events are written with allow_nan=False, and bools are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int past float's range (10**400)
        return None
    return number if math.isfinite(number) else None


def parse_event(line: str) -> Event | None:
    """The event on one line, or None when the line is not a well-formed event."""
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        return None
    if not isinstance(raw, dict) or raw.get("type") not in EVENT_TYPES:
        return None
    when = finite_number(raw.pop("time", None))  # 1e400 or NaN is no time
    kind = raw.pop("type")
    if when is None:
        return None
    return Event(kind, when, raw)


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
