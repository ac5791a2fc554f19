"""``ftapp train --framework axolotl --axolotl-config ID``: the config named by id, name or prefix, --set as YAML keys,
the refusal without Axolotl, and the command line the Train tab shows for such a run."""

from __future__ import annotations

from pathlib import Path

from cli.main import main
from cli.parser import build_parser
from cli.references import resolve_arguments
from cli.runs import request_from_args
from ftapp.datasets.service import AddDatasetRequest
from ftapp.prompts.axolotl_template import TEMPLATE_NAME
from ftapp.runs import train_command
from ftapp.runs.machine import Machine
from tests.conftest import TEST_DATA

CPU = Machine(gpus=(), cpu_count=2, memory_available_mib=16_000)


def train_args(services, dataset_id: str, *extra: str) -> list[str]:
    model = services.models.list()[0].id
    return [
        "--home",
        str(services.settings.home),
        "train",
        "--model",
        model,
        "--dataset",
        dataset_id,
        "--name",
        "cli-axo",
        "--gpus",
        "cpu",
        *extra,
    ]


def alpaca(services) -> str:
    return services.datasets.add(AddDatasetRequest(location=str(TEST_DATA / "alpaca_en_demo.json"))).id


def test_without_axolotl_the_command_is_refused_and_says_how_to_install_it(services, registered, capsys, monkeypatch) -> None:
    monkeypatch.delenv("FTAPP_AXOLOTL_PYTHON", raising=False)
    capsys.readouterr()

    code = main(train_args(services, alpaca(services), "--framework", "axolotl", "--axolotl-config", TEMPLATE_NAME))

    err = capsys.readouterr().err
    assert code == 2 and "FT-001c" in err and "FTAPP_AXOLOTL_PYTHON=" in err
    assert services.runs.list() == []


def test_the_config_is_named_like_any_record_and_set_keys_go_into_the_yaml(
    services, registered, monkeypatch, stand_in_axolotl_python: Path
) -> None:
    monkeypatch.setenv("FTAPP_AXOLOTL_PYTHON", str(stand_in_axolotl_python))
    template = next(c for c in services.configs.list("axolotl") if c.name == TEMPLATE_NAME)
    dataset = alpaca(services)

    for reference in (template.id[:8], TEMPLATE_NAME):  # an id prefix or the name, as for every record
        request, _ = request_from_args(services, _resolved(services, dataset, reference, "--set", "max_steps=3"))
        assert (request.framework, request.axolotl_config_id, request.overrides) == ("axolotl", template.id, {"max_steps": 3})
    problems, preflight = services.runs.check(request, CPU)
    assert problems == [] and preflight is not None
    command = train_command(request, None)  # what the Train tab shows for it
    assert "--framework axolotl" in command and f"--axolotl-config {template.id}" in command


def _resolved(services, dataset: str, config: str, *extra: str):
    args = build_parser().parse_args(train_args(services, dataset, "--framework", "axolotl", "--axolotl-config", config, *extra)[2:])
    resolve_arguments(services, args)
    return args
