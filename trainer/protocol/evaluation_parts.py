"""The optional parts of an evaluation spec: benchmark suites (lm-evaluation-harness) and an LLM judge. Standard library only.

A benchmark part names lm-eval tasks (its registry's names, or tasks of a local folder in lm-eval's own YAML format)
and lm-eval scores them; every combination of a base model answers through one loaded copy of it. A judge part
names the model that compares each combination's answers with combination #1's, in both orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The judge's API key (an OpenAI-compatible URL) travels in the child's environment under this name, never in the spec.
JUDGE_KEY_ENV = "FTAPP_JUDGE_API_KEY"
# The fields a judge's rubric may use; each is filled per row and order.
JUDGE_FIELDS = ("input", "reference", "answer_a", "answer_b")
# The verdicts a judge gives for one order, and a row's outcome for the combination against #1 once both orders are in.
VERDICT_A, VERDICT_B, VERDICT_TIE = "A", "B", "tie"
WIN, TIE, LOSS = "win", "tie", "loss"
# Metric names: benchmark scores are "bench/<task>/<metric>[/<filter>]"; the judge's rates are stored under these.
BENCHMARK_PREFIX = "bench/"
JUDGE_METRICS = ("judge_win_rate", "judge_tie_rate", "judge_loss_rate", "judged_rows")


@dataclass(frozen=True)
class BenchmarkSpec:
    tasks: tuple[str, ...] = ()  # lm-eval task, group or tag names; empty: every task of task_dir
    task_dir: str | None = None  # a folder of lm-eval task YAML files (their relative data_files resolve inside it)
    limit: int | None = None  # at most this many documents per task (lm-eval's --limit)
    num_fewshot: int | None = None  # None: each task's own default

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkSpec:
        return cls(**{**data, "tasks": tuple(data.get("tasks") or ())})


@dataclass(frozen=True)
class JudgeSpec:
    """A local model (``model``) or an OpenAI-compatible endpoint (``url`` + ``api_model``) judges pairs of answers.

    ``model`` is a source as ``ModelSource.source`` has it (this part comes before the core spec types)."""

    rubric: str  # a template over JUDGE_FIELDS; the judge ends with "Verdict: A", "Verdict: B" or "Verdict: tie"
    model: str | None = None  # a hub id or a local directory written by save_pretrained
    model_revision: str | None = None
    url: str | None = None  # the endpoint's base URL, e.g. http://127.0.0.1:8000/v1 (POST <url>/chat/completions)
    api_model: str | None = None  # the model name the endpoint expects
    api_key_name: str | None = None  # the key's name in ftapp's secrets store; the key itself arrives as JUDGE_KEY_ENV
    label: str = ""  # for people: the judge's name
    max_new_tokens: int = 128

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JudgeSpec:
        return cls(**data)
