"""``ftapp evaluate``: score model/adapter combinations on held-out rows; the aggregate table for ``runs show``."""

from __future__ import annotations

import argparse
import sys

from cli.output import table, to_json
from cli.runs import parse_assignments, parse_reward
from ftapp.errors import FtappError
from ftapp.evaluation import LOWER_IS_BETTER, Combination, EvaluationRequest, EvaluationResults
from ftapp.run_vocabulary import RunStatus
from ftapp.runs import REWARD_KINDS, RunRecord
from ftapp.services import Services

# The columns people look at first; the rest follow in the order the trainer reported them.
LEADING_METRICS = ("reward", "preference_accuracy", "reward_accuracy", "reward_margin", "accuracy", "macro_f1", "exact_match", "token_f1", "rougeL", "bleu", "perplexity")


def parse_combination(text: str) -> Combination:
    model, _, adapter = text.partition(":")
    if not model.strip():
        raise FtappError(f"--combo takes MODEL_ID or MODEL_ID:ADAPTER_ID (got {text!r})")
    return Combination(model.strip(), adapter.strip() or None)


def add_evaluate_parser(groups, common: argparse.ArgumentParser) -> None:
    evaluate = groups.add_parser("evaluate", parents=[common], help="score model/adapter combinations on a dataset's held-out rows")
    evaluate.add_argument("--dataset", required=True, help="dataset id")
    evaluate.add_argument("--prompt", help="prompt id (its input and completion templates); optional for conversational "
                                           "and preference datasets")
    evaluate.add_argument("--combo", action="append", required=True, metavar="MODEL[:ADAPTER]",
                          help="a column: a model id, optionally with an adapter id; the first is the baseline")
    evaluate.add_argument("--fraction", type=float, default=1.0, help="fraction of rows when no adapter's held-out split applies")
    evaluate.add_argument("--max-rows", type=int, help="score a seeded sample of at most this many rows")
    evaluate.add_argument("--seed", type=int, default=42)
    evaluate.add_argument("--batch-size", type=int, default=16, help="rows per generation batch")
    evaluate.add_argument("--gpus", default="auto", help="'auto', 'cpu' or a GPU id")
    evaluate.add_argument("--generation-config", help="generation_config id")
    evaluate.add_argument("--set", action="append", metavar="KEY=VALUE", help="a generation setting, e.g. --set max_new_tokens=32")
    evaluate.add_argument("--reward", action="append", metavar="KIND[:WEIGHT][,param=value...]",
                          help="score every answer with this reward, repeatable, as `train --reward` takes it (kinds: "
                               f"{', '.join(REWARD_KINDS)}); default: the rewards of the adapters' GRPO run")
    evaluate.add_argument("--wait", action="store_true", help="follow the run and print the results table")


def run_evaluate(services: Services, args: argparse.Namespace) -> int:
    request = EvaluationRequest(
        dataset_id=args.dataset, prompt_id=args.prompt or "", combinations=tuple(parse_combination(c) for c in args.combo),
        gpus=args.gpus, generation_config_id=args.generation_config, generation=parse_assignments(args.set or []),
        dataset_fraction=args.fraction, max_rows=args.max_rows, seed=args.seed, batch_size=args.batch_size,
        rewards=tuple(parse_reward(text) for text in args.reward) if args.reward else None,
    )
    run = services.evaluations.submit(request)
    services.supervisor.tick()
    if not args.wait:
        print(to_json(services.runs.get(run.id)) if args.json else f"evaluation {run.id} started; follow it with `ftapp runs watch {run.id}`")
        return 0
    last = {"line": ""}

    def show(current: RunRecord) -> None:
        line = f"[{current.status}] {current.step or 0}/{current.total_steps or '?'} answers"
        if not args.json and line != last["line"]:
            print(line, flush=True)
            last["line"] = line

    final = services.runs.wait(run.id, on_tick=show)
    results = services.evaluations.results(run.id)
    if args.json:
        print(to_json(results))
    else:
        print(results_table(results))
        if final.error_text:
            print(final.error_text, file=sys.stderr)
    return 0 if final.status == RunStatus.SUCCEEDED else 1


def results_table(results: EvaluationResults) -> str:
    """One line per combination: metrics, and deltas against the baseline in brackets (+ better, - worse)."""
    names = results.metric_names()
    metrics = [m for m in LEADING_METRICS if m in names] + [m for m in names if m not in LEADING_METRICS]
    rows = []
    for combo in results.combinations:
        row = {"#": combo.position, "combination": combo.label + ("" if combo.final else " (running)")}
        for name in metrics:
            value = combo.metrics.get(name)
            delta = combo.deltas.get(name)
            row[name] = "" if value is None else f"{value:.4g}" + ("" if delta is None else f" ({delta:+.3g})")
        rows.append(row)
    header = f"rows: {results.rows_from}; {results.answers}/{results.expected} answers"
    note = f"deltas against #1; lower is better for {', '.join(sorted(LOWER_IS_BETTER))}"
    return "\n".join([header, table(rows, ["#", "combination", *metrics]), note])
