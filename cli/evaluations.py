"""``ftapp evaluate``: score model/adapter combinations on held-out rows, lm-eval benchmarks and an LLM judge; the
aggregate table for ``runs show``."""

from __future__ import annotations

import argparse
import sys

from cli.output import table, to_json
from cli.runs import parse_assignments, parse_reward
from ftapp.errors import FtappError
from ftapp.evaluation import LOWER_IS_BETTER, Combination, EvaluationRequest, EvaluationResults, JudgeRequest, parse_task_names
from ftapp.run_vocabulary import RunStatus
from ftapp.runs import REWARD_KINDS, RunRecord
from ftapp.services import Services

# The columns people look at first; the rest follow in the order the trainer reported them.
LEADING_METRICS = (
    "win_rate",
    "reward",
    "preference_accuracy",
    "reward_accuracy",
    "reward_margin",
    "accuracy",
    "macro_f1",
    "exact_match",
    "token_f1",
    "rougeL",
    "bleu",
    "perplexity",
)


def parse_combination(text: str) -> Combination:
    model, _, adapter = text.partition(":")
    if not model.strip():
        raise FtappError(f"--combo takes MODEL_ID or MODEL_ID:ADAPTER_ID (got {text!r})")
    return Combination(model.strip(), adapter.strip() or None)


def add_evaluate_parser(groups, common: argparse.ArgumentParser) -> None:
    evaluate = groups.add_parser(
        "evaluate", parents=[common], help="score model/adapter combinations on a dataset's held-out rows and/or lm-eval benchmarks"
    )
    evaluate.add_argument("--dataset", help="dataset id (optional when --benchmark or --benchmark-dir is given)")
    evaluate.add_argument(
        "--prompt", help="prompt id (its input and completion templates); optional for conversational and preference datasets"
    )
    evaluate.add_argument(
        "--combo",
        action="append",
        required=True,
        metavar="MODEL[:ADAPTER]",
        help="a column: a model id, optionally with an adapter id; the first is the baseline",
    )
    evaluate.add_argument("--fraction", type=float, default=1.0, help="fraction of rows when no adapter's held-out split applies")
    evaluate.add_argument("--max-rows", type=int, help="score a seeded sample of at most this many rows")
    evaluate.add_argument("--seed", type=int, default=42)
    evaluate.add_argument("--batch-size", type=int, default=16, help="rows per generation batch")
    evaluate.add_argument("--gpus", default="auto", help="'auto', 'cpu' or a GPU id")
    evaluate.add_argument("--generation-config", help="generation_config id")
    evaluate.add_argument("--set", action="append", metavar="KEY=VALUE", help="a generation setting, e.g. --set max_new_tokens=32")
    evaluate.add_argument(
        "--reward",
        action="append",
        metavar="KIND[:WEIGHT][,param=value...]",
        help="score every answer with this reward, repeatable, as `train --reward` takes it (kinds: "
        f"{', '.join(REWARD_KINDS)}); default: the rewards of the adapters' GRPO run",
    )
    bench = evaluate.add_argument_group("benchmarks (lm-evaluation-harness)")
    bench.add_argument(
        "--benchmark",
        action="append",
        metavar="TASK[,TASK...]",
        help="lm-eval tasks, groups or tags to score every combination on, e.g. mmlu,gsm8k (repeatable)",
    )
    bench.add_argument(
        "--benchmark-dir",
        metavar="DIR",
        help="a folder of task YAML files in lm-eval's format (data files relative to it); without --benchmark, every task in it",
    )
    bench.add_argument("--benchmark-limit", type=int, metavar="N", help="at most N documents per task (a quick look)")
    bench.add_argument("--benchmark-fewshot", type=int, metavar="N", help="few-shot examples per prompt (default: each task's own)")
    judge = evaluate.add_argument_group("LLM judge (each combination against #1, both orders)")
    judge.add_argument("--judge-model", metavar="MODEL_ID", help="a registered model judges")
    judge.add_argument("--judge-url", metavar="URL", help="or an OpenAI-compatible endpoint judges, e.g. http://127.0.0.1:8000/v1")
    judge.add_argument("--judge-api-model", metavar="NAME", help="the model name the endpoint expects")
    judge.add_argument(
        "--judge-key", metavar="NAME", help="the endpoint's API key: a name in the secrets store, or an environment variable"
    )
    judge.add_argument(
        "--judge-rubric",
        metavar="FILE",
        help="a text file with the judge's prompt: {input}, {reference}, {answer_a}, {answer_b}; default: a built-in rubric",
    )
    judge.add_argument("--judge-max-new-tokens", type=int, default=128, metavar="N")
    evaluate.add_argument("--wait", action="store_true", help="follow the run and print the results table")


def run_evaluate(services: Services, args: argparse.Namespace) -> int:
    request = EvaluationRequest(
        dataset_id=args.dataset or "",
        prompt_id=args.prompt or "",
        combinations=tuple(parse_combination(c) for c in args.combo),
        gpus=args.gpus,
        generation_config_id=args.generation_config,
        generation=parse_assignments(args.set or []),
        dataset_fraction=args.fraction,
        max_rows=args.max_rows,
        seed=args.seed,
        batch_size=args.batch_size,
        rewards=tuple(parse_reward(text) for text in args.reward) if args.reward else None,
        benchmarks=parse_task_names(",".join(args.benchmark or [])),
        benchmark_dir=args.benchmark_dir,
        benchmark_limit=args.benchmark_limit,
        benchmark_fewshot=args.benchmark_fewshot,
        judge=judge_request(args),
    )
    run = services.evaluations.submit(request)
    services.supervisor.tick()
    if not args.wait:
        print(
            to_json(services.runs.get(run.id)) if args.json else f"evaluation {run.id} started; follow it with `ftapp runs watch {run.id}`"
        )
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


def judge_request(args: argparse.Namespace) -> JudgeRequest | None:
    if not (args.judge_model or args.judge_url):
        return None
    rubric = None
    if args.judge_rubric:
        try:
            with open(args.judge_rubric, encoding="utf-8") as handle:
                rubric = handle.read(200_000)
        except OSError as error:
            raise FtappError(f"--judge-rubric: cannot read {args.judge_rubric}: {error.strerror}") from None
    return JudgeRequest(
        model_id=args.judge_model,
        url=args.judge_url,
        api_model=args.judge_api_model,
        api_key_name=args.judge_key,
        rubric=rubric,
        max_new_tokens=args.judge_max_new_tokens,
    )


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
