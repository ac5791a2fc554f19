"""DPO and GRPO requests: the data fits the method (FT-017), rewards (FT-018), settings and the starting adapter (FT-019)."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from importlib.util import find_spec
from pathlib import Path

import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.errors import Problem
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.prompts.config_schemas import DPO_LOSS_TYPES
from ftapp.prompts.service import AddPromptRequest
from ftapp.runs.fine_tune_request import FineTuneRequest, validate_fine_tune
from ftapp.runs.machine import Machine
from ftapp.services import open_services
from ftapp.settings import Settings

CPU = Machine(gpus=(), cpu_count=2, memory_available_mib=16_000)
REWARD_FILE = "def reward(completion, reference, row):\n    return float(completion.strip() == reference)\n"


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def pairs(services, tmp_path: Path) -> str:
    rows = [{"prompt": f"Say hi {i}", "chosen": f"Hi {i}!", "rejected": "No."} for i in range(12)]
    return services.datasets.add(AddDatasetRequest(name="pairs", location=write_jsonl(tmp_path / "pairs.jsonl", rows))).id


def adapter_dir(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    return str(path)


def check(services, registered, settings: Settings | None = None, **changes) -> list[Problem]:
    values = dict(
        base_model_id=registered.model_id,
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        adapter_name="method-adapter",
        gpus="cpu",
        method="grpo",
        rewards=({"kind": "exact_match"},),
    )
    values.update(changes)
    with services.db.transaction() as tx:
        return validate_fine_tune(tx, FineTuneRequest(**values), CPU, settings or services.settings)


def messages(problems: list[Problem], rule_id: str) -> list[str]:
    assert all(str(p).startswith(f"{p.rule_id}: ") for p in problems)
    return [p.message for p in problems if p.rule_id == rule_id]


# -- FT-017: the data fits the method ---------------------------------------------------------------


def test_dpo_trains_on_preference_pairs_and_sft_does_not(services, registered, tmp_path: Path) -> None:
    preference = pairs(services, tmp_path)

    [plain] = messages(check(services, registered, method="dpo", rewards=()), "FT-017")
    assert plain.startswith("DPO trains on preference pairs, and dataset 'intents' is plain data")
    assert check(services, registered, method="dpo", rewards=(), dataset_id=preference, prompt_id=None) == []
    [sft] = messages(check(services, registered, method="sft", rewards=(), dataset_id=preference, prompt_id=None), "FT-017")
    assert "holds preference pairs" in sft and "train it with DPO" in sft
    [grpo] = messages(check(services, registered, dataset_id=preference, prompt_id=None), "FT-017")
    assert grpo == (
        "dataset 'pairs' holds preference pairs (chosen/rejected); GRPO samples its own answers to prompts "
        "with a reference, so train preference pairs with DPO"
    )
    mapped = services.prompts.add(
        AddPromptRequest(
            name="mapped",
            dataset_id=preference,
            prompt_template="{prompt}{chosen}",
            input_template="{prompt}",
            completion_template="{chosen}",
        )
    )
    assert messages(check(services, registered, dataset_id=preference, prompt_id=mapped.id), "FT-017") == [grpo]


def test_grpo_needs_a_prompt_and_a_reference_from_templates_or_a_conversational_layout(services, registered, tmp_path) -> None:
    text_only = services.prompts.add(
        AddPromptRequest(
            name="lm", dataset_id=registered.dataset_id, prompt_template="{request} {intent}", input_template="", completion_template=""
        )
    )
    alpaca = services.datasets.add(
        AddDatasetRequest(
            name="alpaca", location=write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "2+2?", "input": "", "output": "4"}] * 4)
        )
    ).id

    assert check(services, registered) == []  # the demo prompt: input_template → prompt, completion_template → reference
    [lm] = messages(check(services, registered, prompt_id=text_only.id), "FT-017")
    assert lm.startswith("the exact_match reward compares with a reference answer, and prompt 'lm' lacks an input_template")
    # Format rewards need no reference: the whole rendered template is the prompt.
    assert check(services, registered, prompt_id=text_only.id, rewards=({"kind": "valid_json"},)) == []
    [plain] = messages(check(services, registered, prompt_id=None), "FT-017")
    assert "dataset 'intents' is plain data" in plain and "completion_template the reference column" in plain
    assert check(services, registered, dataset_id=alpaca, prompt_id=None) == []


# -- FT-018: rewards ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rewards, method, expected",
    [
        ((), "grpo", "GRPO needs at least one reward; choose from exact_match, numeric_match"),
        (({"kind": "bleu"},), "grpo", "reward 1: unknown kind 'bleu'"),
        (
            ({"kind": "exact_match", "weight": float("nan")},),
            "grpo",
            "reward 1 (exact_match): weight must be a number from -1,000 to 1,000 (got nan)",
        ),
        (({"kind": "exact_match", "weight": 0}, {"kind": "valid_json", "weight": 0.0}), "grpo", "every reward weight is 0"),
        (({"kind": "regex_match"},), "grpo", "reward 1 (regex_match): a pattern is required"),
        (
            (
                {"kind": "exact_match"},
                {"kind": "regex_match", "pattern": "[0-9"},
            ),
            "grpo",
            "reward 2 (regex_match): pattern '[0-9' does not compile",
        ),
        (({"kind": "length_penalty", "target_length": 0},), "grpo", "reward 1 (length_penalty): target_length must be a whole number"),
        (({"kind": "length_penalty"},), "grpo", "target_length must be a whole number from 1 to 1,000,000 characters (got None)"),
        (({"kind": "numeric_match", "tolerance": -1},), "grpo", "tolerance must be a number from 0 to 1,000,000,000,000"),
        (({"kind": "regex_match", "patern": "x"},), "grpo", "reward 1: unknown field(s) patern"),
        (({"kind": "exact_match"},), "sft", "rewards are for GRPO runs; a sft run takes none (got 1)"),
    ],
)
def test_bad_rewards_are_refused(services, registered, rewards, method: str, expected: str) -> None:
    found = messages(check(services, registered, method=method, rewards=rewards), "FT-018")

    assert any(message.startswith(expected) or expected in message for message in found), found


def test_rewards_combine_with_weights(services, registered) -> None:
    rewards = (
        {"kind": "exact_match", "weight": 1.0},
        {"kind": "regex_match", "weight": 0.5, "pattern": r"^\w+$"},
        {"kind": "numeric_match", "tolerance": 0.5},
        {"kind": "valid_json", "weight": -0.1},
        {"kind": "length_penalty", "weight": 0.2, "target_length": 40},
    )
    assert check(services, registered, rewards=rewards) == []


def test_custom_python_rewards_run_only_in_a_local_unshared_app(services, registered, tmp_path: Path) -> None:
    code = tmp_path / "my_reward.py"
    code.write_text(REWARD_FILE)
    custom = ({"kind": "custom_python", "code_path": str(code)},)
    shared = Settings(home=services.settings.home, allowed_roots=(tmp_path,))
    demo = Settings(home=services.settings.home, demo=True)

    assert check(services, registered, rewards=custom) == []  # the test services are local and unshared
    [refused] = messages(check(services, registered, settings=shared, rewards=custom), "FT-018")
    assert "would run on this host" in refused and "shared with other people" in refused
    [refused] = messages(check(services, registered, settings=demo, rewards=custom), "FT-018")
    assert "would run on this host" in refused and "demo mode" in refused
    [missing] = messages(check(services, registered, rewards=({"kind": "custom_python", "code_path": str(tmp_path / "no.py")},)), "FT-018")
    assert "code_path must be an existing .py file" in missing


def test_the_demo_app_refuses_custom_rewards_through_its_run_service(tmp_path: Path, demo_kit) -> None:
    services = open_services(Settings.from_env(tmp_path / "demo-home", demo=True))
    try:
        model = services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
        dataset = services.datasets.add(AddDatasetRequest(name="intents", location=str(demo_kit.dataset_path)))
        prompt = services.prompts.add(
            AddPromptRequest(
                name="p",
                dataset_id=dataset.id,
                **{k: demo_kit.prompt[k] for k in ("prompt_template", "input_template", "completion_template")},
            )
        )
        code = tmp_path / "reward.py"
        code.write_text(REWARD_FILE)
        request = FineTuneRequest(
            base_model_id=model.id,
            dataset_id=dataset.id,
            prompt_id=prompt.id,
            adapter_name="x",
            gpus="cpu",
            method="grpo",
            rewards=({"kind": "custom_python", "code_path": str(code)},),
        )
        problems, preflight = services.runs.check(request, CPU)
        assert preflight is None and [p.rule_id for p in problems] == ["FT-018"] and "demo mode" in problems[0].message
        assert services.runs.check(replace(request, rewards=({"kind": "exact_match"},)), CPU)[0] == []
    finally:
        services.close()


# -- FT-019: method settings and the starting adapter -------------------------------------------------


@pytest.mark.parametrize(
    "method, settings, overrides, expected",
    [
        ("dpo", {"beta": 0}, {}, "method_settings: beta must be a number > 0 and <= 100 (got 0)"),
        ("dpo", {"loss_type": "kto"}, {}, "method_settings: loss_type must be one of sigmoid, hinge, ipo"),
        ("dpo", {"betta": 0.2}, {}, "method_settings: unknown dpo_settings field 'betta' (did you mean 'beta'?)"),
        ("grpo", {"num_generations": 1}, {}, "method_settings: num_generations must be a whole number from 2 to 1,024 (got 1)"),
        ("grpo", {"max_completion_length": 0}, {}, "method_settings: max_completion_length must be a whole number from 1 to 1,048,576"),
        ("grpo", {"temperature": 0}, {}, "method_settings: temperature must be a number > 0 and <= 100"),
        ("grpo", {"beta": -0.1}, {}, "method_settings: beta must be a number from 0 to 100"),
        (
            "grpo",
            {"num_generations": 3},
            {},
            "num_generations 3 must divide the effective batch (per_device_train_batch_size 8 × "
            "1 process(es) × gradient_accumulation_steps 1 = 8)",
        ),
        (
            "grpo",
            {"num_generations": 4},
            {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 3},
            "num_generations 4 must divide the effective batch",
        ),
        ("sft", {"beta": 0.1}, {}, "method_settings are for DPO and GRPO; a sft run takes its settings from the training arguments"),
    ],
)
def test_bad_method_settings_are_refused(services, registered, tmp_path, method, settings, overrides, expected) -> None:
    dataset = {"dataset_id": pairs(services, tmp_path), "prompt_id": None} if method == "dpo" else {}
    rewards = ({"kind": "exact_match"},) if method == "grpo" else ()

    problems = check(services, registered, method=method, method_settings=settings, overrides=overrides, rewards=rewards, **dataset)
    found = messages(problems, "FT-019") + messages(problems, "FT-019a")  # FT-019a: the GRPO group and batch rule

    assert any(message.startswith(expected) for message in found), found


def test_only_the_training_batch_must_hold_whole_groups(services, registered) -> None:
    # The eval batch too, for TRL; the trainer rounds that one up to a multiple itself.
    assert check(services, registered, method_settings={"num_generations": 4}, overrides={"per_device_eval_batch_size": 6}) == []
    assert (
        check(
            services,
            registered,
            method_settings={"num_generations": 2},
            overrides={"per_device_train_batch_size": 3, "gradient_accumulation_steps": 2},
        )
        == []
    )


@pytest.mark.parametrize("batch, accumulation, generations", [(8, 1, 4), (8, 1, 3), (6, 2, 4), (3, 1, 2), (2, 3, 6)])
def test_the_grpo_batch_rule_is_trls(services, registered, batch: int, accumulation: int, generations: int) -> None:
    from trl import GRPOConfig  # costly (~10 s the first time): only this test needs TRL itself

    try:
        GRPOConfig(
            output_dir="unused",
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            num_generations=generations,
            use_cpu=True,
            report_to="none",
            eval_strategy="no",
        )
        trl_accepts = True
    except ValueError:
        trl_accepts = False
    found = check(
        services,
        registered,
        method_settings={"num_generations": generations},
        overrides={"per_device_train_batch_size": batch, "gradient_accumulation_steps": accumulation},
    )
    assert (found == []) == trl_accepts, found


def test_the_dpo_loss_types_are_trls() -> None:
    source = Path(find_spec("trl.trainer.dpo_config").origin).read_text(encoding="utf-8")
    documented = re.search(r"loss_type \(`list\[str\]`.*?Possible values are: (.*?)\. If multiple", source, re.S).group(1)
    assert tuple(re.findall(r"`'(\w+)'`", documented)) == DPO_LOSS_TYPES


def test_a_starting_adapter_exists_has_files_and_shares_the_base_model(services, registered, tmp_path: Path, demo_kit) -> None:
    start = services.adapters.add(
        AddAdapterRequest(name="sft-start", model_id=registered.model_id, location=adapter_dir(tmp_path / "sft-start"))
    )
    other_model = services.models.add(
        AddModelRequest(type="project", name="other", location=str(shutil.copytree(demo_kit.model_dir, tmp_path / "other-model")))
    )
    elsewhere = services.adapters.add(
        AddAdapterRequest(name="elsewhere", model_id=other_model.id, location=adapter_dir(tmp_path / "elsewhere"))
    )
    gone = services.adapters.add(AddAdapterRequest(name="gone", model_id=registered.model_id, location=adapter_dir(tmp_path / "gone")))
    shutil.rmtree(tmp_path / "gone")
    with services.db.transaction() as tx:
        hub = tx.adapters.add(id="hub", name="hub-lora", type="huggingface", model_id=registered.model_id, huggingface_name="someone/lora")

    assert check(services, registered, init_adapter_id=start.id) == []
    cases = {
        "no-such-adapter": "starting adapter 'no-such-adapter' not found",
        elsewhere.id: "starting adapter 'elsewhere' was trained on model 'other', not on 'tiny'",
        gone.id: f"starting adapter 'gone': {tmp_path / 'gone'} is gone or has no adapter_config.json",
        hub.id: "starting adapter 'hub-lora' has no local files (huggingface)",
    }
    for adapter_id, expected in cases.items():
        assert [m[: len(expected)] for m in messages(check(services, registered, init_adapter_id=adapter_id), "FT-019b")] == [expected]
    [sft] = messages(check(services, registered, method="sft", rewards=(), init_adapter_id=start.id), "FT-019b")
    assert sft.startswith("a starting adapter (init_adapter_id) is for DPO and GRPO runs")
    [full] = messages(check(services, registered, training_mode="full", init_adapter_id=start.id), "FT-019b")
    assert full.startswith("a full fine-tune cannot start from an adapter")
