"""The evaluation recipe: setup → answer every row with every combination → score → save, as run events.

Events, in order: ``started {combinations, num_rows, total_steps}``; per batch one ``sample {rows}``
(one entry per row and combination: input, reference, output, scores) and one ``progress``; per
combination, once its base model's rows are done, ``eval {position, label, <metric>: value,
delta_<metric>: value}``; ``artifact {kind: evaluation}`` (results.jsonl + aggregates.json); ``done
{models_loaded}``. Combinations are grouped by base model: each base loads once, its adapters are
attached under their own names and answer the same rows, chunk by chunk: in turn through the graphed sampler where
it can, else together in mixed-adapter batches (``trainer.evaluation.answer_batches``).

Preference data is scored, not generated (``trainer.evaluation.preference``); the spec's rewards
score every generated answer (``trainer.evaluation.rewards``).

A spec's benchmark tasks (lm-evaluation-harness, ``trainer.evaluation.benchmarks``) load before any model, so
one that cannot load fails at once; each group's loaded model then answers them for all its combinations, and
their scores join the combinations' ``eval`` events as ``bench/<task>/<metric>``. A spec's judge compares each
combination's answers with #1's once every group is done (``trainer.evaluation.judge``): ``sample {verdicts}``
per batch, then one ``eval`` per combination with its win/tie/loss rates.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from trainer.data.loading import load_rows
from trainer.data.preference_pairs import preference_cases
from trainer.data.training_data import EvalCase, evaluation_cases
from trainer.evaluation.answer_batches import answer_batches
from trainer.evaluation.benchmarks import LoadedTasks, load_tasks
from trainer.evaluation.judge_stage import judge_answers
from trainer.evaluation.metrics import RowResult, aggregate, label_set, score_row
from trainer.evaluation.preference import preference_aggregates, score_pairs
from trainer.evaluation.rewards import reward_aggregates, reward_scores
from trainer.inference.generation import BASE_ADAPTER, encode_answer, encode_prompt, generation_config
from trainer.model_loading import DeviceCaps, detect_device, load_tokenizer
from trainer.protocol import ARTIFACT, DONE, EVAL, PROGRESS, SAMPLE, STARTED, EvalCombination, EvaluationSpec
from trainer.run_events import EventSink

RESULTS_FILE, AGGREGATES_FILE, BENCHMARKS_FILE = "results.jsonl", "aggregates.json", "benchmarks.json"
PREFERENCE = "preference"  # DataSource.format of chosen/rejected pairs


@dataclass
class Group:
    """The combinations that share one base model."""

    source: str
    combinations: list[EvalCombination]


@dataclass
class Progress:
    done: int
    total: int
    started: float

    def report(self, events: Any, results_file: Any, rows: list[dict[str, Any]], tokens_per_s: float | None = None) -> None:
        """One batch's answers: flushed to results.jsonl, then a ``sample`` and a ``progress`` event."""
        results_file.flush()
        events.emit(SAMPLE, rows=rows)
        self.advance(events, len(rows), **({} if tokens_per_s is None else {"tokens_per_s": tokens_per_s}))

    def expect(self, count: int) -> None:
        """More answers to come than counted at the start (benchmark requests, judged pairs)."""
        self.total += count

    def advance(self, events: Any, count: int, **extra: Any) -> None:
        self.done += count
        elapsed = time.monotonic() - self.started
        events.emit(
            PROGRESS,
            step=self.done,
            total_steps=self.total,
            **extra,
            eta_s=round(elapsed / max(self.done, 1) * (self.total - self.done), 1),
        )


def group_by_model(combinations: tuple[EvalCombination, ...]) -> list[Group]:
    groups: dict[str, Group] = {}
    for combo in combinations:
        groups.setdefault(combo.model.source, Group(combo.model.source, [])).combinations.append(combo)
    return list(groups.values())


def adapter_name(combo: EvalCombination) -> str:
    return f"c{combo.position}" if combo.adapter_path else BASE_ADAPTER


def run_evaluation(spec: EvaluationSpec, events: EventSink, tasks: LoadedTasks | None = None) -> bool:
    """``tasks``: the spec's benchmark tasks when the caller loaded them already (before importing torch)."""
    device = detect_device(spec.device)
    if device.kind == "cpu" and spec.cpu_threads:
        torch.set_num_threads(spec.cpu_threads)
    torch.manual_seed(spec.seed)
    rows = load_rows(spec.data) if spec.data is not None else []
    missing = [i for i in spec.row_indices if not 0 <= i < len(rows)]
    if missing:
        raise ValueError(f"row_indices {missing[:5]} are outside the dataset's {len(rows)} rows; was the file changed after training?")
    # Before any model loads: an unknown task, or a Hub data set that is not cached while offline, fails at once.
    benchmarks = None
    if spec.benchmark:
        from trainer.evaluation.benchmark_stage import BenchmarkStage  # lm-eval, only for runs that use it

        benchmarks = BenchmarkStage(spec, tasks or load_tasks(spec.benchmark))
    groups = group_by_model(spec.combinations)
    tracking = _start_tracking(spec)
    events.emit(
        STARTED,
        run_id=spec.run_id,
        device=device.kind,
        device_name=device.name,
        num_rows=len(spec.row_indices),
        rows_from=spec.rows_from,
        total_steps=len(spec.row_indices) * len(spec.combinations),
        combinations=[{"position": c.position, "label": c.label} for c in spec.combinations],
        benchmarks=benchmarks.tasks.names if benchmarks else [],
        judge=spec.judge.label if spec.judge else None,
        mlflow_run_id=tracking.run_id if tracking else None,
    )
    progress = Progress(0, len(spec.row_indices) * len(spec.combinations), time.monotonic())
    loads: Counter[str] = Counter()
    aggregates: dict[int, dict[str, float]] = {}
    output_dir = Path(spec.run_dir) / "output"
    output_dir.mkdir(parents=True, exist_ok=True)
    status = "FAILED"
    try:
        with open(output_dir / RESULTS_FILE, "w", encoding="utf-8") as results_file:
            labels: list[str] | None = None
            kept: tuple[str, Any, Any] | None = None  # the last group's (source, model, tokenizer), when it judges too
            for number, group in enumerate(groups):
                tokenizer = load_tokenizer(group.combinations[0].model)
                model = None
                if spec.data is None:
                    pass  # benchmarks alone
                elif spec.data.format == PREFERENCE:
                    pairs = preference_cases(rows, list(spec.row_indices), spec.data, tokenizer)
                    model = load_model(group, device, loads)
                    reference = spec.combinations[0] if spec.combinations[0] in group.combinations else None
                    scored = score_pairs(
                        model,
                        tokenizer,
                        group.combinations,
                        [adapter_name(c) for c in group.combinations],
                        pairs,
                        spec,
                        events,
                        progress,
                        results_file,
                        reference,
                    )
                    aggregates.update({position: preference_aggregates(values) for position, values in scored.items()})
                else:
                    cases = evaluation_cases(rows, list(spec.row_indices), spec.data, tokenizer)
                    if labels is None:
                        labels = label_set([case.reference for case in cases])
                    model = load_model(group, device, loads, every_adapter=False)  # answering attaches the others if it must
                    results: dict[int, list[RowResult]] = {}
                    rewarded: dict[int, list[dict[str, float]]] = {}
                    costs = answer_rows(model, tokenizer, group, cases, spec, events, progress, results, results_file, rows, rewarded)
                    for combo in group.combinations:
                        seconds, batch_tokens = costs[combo.position]
                        aggregates[combo.position] = {
                            **aggregate(results[combo.position], seconds, labels, batch_tokens),
                            **reward_aggregates(rewarded.get(combo.position, [])),
                        }
                if model is not None and (benchmarks or spec.judge):
                    attach_adapters(model, group)
                if benchmarks:
                    model = model if model is not None else load_model(group, device, loads)
                    for position, scores in benchmarks.score(
                        model, tokenizer, group.combinations, [adapter_name(c) for c in group.combinations], events, progress
                    ).items():
                        aggregates.setdefault(position, {}).update(scores)
                if spec.judge and spec.judge.model == group.source and number == len(groups) - 1 and model is not None:
                    kept = (group.source, model, tokenizer)  # the judge is this base: no second load
                del model
                if number < len(groups) - 1 or spec.judge:  # room for the next model; the last one leaves with the process
                    gc.collect()  # 0.23 s after an 8-adapter evaluation of a 3B model (cProfile, H200)
                    if device.kind == "cuda":
                        torch.cuda.empty_cache()
                for combo in group.combinations:
                    report = {**aggregates[combo.position], **deltas(aggregates, combo.position)}
                    events.emit(EVAL, step=combo.position, position=combo.position, label=combo.label, **report)
                    if tracking:
                        tracking.log_metrics({f"c{combo.position}.{k}": v for k, v in report.items()}, step=0)
            if spec.judge and spec.data is not None:
                judged = judge_answers(spec, output_dir / RESULTS_FILE, kept, device, loads, events, progress)
                kept = None
                for position, rates in judged.items():
                    aggregates.setdefault(position, {}).update(rates)
                    events.emit(EVAL, step=position, position=position, label=spec.combinations[position - 1].label, **rates)
                    if tracking:
                        tracking.log_metrics({f"c{position}.{k}": v for k, v in rates.items()}, step=0)
        if benchmarks:
            benchmarks.save(output_dir / BENCHMARKS_FILE)
            if tracking:
                tracking.log_metrics(benchmarks.every_task_metrics(), step=0)
        (output_dir / AGGREGATES_FILE).write_text(
            json.dumps(
                {
                    "rows_from": spec.rows_from,
                    "labels": labels,
                    "lower_is_better": benchmarks.lower_is_better() if benchmarks else [],
                    "combinations": [
                        {"position": c.position, "label": c.label, "metrics": aggregates.get(c.position, {})} for c in spec.combinations
                    ],
                },
                indent=1,
            ),
            encoding="utf-8",
        )
        events.emit(ARTIFACT, kind="evaluation", path=str(output_dir))
        if tracking:
            tracking.log_output(output_dir, include_weights=False)
        status = "FINISHED"
    finally:
        if tracking:
            tracking.finish(status)
    events.emit(DONE, models_loaded=dict(loads))
    return True


def deltas(aggregates: dict[int, dict[str, float]], position: int) -> dict[str, float]:
    """Each metric minus the baseline's (position 1), once the baseline has been scored."""
    baseline = aggregates.get(1)
    if baseline is None or position == 1:
        return {}
    return {f"delta_{k}": v - baseline[k] for k, v in aggregates[position].items() if k in baseline}


def load_model(group: Group, device: DeviceCaps, loads: Counter[str], every_adapter: bool = True) -> PreTrainedModel:
    """The group's base model once, with every adapter of the group attached under its own name (the first alone
    unless ``every_adapter``: ``attach_adapters`` adds the others)."""
    kwargs: dict[str, Any] = {
        "dtype": torch.bfloat16 if device.kind == "cuda" and device.bf16 else torch.float32,
        "revision": group.combinations[0].model.revision,
    }
    if device.kind == "cuda":
        kwargs["device_map"] = {"": 0}
    print(f"loading base model {group.source}", file=sys.stderr, flush=True)
    started = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(group.source, **kwargs)
    loads[group.source] += 1
    loaded = time.monotonic()
    adapters = [c for c in group.combinations if c.adapter_path]
    for combo in adapters:
        if not Path(combo.adapter_path or "").exists():
            raise FileNotFoundError(f"combination {combo.position} ({combo.label}): adapter not found at {combo.adapter_path}")
    if adapters:
        model = PeftModel.from_pretrained(model, adapters[0].adapter_path, adapter_name=adapter_name(adapters[0]), low_cpu_mem_usage=True)
        if every_adapter:
            attach_adapters(model, group)
    model.eval()
    print(
        f"loaded in {loaded - started:.1f}s, {len(model.peft_config) if adapters else 0} adapter(s) in {time.monotonic() - loaded:.1f}s",
        file=sys.stderr,
        flush=True,
    )
    return model


def attach_adapters(model: PreTrainedModel, group: Group) -> None:
    """Every adapter of the group not attached yet, under its own name."""
    for combo in group.combinations:
        if combo.adapter_path and adapter_name(combo) not in getattr(model, "peft_config", {}):
            model.load_adapter(combo.adapter_path, adapter_name=adapter_name(combo), low_cpu_mem_usage=True)
    model.eval()


def answer_rows(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    group: Group,
    cases: list[EvalCase],
    spec: EvaluationSpec,
    events: EventSink,
    progress: Progress,
    results: dict[int, list[RowResult]],
    results_file: Any,
    source_rows: Any,
    rewarded: dict[int, list[dict[str, float]]],
) -> dict[int, tuple[float, int]]:
    """Generate and score every case with every combination of the group.

    Returns per combination position the seconds and tokens of the batches its rows were generated in (shared with
    the group's other combinations in mixed batches). With rewards in the spec, each answer's rewards join its
    scores and ``rewarded[position]``."""
    config = generation_config(model, tokenizer, spec.generation)
    prompts = [encode_prompt(tokenizer, case.prompt) for case in cases]
    answers = [encode_answer(tokenizer, case.prompt, ids, case.answer) for case, ids in zip(cases, prompts)]
    # Longest first: similar lengths share a batch (less padding), and a batch too big for memory fails early.
    order = sorted(range(len(cases)), key=lambda i: -len(prompts[i]) - len(answers[i]))
    costs = {combo.position: (0.0, 0) for combo in group.combinations}
    for combo in group.combinations:
        results.setdefault(combo.position, [])
    names = [adapter_name(combo) for combo in group.combinations]
    files = {adapter_name(combo): combo.adapter_path for combo in group.combinations if combo.adapter_path}
    for batch in answer_batches(model, tokenizer, config, names, prompts, answers, order, max(1, spec.batch_size), files):
        combos = [group.combinations[k] for k in batch.combinations]
        generated, scored = batch.generated, batch.scored
        rewards = _reward_scores(spec, generated.texts, [cases[i] for combo in combos for i in batch.rows], source_rows)
        rows = []
        for k, (combo, i) in enumerate((combo, i) for combo in combos for i in batch.rows):
            case = cases[i]
            result = RowResult(generated.texts[k], case.reference, generated.new_tokens[k], generated.seconds, scored[k][0], scored[k][1])
            results[combo.position].append(result)
            if rewards:
                rewarded.setdefault(combo.position, []).append(rewards[k])
            row = {
                "position": combo.position,
                "row_index": case.row_index,
                "input": case.input,
                "scores": {**score_row(result.output, result.reference), **(rewards[k] if rewards else {})},
                **asdict(result),
            }
            rows.append(row)
            results_file.write(json.dumps(row) + "\n")
        for combo in combos:
            seconds, tokens = costs[combo.position]
            costs[combo.position] = (seconds + generated.seconds, tokens + sum(generated.new_tokens))
        progress.report(
            events, results_file, rows, tokens_per_s=round(sum(generated.new_tokens) / generated.seconds, 1) if generated.seconds else None
        )
    return costs


def _reward_scores(spec: EvaluationSpec, outputs: list[str], cases: list[EvalCase], source_rows: Any) -> list[dict[str, float]]:
    if not spec.rewards:
        return []
    return reward_scores(spec.rewards, outputs, [case.reference for case in cases], [dict(source_rows[case.row_index]) for case in cases])


def _start_tracking(spec: EvaluationSpec):
    if not spec.mlflow_tracking_uri:
        return None
    from trainer.evaluation.tracking import start_evaluation_tracking  # mlflow only when tracking is on

    return start_evaluation_tracking(spec)
