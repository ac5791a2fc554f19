"""Evaluation runs: requests (EV-), which rows, results side by side.

Its public surface: what ``ui`` and ``cli`` import. Modules inside ftapp import the submodules."""

from ftapp.evaluation.request import Combination, EvaluationRequest
from ftapp.evaluation.results import LOWER_IS_BETTER, AnswerRow, EvaluationResults, metric_help

__all__ = [
    "AnswerRow",
    "Combination",
    "EvaluationRequest",
    "EvaluationResults",
    "LOWER_IS_BETTER",
    "metric_help",
]
