"""``ftapp train`` for DPO and GRPO: --method, --method-set, --reward and --init-adapter reach the request,
and bad ones are refused with their rule before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main
from cli.parser import build_parser
from cli.runs import parse_reward, request_from_args
from ftapp.models.adapters import AddAdapterRequest
from ftapp.runs.machine import Machine

CPU = Machine(gpus=(), cpu_count=2, memory_available_mib=16_000)


def train_args(registered, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        registered.model_id,
        "--dataset",
        registered.dataset_id,
        "--prompt",
        registered.prompt_id,
        "--name",
        "cli-grpo",
        "--gpus",
        "cpu",
        *extra,
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("exact_match", {"kind": "exact_match"}),
        ("regex_match:0.5,pattern=^\\d+$", {"kind": "regex_match", "weight": 0.5, "pattern": "^\\d+$"}),
        ("regex_match,pattern=\\d{1,3}", {"kind": "regex_match", "pattern": "\\d{1,3}"}),  # the comma stays in the pattern
        ("regex_match,pattern=123", {"kind": "regex_match", "pattern": "123"}),  # a pattern stays text
        ("length_penalty:-1,target_length=200", {"kind": "length_penalty", "weight": -1.0, "target_length": 200}),
        ("numeric_match:x,tolerance=0.01", {"kind": "numeric_match", "weight": "x", "tolerance": 0.01}),  # FT-018 names "x"
        ("custom_python,code_path=rewards/mine.py", {"kind": "custom_python", "code_path": "rewards/mine.py"}),
    ],
)
def test_a_reward_is_kind_weight_and_params(text: str, expected: dict) -> None:
    assert parse_reward(text) == expected


def test_the_method_flags_reach_the_request(services, registered, tmp_path: Path) -> None:
    folder = tmp_path / "start"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    start = services.adapters.add(AddAdapterRequest(name="start", model_id=registered.model_id, location=str(folder)))
    args = build_parser().parse_args(
        train_args(
            registered,
            "--method",
            "grpo",
            "--method-set",
            "num_generations=2",
            "--method-set",
            "temperature=0.7",
            "--reward",
            "exact_match:2",
            "--reward",
            "regex_match:0.5,pattern=^\\w+$",
            "--init-adapter",
            start.id,
        )
    )

    request, _ = request_from_args(services, args)

    assert (request.method, request.init_adapter_id) == ("grpo", start.id)
    assert request.method_settings == {"num_generations": 2, "temperature": 0.7}
    assert request.rewards == ({"kind": "exact_match", "weight": 2.0}, {"kind": "regex_match", "weight": 0.5, "pattern": "^\\w+$"})
    problems, preflight = services.runs.check(request, CPU)
    assert problems == [] and preflight is not None


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--method", "grpo", "--reward", "regex_match,pattern=(oops"], "FT-018: reward 1 (regex_match): pattern '(oops' does not compile"),
        (["--method", "grpo"], "FT-018: GRPO needs at least one reward"),
        (["--method", "grpo", "--reward", "exact_match", "--method-set", "num_generations=3"], "FT-019a: num_generations 3 must divide"),
        (["--method", "dpo"], "FT-017: DPO trains on preference pairs"),
        (["--method", "dpo", "--method-set", "beta"], "--method-set takes key=value (got 'beta')"),
        (
            ["--method", "grpo", "--reward", "exact_match", "--init-adapter", "no-such-adapter"],
            "FT-019b: starting adapter 'no-such-adapter' not found",
        ),
    ],
)
def test_bad_method_flags_are_refused_and_nothing_is_queued(services, registered, capsys, extra, expected) -> None:
    capsys.readouterr()

    code = main(["--home", str(services.settings.home), *train_args(registered, *extra)])

    assert code == 2 and expected in capsys.readouterr().err
    assert services.runs.list() == []
