"""``python -m trainer evaluate SPEC_JSON``: answer and score held-out rows with N model/adapter combinations.

Exit statuses are ``trainer.run_process``'s; SIGTERM stops at once (a half-scored evaluation has
nothing worth keeping). A spec that cannot run is refused before torch is imported. The recipe
lives in ``trainer.evaluation.recipe``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from trainer import run_process
from trainer.cancellation import Cancellation
from trainer.protocol import JUDGE_FIELDS, EvaluationSpec, TemplateError, check_device, template_problems
from trainer.recipes.rewards import scorer_for


def main(spec_path: str) -> NoReturn:
    run_process.main("evaluate", spec_path, run_process.spec_reader(EvaluationSpec), check_spec, _evaluate)


def _evaluate(spec: EvaluationSpec, events, cancellation: Cancellation) -> bool:
    tasks = None
    if spec.benchmark:
        from trainer.evaluation.benchmarks import load_tasks  # lm-eval's task index, without torch

        tasks = load_tasks(spec.benchmark)  # an unknown task, or a Hub data set not cached while offline, fails here
    from trainer.evaluation.recipe import run_evaluation  # the ML imports start here

    return run_evaluation(spec, events, tasks)


def check_spec(spec: EvaluationSpec) -> None:
    if not spec.combinations:
        raise ValueError("spec.combinations is empty: nothing to evaluate")
    if [c.position for c in spec.combinations] != list(range(1, len(spec.combinations) + 1)):
        raise ValueError("spec.combinations must be numbered 1..N in order (1 is the baseline)")
    if spec.data is None and not spec.benchmark:
        raise ValueError("spec has no data and no benchmark: nothing to evaluate")
    if spec.data is not None and not spec.row_indices:
        raise ValueError("spec.row_indices is empty: no rows to evaluate")
    check_device(spec.device)
    if spec.data is not None and spec.data.kind != "huggingface" and spec.data.path and not Path(spec.data.path).exists():
        raise FileNotFoundError(f"dataset not found: {spec.data.path}")
    if spec.benchmark and spec.benchmark.task_dir and not Path(spec.benchmark.task_dir).is_dir():
        raise FileNotFoundError(f"benchmark task folder not found: {spec.benchmark.task_dir}")
    if spec.judge:
        check_judge(spec)
    for combo in spec.combinations:
        if combo.adapter_path and not Path(combo.adapter_path).exists():
            raise FileNotFoundError(f"combination {combo.position} ({combo.label}): adapter not found at {combo.adapter_path}")
    if spec.rewards and spec.data is not None and spec.data.format == "preference":
        raise ValueError("rewards score generated answers, and preference pairs are scored by likelihood: give no rewards")
    for reward in spec.rewards:
        scorer_for(reward)  # a bad pattern or a missing custom file fails here, before any model loads


def check_judge(spec: EvaluationSpec) -> None:
    """A judge needs generated answers, one model or URL, and a rubric of known plain fields."""
    judge = spec.judge
    assert judge is not None
    if spec.data is None or spec.data.format == "preference":
        raise ValueError("a judge compares generated answers: give a dataset whose rows are generated (not preference pairs)")
    if bool(judge.model) == bool(judge.url):
        raise ValueError("spec.judge names a model or a URL, exactly one")
    names, problems = template_problems(judge.rubric)
    if problems:
        raise TemplateError([f"judge rubric {problem}" for problem in problems])
    unknown = [name for name in names if name not in JUDGE_FIELDS]
    if unknown:
        raise ValueError(f"judge rubric uses unknown fields {unknown}; it may use {', '.join(JUDGE_FIELDS)}")
    if judge.model and not judge.url and Path(judge.model).is_absolute() and not Path(judge.model).exists():
        raise FileNotFoundError(f"judge model not found at {judge.model}")
