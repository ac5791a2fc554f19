"""``ftapp presets ...``: the training presets saved from the Train tab or with ``ftapp train --save-preset``."""

from __future__ import annotations

import argparse

from cli.output import table, to_json
from ftapp.errors import FtappError
from ftapp.runs import train_command
from ftapp.services import Services

PRESET_COLUMNS = ["name", "starts from", "method", "mode", "model", "dataset", "created_at"]


def _row(services: Services, name: str) -> dict[str, str]:
    try:
        preset = services.training_presets.get(name)
    except FtappError as error:  # one unreadable row (an import) must not hide the others
        return {"name": name, "starts from": f"unreadable: {error}"}
    request = preset.request
    return {
        "name": preset.name,
        "starts from": preset.config_preset or "configs by id",
        "method": request.method,
        "mode": request.training_mode,
        "model": request.base_model_id or "-",
        "dataset": request.dataset_id or "-",
        "created_at": str(preset.created_at),
    }


def run_presets(services: Services, args: argparse.Namespace) -> None:
    if args.action == "list":
        rows = [_row(services, record.name) for record in services.training_presets.list()]
        shipped = [{"name": name, "starts from": "shipped config preset"} for name in services.training_presets.shipped()]
        print(to_json(rows + shipped) if args.json else table(rows + shipped, PRESET_COLUMNS))
    elif args.action == "show":
        preset = services.training_presets.get(args.name)
        print(to_json(preset) if args.json else train_command(preset.request, preset.config_preset).replace("--name ''", "--name ADAPTER"))
    elif args.action == "remove":
        services.training_presets.remove(args.name)
        print(f"removed preset '{args.name}'")


def add_preset_parsers(groups, common: argparse.ArgumentParser) -> None:
    presets = groups.add_parser(
        "presets", help="training presets: saved Train forms (`ftapp train ... --save-preset NAME`) and the shipped config presets"
    ).add_subparsers(dest="action")
    presets.add_parser("list", parents=[common], help="saved and shipped presets")
    presets.add_parser("show", parents=[common], help="a saved preset as the `ftapp train` command it gives").add_argument("name")
    presets.add_parser("remove", help="delete a saved preset").add_argument("name")
