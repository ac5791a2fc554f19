"""The benchmark part of an evaluation request (lm-evaluation-harness tasks) and EV-014.

Task names are lm-eval's (``mmlu``, ``gsm8k``, ``arc_easy``...) or those of a local folder of task YAML files
in lm-eval's own format. Whether a name exists in lm-eval's registry is the trainer's check (its index of
~15,000 task files takes seconds to build and lm-eval is no import of the app): an unknown name fails the run
before any model loads. Here: the names' shape, the folder (inside the folders this app may read, holding task
files), the bounds of limit and few-shot.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from ftapp import number_bounds as nb
from ftapp import rules
from ftapp.demo import policy
from ftapp.demo.path_policy import path_problem
from ftapp.errors import Problem
from ftapp.settings import Settings
from trainer.protocol import BenchmarkSpec

TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")  # lm-eval's names: letters, digits, _ . -
MAX_TASKS = 64
FEWSHOT = nb.Bound(0, 64, whole=True)
TASK_FILES = ("*.yaml", "*.yml")


def parse_task_names(text: str) -> tuple[str, ...]:
    """``mmlu,gsm8k`` or one name a line, as typed: spaces and empty entries dropped, order and duplicates kept out."""
    return tuple(dict.fromkeys(name.strip() for name in re.split(r"[,\s]+", text or "") if name.strip()))


def benchmark_problems(
    tasks: tuple[str, ...],
    task_dir: str | None,
    limit: int | None,
    fewshot: int | None,
    settings: Settings | None,
    caps: policy.DemoCaps | None,
) -> list[Problem]:
    """EV-014: every problem of the benchmark part (none when it names no task and no folder)."""
    if not tasks and not task_dir:
        return []
    if importlib.util.find_spec("lm_eval") is None:  # found without importing it: the app never imports lm-eval
        return [
            Problem(
                rules.BENCHMARKS,
                "benchmarks need lm-evaluation-harness, which is not installed: pip install -e '.[benchmarks]'",
                "benchmarks",
            )
        ]
    problems = [
        Problem(
            rules.BENCHMARKS, f"benchmark task {name[:80]!r} is not an lm-eval task name (letters, digits, '_', '.', '-')", "benchmarks"
        )
        for name in tasks
        if not TASK_NAME.match(name)
    ]
    if len(tasks) > MAX_TASKS:
        problems.append(
            Problem(
                rules.BENCHMARKS,
                f"at most {MAX_TASKS} benchmark tasks in one run (got {len(tasks)}); a group such as 'mmlu' counts once",
                "benchmarks",
            )
        )
    if task_dir:
        problems += _folder_problems(task_dir, settings, caps)
    if limit is not None and (p := nb.ROWS.problem(rules.BENCHMARKS, "benchmark_limit", limit)):
        problems.append(p)
    elif caps and (p := policy.eval_rows_problem(caps, limit or 0)):  # the service sets the demo's limit when none is given
        problems.append(p)
    if fewshot is not None and (p := FEWSHOT.problem(rules.BENCHMARKS, "benchmark_fewshot", fewshot)):
        problems.append(p)
    return problems


def _folder_problems(task_dir: str, settings: Settings | None, caps: policy.DemoCaps | None) -> list[Problem]:
    if caps:  # a demo visitor names no server folder: the host's files are not theirs to read
        return [policy.host_only("a local benchmark task folder", "benchmark_dir")]
    if settings is not None and (refused := path_problem(settings, task_dir, rules.BENCHMARKS, "benchmark_dir")):
        return [refused]
    folder = Path(task_dir).expanduser()
    if not folder.is_dir():
        return [Problem(rules.BENCHMARKS, f"benchmark_dir {task_dir} is not a folder", "benchmark_dir")]
    if not any(next(folder.rglob(pattern), None) for pattern in TASK_FILES):
        return [
            Problem(
                rules.BENCHMARKS,
                f"benchmark_dir {task_dir} holds no task YAML file (lm-eval's format: a 'task:' name, its data set and output type)",
                "benchmark_dir",
            )
        ]
    return []


def benchmark_spec(tasks: tuple[str, ...], task_dir: str | None, limit: int | None, fewshot: int | None) -> BenchmarkSpec | None:
    if not tasks and not task_dir:
        return None
    return BenchmarkSpec(
        tasks=tasks, task_dir=str(Path(task_dir).expanduser().resolve()) if task_dir else None, limit=limit, num_fewshot=fewshot
    )
