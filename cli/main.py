"""``ftapp``: the command line for harness builders, a thin layer over the same services as the UI.

Errors exit non-zero with the rule ID and message on stderr, and write nothing. Wherever a command takes an
id it also takes a unique name or an id prefix of at least 6 characters (``cli.references``). A reader that
stops early (``ftapp runs list | head -1``) is no error: the output just ends.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cli.compare import run_compare
from cli.evaluations import run_evaluate
from cli.exports import run_export, run_serve
from cli.output import details, plain, table, to_json
from cli.presets import run_presets
from cli.references import resolve_arguments
from cli.runs import run_runs, run_train
from cli.secrets import run_secrets
from ftapp.datasets import AddDatasetRequest
from ftapp.errors import FtappError, ValidationError
from ftapp.models import AddAdapterRequest, AddModelRequest
from ftapp.prompts import AddConfigRequest, AddPromptRequest
from ftapp.services import Services, open_services
from ftapp.settings import Settings

LIST_COLUMNS = {
    "datasets": ["id", "name", "type", "format", "num_rows", "source"],
    "models": ["id", "name", "type", "architecture", "num_parameters", "huggingface_name", "location"],
    "adapters": ["id", "name", "type", "model", "peft_type", "location"],
    "prompts": ["id", "name", "dataset_id", "prompt_template"],
    "configs": ["id", "type", "name", "is_default", "config"],
}


def _emit(args: argparse.Namespace, value: Any, human: str | None = None) -> None:
    print(to_json(value) if args.json else (human if human is not None else details(value)))


def _list(args: argparse.Namespace, records: list, models: dict[str, str] | None = None) -> None:
    """``models``: model id -> name, for the adapters' ``model`` column (the base model's name, not its id)."""
    rows = [plain(r) for r in records]
    if models is not None:
        rows = [{**row, "model": models.get(row["model_id"], row["model_id"])} for row in rows]
    _emit(args, records, table(rows, LIST_COLUMNS[args.group]))


def _service(services: Services, group: str):
    return getattr(services, group)


def _read_text_arg(value: str | None, file: str | None) -> str | None:
    if file:
        return Path(file).read_text(encoding="utf-8")
    return value


def run_datasets(services: Services, args: argparse.Namespace) -> None:
    if args.action == "add":
        record = services.datasets.add(
            AddDatasetRequest(
                name=args.name or "",
                type=args.type,
                location=args.path,
                huggingface_name=args.hub,
                hf_config=args.config,
                hf_split=args.split,
                description=args.description,
            )
        )
        _emit(args, record)
    elif args.action == "preview":
        page = services.datasets.preview(args.id, args.offset, args.limit)
        columns = list(dict.fromkeys(k for row in page.rows for k in row))
        _emit(args, page, f"rows {page.offset}-{page.offset + len(page.rows) - 1} of {page.total}\n" + table(page.rows, columns))
    elif args.action == "remove":
        removed = services.datasets.remove(args.id, remove_prompts=args.with_prompts)
        print(f"removed dataset {args.id}" + (f" and prompts {', '.join(removed)}" if removed else ""))


def run_models(services: Services, args: argparse.Namespace) -> None:
    if args.action == "add":
        model_type = "project" if args.path else "model_registry" if args.registry else "huggingface"
        if args.path and Path(args.path).is_file() and not args.json:
            print(
                f"converting {args.path} into a model folder in the home (about 30 s for 135M parameters on 2 cores)...",
                file=sys.stderr,
                flush=True,
            )
        record = services.models.add(
            AddModelRequest(
                type=model_type,
                name=args.name or "",
                huggingface_name=args.hub,
                location=args.path,
                registry_name=args.registry,
                registry_version=args.version,
                description=args.description,
            )
        )
        _emit(args, record)
    elif args.action == "demo":
        result = services.demo.install()
        real = services.demo.install_real_model() if args.real else None
        human = (
            f"demo model   {result.model.id}  {result.model.name}  {result.model.location}\n"
            f"demo dataset {result.dataset.id}  {result.dataset.name}  ({result.dataset.num_rows} rows)\n"
            f"demo prompt  {result.prompt.id}  {result.prompt.name}"
        )
        if real is not None:
            human += f"\nreal model   {real.id}  {real.name}  {real.location or real.huggingface_name}"
        _emit(args, {**vars(result), "real_model": real} if real is not None else result, human)
    elif args.action == "accept-license":
        _emit(args, services.models.accept_license(args.id))
    elif args.action == "remove":
        services.models.remove(args.id)
        print(f"removed model {args.id}")


def run_adapters(services: Services, args: argparse.Namespace) -> None:
    if args.action == "add":
        record = services.adapters.add(
            AddAdapterRequest(
                name=args.name,
                model_id=args.model,
                type="huggingface" if args.hub else "project",
                location=args.path,
                huggingface_name=args.hub,
                run_id=args.run,
                prompt_id=args.prompt,
                description=args.description,
            )
        )
        _emit(args, record)
    elif args.action == "remove":
        services.adapters.remove(args.id)
        print(f"removed adapter {args.id}")


def run_prompts(services: Services, args: argparse.Namespace) -> None:
    if args.action == "add":
        template = _read_text_arg(args.template, args.template_file) or ""
        input_template = args.input_template
        completion_template = args.completion_template
        if input_template is None and completion_template is None and template:
            # One template given: the whole text is the input and nothing is held out as completion.
            input_template, completion_template = template, ""
        record = services.prompts.add(
            AddPromptRequest(
                name=args.name,
                dataset_id=args.dataset,
                prompt_template=template,
                input_template=input_template,
                completion_template=completion_template,
                description=args.description,
            )
        )
        _emit(args, record)
    elif args.action == "generate":
        generated = services.prompts.generate(args.dataset)
        _emit(
            args,
            generated,
            f"output column: {generated.output_column}\n--- prompt_template ---\n"
            f"{generated.prompt_template}\n--- input_template ---\n{generated.input_template}\n"
            f"--- completion_template ---\n{generated.completion_template}",
        )
    elif args.action == "remove":
        services.prompts.remove(args.id)
        print(f"removed prompt {args.id}")


def run_configs(services: Services, args: argparse.Namespace) -> None:
    if args.action == "add":
        text = _read_text_arg(args.config, args.file) or ""
        result = services.configs.add(
            AddConfigRequest(
                type=args.type,
                config=text,
                description=args.description,
                model_family=args.family,
                name=args.name,
            )
        )
        if result.notice:
            print(result.notice, file=sys.stderr)
        _emit(args, result.record)
    elif args.action == "presets":
        presets = services.configs.presets()
        _emit(
            args,
            presets,
            "\n".join(f"{p.name}: {p.description}\n" + "\n".join(f"  {t}: {c.id}" for t, c in p.configs.items()) for p in presets),
        )
    elif args.action == "remove":
        services.configs.remove(args.id)
        print(f"removed config {args.id}")


def run_db(services: Services, args: argparse.Namespace) -> None:
    if args.action == "export":
        path = services.database.export_to(Path(args.file))
        print(f"exported to {path}")
    else:
        report = services.database.import_from(Path(args.file), args.allow_root)
        human = (
            "\n".join(
                f"{table_name}: {report.imported[table_name]} imported, {report.duplicates[table_name]} duplicates"
                + (f" ({', '.join(report.duplicate_keys[table_name][:10])})" if report.duplicate_keys.get(table_name) else "")
                for table_name in report.imported
            )
            + (
                f"\n{report.live_runs_made_history} queued or running run(s) imported as failed: imported runs are history"
                if report.live_runs_made_history
                else ""
            )
            + "".join(f"\nre-rooted {line}" for line in report.rerooted)
        )
        _emit(args, report, human)


def run_token(services: Services, args: argparse.Namespace) -> None:
    if args.action == "set":
        token = sys.stdin.readline().strip()
        if not token:
            raise FtappError("no token on standard input (e.g. `echo $TOKEN | ftapp token set`)")
        services.hf_token.store(token)
        print(f"stored with permissions 0600 in {services.hf_token.path}")
    elif args.action == "clear":
        services.hf_token.clear()
        print("token file removed")
    else:
        _emit(args, services.hf_token.status())


RUNNERS = {
    "datasets": run_datasets,
    "models": run_models,
    "adapters": run_adapters,
    "prompts": run_prompts,
    "configs": run_configs,
    "db": run_db,
    "token": run_token,
    "secrets": run_secrets,
    "presets": run_presets,
}


# Commands that start or follow runs decide their own exit status (1 when the run did not succeed).
RUN_COMMANDS = {
    "train": run_train,
    "runs": run_runs,
    "evaluate": run_evaluate,
    "compare": run_compare,
    "export": run_export,
    "serve": run_serve,
}
ACTIONLESS_COMMANDS = ("train", "evaluate", "compare", "serve")  # no sub-action after the group


def run_common(services: Services, args: argparse.Namespace) -> bool:
    """list and show are alike for every resource group."""
    if args.group not in LIST_COLUMNS or args.action not in ("list", "show"):
        return False
    service = _service(services, args.group)
    if args.action == "show":
        _emit(args, service.get(args.id))
    elif args.group == "configs":
        _list(args, service.list(args.type))
    elif args.group == "adapters":
        _list(args, service.list(), {m.id: m.name for m in services.models.list()})
    else:
        _list(args, service.list())
    return True


def main(argv: list[str] | None = None) -> int:
    try:
        status = run_command(argv)
        sys.stdout.flush()  # a short output reaches a closed pipe only here, not in print()
        return status
    except BrokenPipeError:
        # The reader has all it wanted. Point stdout at /dev/null so the interpreter's last flush
        # does not fail again with "Exception ignored ... BrokenPipeError" and exit status 120.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


def run_command(argv: list[str] | None = None) -> int:
    from cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.group not in ACTIONLESS_COMMANDS and not getattr(args, "action", None):
        parser.parse_args([args.group, "--help"] if getattr(args, "group", None) else ["--help"])
    try:
        services = open_services(Settings.from_env(args.home))
    except FtappError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        resolve_arguments(services, args)
        if args.group in RUN_COMMANDS:
            return RUN_COMMANDS[args.group](services, args)
        if not run_common(services, args):
            RUNNERS[args.group](services, args)
    except ValidationError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except FtappError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # main() ends quietly: a reader that stopped early is no error
    except (OSError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
