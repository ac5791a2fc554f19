"""The Train tab's command box: the ``ftapp train`` command it shows, split by a real shell and read by the real
command-line parser, builds the very request Start queues from the form."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cli.parser import build_parser
from cli.references import resolve_arguments
from cli.runs import request_from_args
from ftapp.models.adapters import AddAdapterRequest
from ftapp.prompts.presets import SEED_001
from ftapp.runs import FineTuneRequest
from ftapp.services import Services
from ui import train_method
from ui.train_form import TrainForm, find_preset, fine_tune_request
from ui.train_presets import command_text


def shell_words(command: str) -> list[str]:
    """The words bash makes of ``command`` pasted at its prompt: quotes, escapes and line continuations."""
    script = 'eval "set -- $1"; if [ $# -gt 0 ]; then printf "%s\\0" "$@"; fi'
    split = subprocess.run(["bash", "-c", script, "_", command], capture_output=True, check=True)
    return split.stdout.decode().split("\0")[:-1]


def command_request(services: Services, command: str) -> tuple[FineTuneRequest, str | None]:
    words = shell_words(command)
    assert words[:2] == ["ftapp", "train"]
    args = build_parser().parse_args(words[1:])
    resolve_arguments(services, args)
    return request_from_args(services, args)


def form_request(services: Services, form: TrainForm) -> FineTuneRequest:
    return fine_tune_request(form, find_preset(services.configs.presets(), form.preset))


def _rewards() -> list[list]:
    table = train_method.reward_rows(True)
    table[1][0], table[1][2], table[1][3] = True, 2, "0.5"  # numeric_match, an int weight
    table[2][0], table[2][2], table[2][3] = True, 0.5, r"^(yes|no), 'really' \"so\"$"  # a comma and quotes
    table[4][0], table[4][2], table[4][3] = True, 0.1, "40"  # length_penalty
    return table


FORMS = {
    "the tab's defaults": {},
    "the seed preset, QLoRA and text that reads as JSON": {
        "preset": SEED_001,
        "training_mode": "qlora",
        "extra_arguments": '{"bf16": "true", "lr_scheduler_type": "constant", "seed": 7, "report_to": "none"}',
    },
    "a full fine-tune on two GPUs, every epoch": {
        "training_mode": "full",
        "devices": "0,1",
        "strategy": "fsdp2",
        "max_steps": -1,
        "num_epochs": 2.5,
    },
    "odd numbers": {"learning_rate": 3e-5, "lora_alpha": 16.5, "lora_r": 8, "dataset_fraction": 0.37, "train_split": 1.0},
    "GRPO with rewards": {"method": "grpo", "num_generations": 2.0, "temperature": 0.7, "rewards": _rewards()},
    "nothing chosen yet": {"model_id": "", "adapter_name": "", "prompt_id": None},
}


def test_the_command_builds_the_request_start_queues(services: Services, train_form) -> None:
    for case, changes in FORMS.items():  # one home for all: each form is only read
        form = train_form(**changes)

        request, config_preset = command_request(services, command_text(services, form))

        assert request == form_request(services, form), case
        assert config_preset == form.preset, case


def test_an_axolotl_command_names_its_framework_and_config(services: Services, train_form) -> None:
    template = services.configs.list("axolotl")[0]
    form = train_form(framework="axolotl", axolotl_config_id=template.id)

    command = command_text(services, form)

    assert "--framework axolotl" in command and f"--axolotl-config {template.id}" in command
    assert command_request(services, command)[0] == form_request(services, form)


def test_a_dpo_command_keeps_its_settings_and_starting_adapter(services: Services, registered, train_form, tmp_path: Path) -> None:
    folder = tmp_path / "sft"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    start = services.adapters.add(AddAdapterRequest(name="sft-start", model_id=registered.model_id, location=str(folder)))
    form = train_form(method="dpo", dpo_beta=0.3, dpo_loss_type="ipo", init_adapter_id=start.id, adapter_name="my-dpo")

    command = command_text(services, form)

    assert f"--init-adapter {start.id}" in command and "--method-set beta=0.3" in command and "--method-set loss_type=ipo" in command
    assert command_request(services, command)[0] == form_request(services, form)


def test_the_command_reads_one_option_a_line(services: Services, train_form) -> None:
    command = command_text(services, train_form())

    lines = command.splitlines()
    assert lines[0] == "ftapp train \\" and all(line.startswith("  --") for line in lines[1:])
    assert "  --name tiny-intents \\" in lines and "  --set max_steps=4 \\" in lines and "  --preset 'modern default' \\" in lines


def test_a_form_that_builds_no_request_shows_why_as_comments(services: Services, train_form) -> None:
    text = command_text(services, train_form(extra_arguments='{"max_steps": '))

    assert text.startswith("# CF-002: config is not valid JSON")
    assert shell_words(text) == []  # pasted, it runs nothing
