"""``ftapp train`` and ``ftapp runs ...``: start fine-tuning runs and follow them from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.bundles import BUNDLE_ACTIONS, add_bundle_parsers, run_bundle_action
from cli.output import details, plain, table, to_json
from ftapp.errors import FtappError
from ftapp.prompts import MODERN
from ftapp.run_vocabulary import RunKind, RunStatus
from ftapp.runs import REWARD_KINDS, FineTuneRequest, RunRecord
from ftapp.services import Services

RUN_COLUMNS = ["id", "kind", "name", "status", "step", "total_steps", "gpus", "created_at", "error_cause"]


def parse_assignments(pairs: list[str], flag: str = "--set") -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, true/false), else text."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise FtappError(f"{flag} takes key=value (got {pair!r})")
        try:
            values[key.strip()] = json.loads(raw)
        except ValueError:
            values[key.strip()] = raw
    return values


def _reward_value(key: str, raw: str) -> Any:
    # Patterns and paths stay text ("123" is a fine regex); numbers that do not parse stay text for FT-018 to name.
    number = {"weight": float, "tolerance": float, "target_length": int}.get(key)
    try:
        return number(raw) if number else raw
    except ValueError:
        return raw


def parse_reward(text: str) -> dict[str, Any]:
    """``KIND[:WEIGHT][,param=value...]``, e.g. ``regex_match:0.5,pattern=^\\d+$``.

    A comma followed by text without ``=`` belongs to the value before it, so ``pattern=\\d{1,3}`` survives.
    """
    head, _, rest = text.partition(",")
    kind, sep, weight = head.partition(":")
    reward: dict[str, Any] = {"kind": kind.strip()}
    if sep:
        reward["weight"] = _reward_value("weight", weight.strip())
    params: list[str] = []
    for part in rest.split(",") if rest else []:
        if "=" in part or not params:
            params.append(part)
        else:
            params[-1] += "," + part
    for param in params:
        key, sep, raw = param.partition("=")
        if not sep or not key.strip():
            raise FtappError(f"--reward takes KIND[:WEIGHT][,param=value...] (got {text!r})")
        reward[key.strip()] = _reward_value(key.strip(), raw)
    return reward


def _preset_config(services: Services, preset: str, config_type: str) -> str | None:
    for candidate in services.configs.presets():
        if candidate.name == preset and config_type in candidate.configs:
            return candidate.configs[config_type].id
    raise FtappError(f"unknown preset {preset!r}; see `ftapp configs presets`")


def request_from_args(services: Services, args: argparse.Namespace) -> FineTuneRequest:
    mode = "qlora" if args.qlora else "full" if args.full else "lora"
    return FineTuneRequest(
        base_model_id=args.model,
        dataset_id=args.dataset,
        prompt_id=args.prompt,
        adapter_name=args.name,
        method=args.method,
        training_mode=mode,
        gpus=args.gpus,
        num_processes=args.processes,
        num_epochs=args.epochs,
        learning_rate=args.lr,
        dataset_fraction=args.fraction,
        train_test_split=args.split,
        training_arguments_config_id=args.training_config or _preset_config(services, args.preset, "training_arguments"),
        lora_config_id=args.lora_config or (_preset_config(services, args.preset, "lora_config") if mode != "full" else None),
        bitsandbytes_config_id=args.bnb_config
        or (_preset_config(services, args.preset, "bitsandbytes_config") if mode == "qlora" else None),
        overrides=parse_assignments(args.set or []),
        method_settings=parse_assignments(args.method_set or [], "--method-set"),
        rewards=tuple(parse_reward(text) for text in args.reward or []),
        init_adapter_id=args.init_adapter,
    )


def _progress_line(run: RunRecord) -> str:
    step = f"step {run.step}/{run.total_steps}" if run.step is not None else "waiting for the first step"
    eta = f", eta {run.eta_s:.0f}s" if run.eta_s is not None else ""
    return f"[{run.status}] {step}{eta}"


def _follow(services: Services, run_id: str, quiet: bool) -> RunRecord:
    last: dict[str, str] = {}

    def show(run: RunRecord) -> None:
        if quiet:
            return
        line = _progress_line(run)
        series = services.runs.metrics(run.id).get("loss", [])
        if series:
            line += f", loss {series[-1][1]:.4f} at step {series[-1][0]}"
        if line != last.get("line"):
            print(line, flush=True)
            last["line"] = line

    return services.runs.wait(run_id, on_tick=show)


def _finish(args: argparse.Namespace, run: RunRecord) -> None:
    if args.json:
        print(to_json(run))
    else:
        print(f"run {run.id}: {run.status}")
        if run.error_text:
            print(run.error_text, file=sys.stderr)


def _submitted_state(run: RunRecord) -> str:
    """What a just-submitted run is doing: started only when a process runs it."""
    if run.status == RunStatus.QUEUED:
        return "queued (it starts when its devices are free)"
    if run.status == RunStatus.RUNNING:
        return "started"
    return f"{run.status}: {run.error_cause or ''}".rstrip(": ")


def run_train(services: Services, args: argparse.Namespace) -> int:
    run, preflight = services.runs.submit(request_from_args(services, args))
    if not args.json:
        print(f"preflight: {preflight.summary()}", file=sys.stderr)
    services.supervisor.tick()  # start it now if its devices are free; it keeps running after this command returns
    if not args.wait:
        current = services.runs.get(run.id)
        print(to_json(current) if args.json else f"run {run.id} {_submitted_state(current)}; follow it with `ftapp runs watch {run.id}`")
        return 0 if current.status != RunStatus.FAILED else 1
    final = _follow(services, run.id, quiet=args.json)
    _finish(args, final)
    return 0 if final.status == RunStatus.SUCCEEDED else 1


def run_runs(services: Services, args: argparse.Namespace) -> int:
    if args.action == "list":
        runs = list(reversed(services.runs.list(args.status)))  # newest first, as the Runs tab
        services.supervisor.tick()
        print(to_json(runs) if args.json else table([plain(r) for r in runs], RUN_COLUMNS))
    elif args.action == "show":
        services.supervisor.tick()
        run = services.runs.get(args.id)
        metrics = services.runs.metrics(args.id)
        results = services.evaluations.results(args.id) if run.kind == RunKind.EVALUATION else None
        if args.json:
            print(to_json({"run": run, "metrics": metrics, **({"evaluation": results} if results else {})}))
        else:
            print(details(run))
            for name, points in metrics.items():
                print(f"{name}: {len(points)} points, last {points[-1][1]:.5g} at step {points[-1][0]}")
            if results:
                from cli.evaluations import results_table  # it imports this module's parse_assignments

                print(results_table(results))
    elif args.action == "logs":
        print(services.runs.log_tail(args.id, args.chars))
    elif args.action == "cancel":
        run = services.runs.cancel(args.id)
        final = services.runs.wait(run.id, timeout_s=60) if args.wait else run
        print(f"run {run.id}: {final.status if args.wait else 'cancel requested'}")
    elif args.action == "resume":
        run = services.runs.resume(args.id)
        services.supervisor.tick()
        if not args.wait:
            print(f"run {run.id} resumes run {args.id}")
            return 0
        final = _follow(services, run.id, quiet=args.json)
        _finish(args, final)
        return 0 if final.status == RunStatus.SUCCEEDED else 1
    elif args.action == "watch":
        final = _follow(services, args.id, quiet=args.json)
        _finish(args, final)
        return 0 if final.status == RunStatus.SUCCEEDED else 1
    elif args.action in BUNDLE_ACTIONS:
        return run_bundle_action(services, args)
    return 0


def add_run_parsers(groups, common: argparse.ArgumentParser) -> None:
    train = groups.add_parser("train", parents=[common], help="fine-tune a model (starts a supervised run)")
    train.add_argument("--model", required=True, help="base model id")
    train.add_argument("--dataset", required=True, help="dataset id")
    train.add_argument("--prompt", help="prompt id (needed for plain-column datasets)")
    train.add_argument("--name", required=True, help="name of the adapter it produces (letters, digits, -)")
    train.add_argument("--method", default="sft", help="sft, dpo (preference pairs) or grpo (verifiable rewards)")
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--lora", action="store_true", help="LoRA adapter (default)")
    mode.add_argument("--qlora", action="store_true", help="LoRA on a 4-bit base (CUDA only)")
    mode.add_argument("--full", action="store_true", help="train every parameter")
    train.add_argument("--gpus", default="auto", help="'auto', 'cpu' or GPU ids like 0,1")
    train.add_argument("--processes", type=int, default=1, help="processes (one per GPU) for DDP")
    train.add_argument("--epochs", type=float, default=1.0)
    train.add_argument("--lr", type=float, default=2e-4)
    train.add_argument("--fraction", type=float, default=1.0, help="fraction of rows used")
    train.add_argument("--split", type=float, default=0.9, help="train fraction; the rest validates")
    train.add_argument("--preset", default=MODERN, help="config preset (see `ftapp configs presets`)")
    train.add_argument("--training-config", help="training_arguments config id (overrides the preset)")
    train.add_argument("--lora-config", help="lora_config id (overrides the preset)")
    train.add_argument("--bnb-config", help="bitsandbytes_config id (overrides the preset)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="a training argument, e.g. --set max_steps=50")
    train.add_argument(
        "--method-set",
        action="append",
        metavar="KEY=VALUE",
        help="a DPO/GRPO setting, e.g. --method-set beta=0.2 (dpo: beta, loss_type; "
        "grpo: num_generations, max_completion_length, temperature, beta)",
    )
    train.add_argument(
        "--reward",
        action="append",
        metavar="KIND[:WEIGHT][,param=value...]",
        help=f"a GRPO reward, repeatable, e.g. --reward exact_match --reward regex_match:0.5,pattern=^\\d+$ "
        f"(kinds: {', '.join(REWARD_KINDS)}; params: pattern, tolerance, target_length, code_path)",
    )
    train.add_argument("--init-adapter", metavar="ID", help="DPO/GRPO: id of an adapter on the same base model to keep training")
    train.add_argument("--wait", action="store_true", help="follow the run until it ends")

    runs = groups.add_parser("runs", help="training and evaluation runs").add_subparsers(dest="action")
    runs.add_parser("list", parents=[common], help="all runs").add_argument("--status")
    runs.add_parser("show", parents=[common], help="a run, its metrics and state").add_argument("id")
    logs = runs.add_parser("logs", help="the tail of a run's log")
    logs.add_argument("id")
    logs.add_argument("--chars", type=int, default=4000)
    cancel = runs.add_parser("cancel", help="stop a run (SIGTERM, then SIGKILL after a grace period)")
    cancel.add_argument("id")
    cancel.add_argument("--wait", action="store_true")
    resume = runs.add_parser("resume", parents=[common], help="continue a failed or cancelled run from its last checkpoint")
    resume.add_argument("id")
    resume.add_argument("--wait", action="store_true")
    runs.add_parser("watch", parents=[common], help="follow a run until it ends").add_argument("id")
    add_bundle_parsers(runs, common)
