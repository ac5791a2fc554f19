"""Benchmark suites through lm-evaluation-harness: load the tasks (before any model), score every combination.

lm-eval does the tasks and the scoring (prompts, few-shot sampling, filters, metrics, aggregation): the numbers are
the ones people compare against. ftapp supplies the model (``trainer.evaluation.benchmark_lm``) and keeps each
task's metrics as ``bench/<task>/<metric>`` (``/<filter>`` when the task names one, as gsm8k's strict-match).

Tasks load first, before any model: a task whose data set is on the Hub, not in the local cache, with
``HF_HUB_OFFLINE=1`` fails at once with a message that says the network is needed.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.protocol import BENCHMARK_PREFIX, BenchmarkSpec

BOOTSTRAP_ITERS = 1000  # stderr of non-mean aggregations; means have a closed form, so this only bounds the rare others
_NOT_METRICS = ("alias", "name", "sample_len", "samples", "sample_count")


class BenchmarkNeedsNetwork(RuntimeError):
    """A task's data set is on the Hub and not cached, and the Hub cannot be reached (offline mode or no network)."""


@dataclass
class LoadedTasks:
    """The requested tasks as lm-eval objects, ready for every combination; ``names`` as requested."""

    manager: Any  # lm_eval.tasks.TaskManager
    names: list[str]
    objects: list[Any]  # Task and Group objects, one or more per name (a tag expands to its tasks)
    leaves: dict[str, list[str]] = field(default_factory=dict)  # name -> its leaf tasks


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def inside(folder: str | None) -> Iterator[None]:
    """A local task folder is the working directory while its tasks load, so relative data_files resolve inside it."""
    if not folder:
        yield
        return
    with contextlib.chdir(folder):
        yield


def load_tasks(spec: BenchmarkSpec) -> LoadedTasks:
    """Every task of the spec, its data loaded; raises BenchmarkNeedsNetwork or ValueError (unknown names)."""
    try:
        from lm_eval.tasks import TaskManager  # lm-eval's index of ~15,000 task files: only for benchmark runs
    except ImportError as error:
        raise RuntimeError("benchmarks need lm-evaluation-harness: pip install -e '.[benchmarks]'") from error

    task_dir = str(Path(spec.task_dir).resolve()) if spec.task_dir else None
    manager = TaskManager(include_path=task_dir, include_defaults=False) if task_dir else None
    names = list(spec.tasks) or (folder_tasks(manager) if manager else [])
    if not names:
        raise ValueError(f"no lm-eval task found in {spec.task_dir}: it needs YAML files with a 'task:' key")
    if manager is None or any(name not in manager.all_tasks for name in names):
        manager = TaskManager(include_path=task_dir)  # lm-eval's registry too, the local folder first
    unknown = [name for name in names if name not in manager.all_tasks]
    if unknown:
        where = f" or in {spec.task_dir}" if spec.task_dir else ""
        raise ValueError(
            f"unknown lm-eval task(s) {', '.join(map(repr, unknown))}: not in lm-eval {_version()}'s registry{where}; "
            "`lm-eval ls tasks` lists them"
        )
    loaded = LoadedTasks(manager, names, [])
    with inside(task_dir):
        for name in names:
            try:
                found = manager.load([name])
            except (ConnectionError, OSError) as error:
                if offline() or _is_connection_error(error):
                    raise BenchmarkNeedsNetwork(network_message(name, error)) from error
                raise
            if name in found["groups"]:
                loaded.objects.append(found["groups"][name])
            elif name in found["tasks"]:
                loaded.objects.append(found["tasks"][name])
            else:  # a tag: its tasks, each on its own
                loaded.objects.extend(found["tasks"].values())
            loaded.leaves[name] = sorted(found["tasks"])
    return loaded


def _is_connection_error(error: BaseException) -> bool:
    names = {type(e).__name__ for e in (error, error.__cause__, error.__context__) if e is not None}
    return bool(names & {"ConnectionError", "OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectTimeout"})


def network_message(task: str, error: BaseException) -> str:
    reason = "HF_HUB_OFFLINE=1 is set" if offline() else "the Hugging Face Hub cannot be reached"
    return (
        f"benchmark task '{task}' needs the network: its data set is on the Hugging Face Hub and not in the local cache, "
        f"and {reason} ({str(error)[:300]}). Run it once with network access so the data set is cached (unset "
        "HF_HUB_OFFLINE), or give a local task folder in lm-eval's YAML format (--benchmark-dir) whose data files are local."
    )


def folder_tasks(manager: Any) -> list[str]:
    """A folder's top-level tasks: its groups, and its tasks that belong to none of them (a task twice is an lm-eval error)."""
    index = manager.task_index
    groups = list(manager.all_groups)
    members = {child for name in groups for child in (index[name].cfg or {}).get("task", []) if isinstance(child, str)}
    return groups + [name for name in manager.all_subtasks if name not in members]


def _version() -> str:
    from importlib.metadata import version

    return version("lm-eval")


def evaluate_combination(lm: Any, tasks: LoadedTasks, spec: BenchmarkSpec, seed: int) -> dict[str, Any]:
    """lm-eval's results for one combination; the same seeds every time, so every combination gets the same requests."""
    from lm_eval import simple_evaluate

    with inside(spec.task_dir):
        results = simple_evaluate(
            model=lm,
            tasks=tasks.objects,
            task_manager=tasks.manager,
            limit=spec.limit,
            num_fewshot=spec.num_fewshot,
            bootstrap_iters=BOOTSTRAP_ITERS,
            log_samples=False,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    if results is None:  # lm-eval returns None off rank 0; one process here
        raise RuntimeError("lm-eval returned no results")
    return results


def task_scores(results: dict[str, Any], tasks: LoadedTasks, every_task: bool = False) -> dict[str, float]:
    """``bench/<task>/<metric>[/<filter>]`` for each requested name (its leaf tasks when lm-eval gives the name no
    score of its own, as for a group without an aggregate); ``every_task``: every task and group lm-eval scored."""
    by_task: dict[str, dict[str, Any]] = results.get("results") or {}
    shown: list[str] = []
    for name in tasks.names:
        if every_task or _metrics(by_task.get(name, {})):
            shown.append(name)
        else:
            shown += tasks.leaves.get(name, [])
    if every_task:
        shown += [name for name in by_task if name not in shown]
    scores: dict[str, float] = {}
    for name in dict.fromkeys(shown):
        for metric, value in _metrics(by_task.get(name, {})).items():
            scores[f"{BENCHMARK_PREFIX}{name}/{metric}"] = value
    return scores


def _metrics(values: dict[str, Any]) -> dict[str, float]:
    """lm-eval's "<metric>,<filter>" keys as "<metric>[/<filter>]", numbers only, no stderr."""
    found: dict[str, float] = {}
    for key, value in values.items():
        metric, _, filter_name = key.partition(",")
        if metric in _NOT_METRICS or metric.endswith("_stderr") or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            found[metric + ("" if filter_name in ("", "none") else f"/{filter_name}")] = number
    return found


def lower_is_better(results: dict[str, Any]) -> list[str]:
    """The ``bench/`` names of metrics lm-eval says are better lower (perplexity, bits per byte...)."""
    names = []
    for task, metrics in (results.get("higher_is_better") or {}).items():
        names += [f"{BENCHMARK_PREFIX}{task}/{metric}" for metric, higher in (metrics or {}).items() if higher is False]
    return names
