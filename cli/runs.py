"""``ftapp train`` and ``ftapp runs ...``: start fine-tuning runs and follow them from a terminal."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from typing import Any

from cli.bundles import BUNDLE_ACTIONS, add_bundle_parsers, run_bundle_action
from cli.output import details, plain, table, to_json
from ftapp.errors import FtappError
from ftapp.prompts import MODERN
from ftapp.run_vocabulary import RunKind, RunStatus
from ftapp.runs import REWARD_KINDS, STRATEGY_HELP, FineTuneRequest, RunRecord, readable_log
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
    """``KIND[:WEIGHT][,param=value...]``, e.g. ``regex_match:0.5,pattern=^\\d+$``, or the reward as a JSON object.

    A comma followed by text without ``=`` belongs to the value before it, so ``pattern=\\d{1,3}`` survives.
    """
    if text.lstrip().startswith("{"):
        try:
            given = json.loads(text)
        except ValueError as error:
            raise FtappError(f"--reward {text!r} is no JSON object: {error}") from error
        if not isinstance(given, dict):
            raise FtappError(f"--reward {text!r} is no JSON object")
        return given
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


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields the command line sets; the preset (or the request's defaults) gives the others."""
    flags = {
        "base_model_id": args.model,
        "dataset_id": args.dataset,
        "prompt_id": args.prompt,
        "adapter_name": args.name,
        "method": args.method,
        "gpus": args.gpus,
        "num_processes": args.processes,
        "strategy": args.strategy,
        "num_epochs": args.epochs,
        "learning_rate": args.lr,
        "dataset_fraction": args.fraction,
        "train_test_split": args.split,
        "init_adapter_id": args.init_adapter,
        "framework": args.framework,
        "axolotl_config_id": args.axolotl_config,
    }
    return {field: value for field, value in flags.items() if value is not None}


def request_from_args(services: Services, args: argparse.Namespace) -> tuple[FineTuneRequest, str | None]:
    """The request this command line builds, and the shipped config preset its configs come from (None when
    they are given by id). ``--preset`` names a saved training preset (its fields, then the options given here)
    or a shipped config preset; the configs follow the training mode as in the Train tab (``preset_configs``)."""
    base, config_preset = services.training_presets.start_from(args.preset or MODERN)
    mode = "qlora" if args.qlora else "full" if args.full else "lora" if args.lora else base.training_mode
    configs: dict[str, Any] = (
        services.training_presets.config_ids(config_preset, mode)
        if config_preset
        else {
            f: getattr(base, f)
            for f in ("training_arguments_config_id", "lora_config_id", "bitsandbytes_config_id", "generation_config_id")
        }
    )
    chosen = {
        "training_arguments_config_id": args.training_config,
        "lora_config_id": args.lora_config,
        "bitsandbytes_config_id": args.bnb_config,
    }
    if any(chosen.values()):
        config_preset = None  # a config given by id: the request no longer starts from the shipped preset alone
    configs.update({field: value for field, value in chosen.items() if value})
    lora = {"r": args.lora_r, "lora_alpha": args.lora_alpha}
    request = replace(
        base,
        **_given(args),
        **configs,
        training_mode=mode,
        overrides={**base.overrides, **parse_assignments(args.set or [])},
        lora_overrides={**base.lora_overrides, **{key: value for key, value in lora.items() if value is not None}}
        if mode != "full"
        else {},
        method_settings={**base.method_settings, **parse_assignments(args.method_set or [], "--method-set")},
        rewards=tuple(parse_reward(text) for text in args.reward) if args.reward else base.rewards,
    )
    return request, config_preset


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
    request, config_preset = request_from_args(services, args)
    if args.save_preset:
        preset = services.training_presets.save(args.save_preset, request, config_preset)
        print(
            to_json(preset)
            if args.json
            else f"saved preset '{preset.name}'; start a run from it with `ftapp train --preset {shlex.quote(preset.name)} --name ADAPTER`"
        )
        return 0
    run, preflight = services.runs.submit(request)
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
        log = services.runs.log_tail(args.id, args.chars)
        print(log if args.raw else readable_log(log))
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
    # No option is required by the grammar: a saved preset may give the model and dataset, and a missing one is
    # refused by the service with its rule (FT-013, FT-014; FT-002 "name the adapter").
    train.add_argument("--model", help="base model id")
    train.add_argument("--dataset", help="dataset id")
    train.add_argument("--prompt", help="prompt id (needed for plain-column datasets)")
    train.add_argument("--name", help="name of the adapter it produces (letters, digits, -)")
    train.add_argument("--method", help="sft (default), dpo (preference pairs) or grpo (verifiable rewards)")
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--lora", action="store_true", help="LoRA adapter (default)")
    mode.add_argument("--qlora", action="store_true", help="LoRA on a 4-bit base (CUDA only)")
    mode.add_argument("--full", action="store_true", help="train every parameter")
    train.add_argument("--gpus", help="'auto' (default), 'cpu' or GPU ids like 0,1")
    train.add_argument("--processes", type=int, help="processes (one per GPU) for DDP (default 1)")
    train.add_argument("--strategy", help=f"auto (default), ddp or fsdp2. {STRATEGY_HELP}")
    train.add_argument("--epochs", type=float, help="passes over the training split (default 1)")
    train.add_argument("--lr", type=float, help="peak learning rate (default 2e-4)")
    train.add_argument("--fraction", type=float, help="fraction of rows used (default 1)")
    train.add_argument("--split", type=float, help="train fraction; the rest validates (default 0.9)")
    train.add_argument(
        "--preset",
        help=f"a preset saved with --save-preset (its settings; options given here win) or a shipped config preset (default {MODERN!r}; "
        "see `ftapp presets list`)",
    )
    train.add_argument(
        "--save-preset", metavar="NAME", help="save these settings as a preset (without the adapter's name) instead of training"
    )
    train.add_argument("--training-config", help="training_arguments config id (overrides the preset)")
    train.add_argument("--lora-config", help="lora_config id (overrides the preset)")
    train.add_argument("--bnb-config", help="bitsandbytes_config id (overrides the preset)")
    train.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="a training argument, e.g. --set max_steps=50 (max_steps=-1: run the epochs)"
    )
    train.add_argument("--lora-r", type=int, help="LoRA rank, set on top of the preset's LoRA config")
    train.add_argument("--lora-alpha", type=float, help="LoRA alpha, set on top of the preset's LoRA config")
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
    train.add_argument(
        "--framework",
        help="trl (default: ftapp's own recipes) or axolotl (Axolotl trains --axolotl-config; --set KEY=VALUE then sets its YAML keys)",
    )
    train.add_argument(
        "--axolotl-config", metavar="ID", help="the stored axolotl config an Axolotl run trains (see `ftapp configs list --type axolotl`)"
    )
    train.add_argument("--wait", action="store_true", help="follow the run until it ends")

    runs = groups.add_parser("runs", help="training and evaluation runs").add_subparsers(dest="action")
    runs.add_parser("list", parents=[common], help="all runs").add_argument("--status")
    runs.add_parser("show", parents=[common], help="a run, its metrics and state").add_argument("id")
    logs = runs.add_parser("logs", help="the tail of a run's log")
    logs.add_argument("id")
    logs.add_argument("--chars", type=int, default=4000)
    logs.add_argument("--raw", action="store_true", help="the log as written (progress lines as JSON for programs)")
    cancel = runs.add_parser("cancel", help="stop a run (SIGTERM, then SIGKILL after a grace period)")
    cancel.add_argument("id")
    cancel.add_argument("--wait", action="store_true")
    resume = runs.add_parser("resume", parents=[common], help="continue a failed or cancelled run from its last checkpoint")
    resume.add_argument("id")
    resume.add_argument("--wait", action="store_true")
    runs.add_parser("watch", parents=[common], help="follow a run until it ends").add_argument("id")
    add_bundle_parsers(runs, common)
