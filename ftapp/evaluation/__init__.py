"""Evaluation runs: requests (EV-), which rows, results side by side.

Its public surface: what ``ui`` and ``cli`` import. Modules inside ftapp import the submodules."""

from ftapp.evaluation.benchmarks import parse_task_names
from ftapp.evaluation.judging import DEFAULT_RUBRIC, JudgeRequest
from ftapp.evaluation.request import Combination, EvaluationRequest
from ftapp.evaluation.results import LOWER_IS_BETTER, AnswerRow, EvaluationResults, is_lower_better, metric_help

__all__ = [
    "AnswerRow",
    "Combination",
    "DEFAULT_RUBRIC",
    "EvaluationRequest",
    "EvaluationResults",
    "is_lower_better",
    "JudgeRequest",
    "LOWER_IS_BETTER",
    "metric_help",
    "parse_task_names",
]
