"""Training presets on the command line: ``ftapp train ... --save-preset``, ``ftapp presets list|show|remove`` and
``ftapp train --preset NAME``, whose options win over the preset's; missing choices are named with their rule."""

from __future__ import annotations

import json

from cli.main import main
from cli.parser import build_parser
from cli.references import resolve_arguments
from cli.runs import request_from_args
from ftapp.runs import FineTuneRequest
from ftapp.services import Services
from tests.ftapp.test_rule_catalogue import CPU


def cli(capsys, services: Services, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--home", str(services.settings.home), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def parsed(services: Services, *argv: str) -> FineTuneRequest:
    args = build_parser().parse_args(list(argv))
    resolve_arguments(services, args)
    return request_from_args(services, args)[0]


def test_save_list_show_use_and_remove_a_preset(services: Services, registered, capsys) -> None:
    code, out, err = cli(
        capsys,
        services,
        *("train", "--model", "tiny", "--dataset", "intents", "--prompt", "intent-prompt", "--gpus", "cpu"),
        *("--set", "max_steps=4", "--lora-r", "8", "--preset", "seed 001 defaults", "--save-preset", "cpu-recipe"),
    )
    assert (code, err) == (0, "") and "saved preset 'cpu-recipe'" in out
    assert services.runs.list() == []  # saving trains nothing

    code, out, _ = cli(capsys, services, "presets", "list", "--json")
    listed = {row["name"]: row for row in json.loads(out)}
    assert listed["cpu-recipe"]["starts from"] == "seed 001 defaults" and listed["cpu-recipe"]["model"] == registered.model_id
    assert listed["modern default"]["starts from"] == "shipped config preset"
    code, out, _ = cli(capsys, services, "presets", "show", "cpu-recipe")
    assert "--name ADAPTER" in out and "--set max_steps=4" in out and "--lora-r 8" in out and "--preset 'seed 001 defaults'" in out

    request = parsed(services, "train", "--preset", "cpu-recipe", "--name", "from-preset", "--lr", "0.001", "--set", "max_steps=2")
    assert (request.base_model_id, request.prompt_id, request.gpus) == (registered.model_id, registered.prompt_id, "cpu")
    assert (request.adapter_name, request.learning_rate, request.overrides, request.lora_overrides) == (
        "from-preset",
        0.001,
        {"max_steps": 2},
        {"r": 8},
    )
    seed = next(p for p in services.configs.presets() if p.name == "seed 001 defaults")
    assert request.training_arguments_config_id == seed.configs["training_arguments"].id
    assert parsed(services, "train", "--preset", "cpu-recipe", "--full", "--name", "x").lora_config_id is None  # configs follow the mode
    assert services.runs.check(request, CPU)[0] == []

    code, out, _ = cli(capsys, services, "presets", "remove", "cpu-recipe")
    assert code == 0 and services.training_presets.list() == []


def test_what_a_command_line_leaves_out_is_named_with_its_rule(services: Services, registered, capsys) -> None:
    code, _, err = cli(capsys, services, "train", "--name", "lonely")
    assert code == 2 and "FT-013: choose a base model to train" in err and "FT-014: choose a dataset to train on" in err

    code, _, err = cli(capsys, services, "train", "--model", "tiny", "--dataset", "intents", "--prompt", "intent-prompt", "--gpus", "cpu")
    assert code == 2 and "FT-002: name the adapter" in err

    code, _, err = cli(capsys, services, "train", "--preset", "no-such", "--name", "x")
    assert code == 2 and "TP-002: no saved or shipped preset is named 'no-such'" in err and "modern default" in err

    code, _, err = cli(capsys, services, "train", "--model", "tiny", "--dataset", "intents", "--lr", "-1", "--save-preset", "bad")
    assert code == 2 and "FT-009: learning_rate" in err and services.training_presets.list() == []
    assert services.runs.list() == []
