"""The judge part of an evaluation run: read every answer back, judge each combination against #1, report.

Runs once every group has answered (a combination is judged against #1, which may sit in another group). The
judge is the model the spec names, or the endpoint; the last group's model is reused when it is the judge.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from trainer.evaluation.judge import EndpointJudge, Judge, judge_pairs, rows_to_pairs
from trainer.evaluation.judge_local import LocalJudge
from trainer.model_loading import DeviceCaps, load_tokenizer
from trainer.protocol import SAMPLE, EvaluationSpec, ModelSource

PHASE = "judge"  # progress events of this stage: their steps are judged orders (two per row and combination)


def judge_answers(
    spec: EvaluationSpec,
    results_path: Path,
    kept: tuple[str, Any, Any] | None,
    device: DeviceCaps,
    loads: Counter[str],
    events: Any,
    progress: Any,
) -> dict[int, dict[str, float]]:
    """Each combination's rates against #1 (judge_win_rate, judge_tie_rate, judge_loss_rate, judged_rows)."""
    assert spec.judge is not None, "callers check spec.judge"
    answers: dict[tuple[int, int], dict[str, Any]] = {}
    with open(results_path, encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            answers[(int(row["position"]), int(row["row_index"]))] = row
    pairs = rows_to_pairs(answers, [c.position for c in spec.combinations])
    if not pairs:
        return {}
    progress.expect(2 * len(pairs))
    judge = _judge(spec, kept, device, loads)

    def report(rows: list[dict[str, Any]]) -> None:
        events.emit(SAMPLE, verdicts=rows)
        progress.advance(events, 2 * len(rows), phase=PHASE)

    return judge_pairs(judge, spec.judge.rubric, pairs, spec.batch_size, report)


def _judge(spec: EvaluationSpec, kept: tuple[str, Any, Any] | None, device: DeviceCaps, loads: Counter[str]) -> Judge:
    judge = spec.judge
    assert judge is not None
    if judge.url:
        return EndpointJudge(judge)
    assert judge.model, "a judge has a model or a URL"
    if kept is not None and kept[0] == judge.model:
        return LocalJudge(kept[1], kept[2], judge.max_new_tokens)
    source = ModelSource(judge.model, revision=judge.model_revision)
    kwargs: dict[str, Any] = {
        "dtype": torch.bfloat16 if device.kind == "cuda" and device.bf16 else torch.float32,
        "revision": judge.model_revision,
    }
    if device.kind == "cuda":
        kwargs["device_map"] = {"": 0}
    print(f"loading judge model {judge.model}", file=sys.stderr, flush=True)
    model = AutoModelForCausalLM.from_pretrained(judge.model, **kwargs)
    loads[judge.model] += 1
    model.eval()
    return LocalJudge(model, load_tokenizer(source), judge.max_new_tokens)
