"""What a training run's time is besides its FLOPs, measured on this home's own finished runs (issue 16).

Before its first step a trainer process starts Python, imports torch/transformers/TRL/PEFT, loads the model and
the data and builds its Trainer; after its last step it saves the adapter, evaluates and logs to MLflow. And a
small model's steps cost what the framework costs per step (data loading, the optimizer, logging), far more than
its FLOPs. A preflight that counted only the FLOPs said 15 s for a 76 s CPU run of the demo model. So it adds,
as measured on the last succeeded runs on the same device kind (CPU or CUDA):

- start-up: from the supervisor's launch (``started_at``) to the first logged loss, less the steps up to that
  one at the pace of the run's later steps;
- finishing: from the last logged loss to the run's end (``finished_at``);
- a step's pace, from the same base model's runs of the same kind of step only (``StepKind``: method, training mode
  and GRPO's sampling engine): the steps take at least that long each.

Start-up and finishing come from the runs of the same kind of step when there are any (the same model loads as long
again; a GRPO run sampling with TRL's generate spends ~20 s on its final evaluation, a graphed one a few), else from
the runs of the same method (a DPO or GRPO run builds its reference and TRL's trainer before the first step and ends
sampling an evaluation: an SFT run's figures are short of them), else from all.

Each is the median of up to RECENT_RUNS runs (resumed runs start from a checkpoint: left out). A home without
such runs uses FIRST_RUN's start-up and finish, measured once, and no pace: the FLOPs estimate alone.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ftapp.run_vocabulary import RunKind, RunStatus
from ftapp.runs.outcome import started_payload
from ftapp.runs.specs import spec_dict
from storage import RunRecord, Transaction

RECENT_RUNS = 5
SCANNED_RUNS = 50  # the newest runs looked at for them, so a long history costs no more


@dataclass(frozen=True)
class StepKind:
    """What a step's pace depends on: the model, and on one model an SFT, a DPO and a GRPO step differ many times
    over, a GRPO step more with its sampling engine (bench/preference_gpu.py, H200: 2.8 s a step with TRL's generate,
    0.2-0.4 s graphed), so one kind's pace says nothing about another's."""

    model_id: str | None
    method: str
    training_mode: str
    generation_engine: str | None = None  # GRPO's (``trainer.protocol.choose_generation_engine``); None otherwise

    def describe(self) -> str:
        sampling = f" (sampling with {self.generation_engine})" if self.generation_engine else ""
        return f"{self.training_mode} {self.method.upper()}{sampling}"


def step_kind(run: RunRecord) -> StepKind:
    """The kind of step a stored run took: its spec's method and training mode, and for GRPO the engine its started
    event named (rows are untrusted: anything unreadable is a kind no request matches)."""
    spec = spec_dict(run)
    method, engine = spec.get("method"), None
    if method == "grpo":
        engine = (started_payload(run) or {}).get("generation_engine")
    return StepKind(run.base_model_id, str(method), str(spec.get("training_mode")), engine if isinstance(engine, str) else None)


@dataclass(frozen=True)
class RunTiming:
    startup_s: float  # launch to the first step: interpreter, imports, model and data loading, the Trainer
    finish_s: float  # the last step to the end: saving, the last evaluation, MLflow
    runs: int  # how many of this home's runs measured the two; 0: FIRST_RUN's figures
    step_s: float | None = None  # the least a step of the model takes: its median pace here; None: never run here
    step_runs: int = 0  # how many of this home's runs with steps of that kind measured ``step_s``
    step_kind: StepKind | None = None  # the kind of step ``step_s`` was measured on
    method: str | None = None  # the method of the runs that measured start-up and finish; None: runs of any method
    ends_kind: StepKind | None = None  # the kind of step of the runs that measured them; None: a wider choice of runs

    def source(self, device_kind: str) -> str:
        where = "the CPU" if device_kind == "cpu" else "a GPU"
        if self.runs and self.ends_kind:
            kind = self.ends_kind.describe()
            return (
                f"this model's last finished {kind} run on {where}"
                if self.runs == 1
                else f"the median of this model's last {self.runs} finished {kind} runs on {where}"
            )
        if self.runs:
            method = f" {self.method.upper()}" if self.method else ""
            return (
                f"this home's last finished{method} run on {where}"
                if self.runs == 1
                else f"the median of this home's last {self.runs} finished{method} runs on {where}"
            )
        return f"{FIRST_RUN_SOURCE['cpu' if device_kind == 'cpu' else 'cuda']} (no finished run on {where} here yet)"

    def pace_source(self) -> str:
        kind = f" {self.step_kind.describe()}" if self.step_kind else ""
        return (
            f"this model's pace in its last{kind} run here"
            if self.step_runs == 1
            else f"this model's median pace in its last {self.step_runs}{kind} runs here"
        )


# Measured once, for a home that has no finished run of its own yet.
FIRST_RUN = {
    # `ftapp train --gpus cpu --set max_steps=40|20` of the demo model on 2 CPU cores, once busy (other test runs; MLflow
    # creating its tables: first step 12.7 s after the launch, the end 6.4 s after the last step) and once idle (7.1 s,
    # 0.4 s): about their mean. Its steps took 1.19 s and 0.027 s: no pace is assumed for a model not run here.
    "cpu": RunTiming(startup_s=10.0, finish_s=3.0, runs=0),
    # README's training-speed table (bench/train_throughput.py, H200): the first loss 17-30 s after a new process starts.
    "cuda": RunTiming(startup_s=25.0, finish_s=5.0, runs=0),
}
FIRST_RUN_SOURCE = {
    "cpu": "the demo model's first runs on 2 CPU cores",
    "cuda": "bench/train_throughput.py's first-loss times on an H200",
}


@dataclass(frozen=True)
class _Measured:
    startup_s: float
    finish_s: float
    step_s: float


def device_kind(run: RunRecord) -> str:
    return "cpu" if run.gpus in ("", "cpu") else "cuda"


def measure_run(tx: Transaction, run: RunRecord) -> _Measured | None:
    """One finished run's start-up, finishing and step time, or None when its rows cannot say (fewer than two losses)."""
    if run.started_at is None or run.finished_at is None:
        return None
    points = sorted((p.step, p.time) for p in tx.metric_points.find(run_id=run.id, name="loss"))
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    (first_step, first_time), (last_step, last_time) = points[0], points[-1]
    step_s = (last_time - first_time) / (last_step - first_step)
    startup = first_time - run.started_at.timestamp() - first_step * step_s
    finish = run.finished_at.timestamp() - last_time
    if startup < 0 or finish < 0 or step_s < 0:  # clocks or rows that do not fit together (an import, say)
        return None
    return _Measured(startup, finish, step_s)


def measured_timing(tx: Transaction, kind: str, steps: StepKind | None = None) -> RunTiming:
    """The medians over the last finished training runs on ``kind`` ("cpu" or "cuda"); the step time over those whose
    steps were of the kind ``steps``."""
    runs = [
        r for r in tx.runs.find(kind=RunKind.FINETUNE, status=RunStatus.SUCCEEDED) if r.parent_run_id is None and device_kind(r) == kind
    ]
    runs.sort(key=lambda r: r.finished_at or r.created_at, reverse=True)
    del runs[SCANNED_RUNS:]
    overall: list[_Measured] = []
    same_method: list[_Measured] = []
    same_kind: list[_Measured] = []
    for run in runs:
        if len(overall) == RECENT_RUNS and (steps is None or len(same_method) == len(same_kind) == RECENT_RUNS):
            break
        measured = measure_run(tx, run)
        if measured is None:
            continue
        kind_of_run = step_kind(run)
        if len(overall) < RECENT_RUNS:
            overall.append(measured)
        if steps is not None and len(same_method) < RECENT_RUNS and kind_of_run.method == steps.method:
            same_method.append(measured)
        if steps is not None and len(same_kind) < RECENT_RUNS and kind_of_run == steps:
            same_kind.append(measured)
    first = FIRST_RUN["cpu" if kind == "cpu" else "cuda"]
    step_s = statistics.median(m.step_s for m in same_kind) if same_kind else None
    paced = steps if same_kind else None
    if not overall:
        return RunTiming(first.startup_s, first.finish_s, 0, step_s, len(same_kind), paced)
    ends = same_kind or same_method or overall
    return RunTiming(
        statistics.median(m.startup_s for m in ends),
        statistics.median(m.finish_s for m in ends),
        len(ends),
        step_s,
        len(same_kind),
        paced,
        steps.method if same_method and steps is not None else None,
        paced,
    )
