"""``ftapp compare``: one prompt answered by a base model and its adapters, through the playground's worker."""

from __future__ import annotations

import argparse
import sys

from cli.output import to_json
from cli.runs import parse_assignments
from ftapp.compare import CompareRequest
from ftapp.services import Services


def add_compare_parser(groups, common: argparse.ArgumentParser) -> None:
    compare = groups.add_parser("compare", parents=[common], help="answer one prompt with a base model and its adapters")
    compare.add_argument("--model", required=True, help="base model id")
    compare.add_argument("--adapter", action="append", default=[], metavar="ID", help="an adapter of that model (up to 4)")
    compare.add_argument("--no-base", action="store_true", help="leave the base model alone out")
    source = compare.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the prompt as typed")
    source.add_argument("--row", type=int, help="a dataset row rendered through --prompt's input template")
    compare.add_argument("--dataset", help="dataset id (with --row)")
    compare.add_argument("--prompt", help="prompt id (with --row)")
    compare.add_argument("--chat", action="store_true", help="send the text as a user turn through the chat template")
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--set", action="append", metavar="KEY=VALUE", help="a generation setting, e.g. --set max_new_tokens=64")


def run_compare(services: Services, args: argparse.Namespace) -> int:
    text = args.text
    if args.row is not None:
        if not (args.dataset and args.prompt):
            print("error: --row needs --dataset and --prompt", file=sys.stderr)
            return 2
        text = services.comparisons.sample_prompt(args.dataset, args.prompt, args.row)
    request = CompareRequest(
        model_id=args.model,
        adapter_ids=tuple(args.adapter),
        include_base=not args.no_base,
        prompt=text or "",
        chat=args.chat,
        generation=parse_assignments(args.set or []),
        seed=args.seed,
    )
    services.supervisor.start_background()  # the worker is started and watched by this process's supervisor
    final = None
    for snapshot in services.comparisons.generate(request):
        final = snapshot
    assert final is not None and final.done
    if args.json:
        print(
            to_json(
                {
                    "labels": final.comparison.labels,
                    "texts": final.texts,
                    "new_tokens": final.new_tokens,
                    "seconds": final.seconds,
                    "settings": final.comparison.generation,
                    "seed": final.comparison.seed,
                }
            )
        )
        return 0
    print(f"prompt: {text!r}  seed {request.seed}  settings {final.comparison.generation}")
    for label, output, tokens in zip(final.comparison.labels, final.texts, final.new_tokens or (None,) * len(final.texts)):
        print(f"\n=== {label} ({tokens} tokens) ===\n{output}")
    print(f"\n{final.seconds or 0:.2f} s; the worker stays loaded for the next prompt until its idle timeout", file=sys.stderr)
    return 0
