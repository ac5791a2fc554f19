"""Minor items of issue 14, performed for real through the services and the CLI:
one adapter-name rule for ``adapters add`` and ``train`` (AD-001/FT-002), bounded names for the other
resources, no secret stored in clear in the database (CF-005, checked in the raw SQLite bytes), and
``datasets add --type evil`` refused with DS-001."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import gradio as gr
import pytest

from cli.main import main
from ftapp import rules
from ftapp.datasets.service import AddDatasetRequest
from ftapp.errors import ValidationError
from ftapp.ids import new_id
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.prompts.configs import AddConfigRequest
from ftapp.prompts.service import AddPromptRequest
from ftapp.resource_names import ADAPTER_NAME_MAX, ADAPTER_NAME_PATTERN, NAME_MAX, name_problem
from ftapp.runs.fine_tune_request import FineTuneRequest, validate_fine_tune
from ftapp.runs.machine import Machine
from ftapp.services import Services
from ui import configs as configs_tab

CPU = Machine(gpus=(), cpu_count=2, memory_available_mib=16_000)
TOKEN = "hf_" + "Zq7" * 12  # the shape of a Hugging Face access token


@pytest.fixture
def home(services: Services, tmp_path: Path):
    """A model, a dataset and a local adapter folder in a real home."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "hidden_size": 8}')
    model = services.models.add(AddModelRequest(type="project", name="tiny", location=str(model_dir)))
    csv = tmp_path / "qa.csv"
    csv.write_text("question,answer\nq,a\n", encoding="utf-8")
    dataset = services.datasets.add(AddDatasetRequest(name="qa", location=str(csv)))
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    (adapter_dir / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    return model.id, dataset.id, adapter_dir


def _count(services: Services, table: str) -> int:
    with sqlite3.connect(services.settings.home / "ftapp.db") as db:
        return db.execute(f"select count(*) from {table}").fetchone()[0]  # noqa: S608 - a fixed table name


def _cli(services: Services, capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--home", str(services.settings.home), *argv])
    return code, capsys.readouterr().err


BAD_ADAPTER_NAMES = {
    "parent path": "../x",
    "space": "my adapter",
    "5,000 characters": "a" * 5000,
    "one over the bound": "a" * (ADAPTER_NAME_MAX + 1),
    "trailing newline": "name\n",
    "underscore": "my_adapter",
    "slash": "a/b",
}


@pytest.mark.parametrize("case", sorted(BAD_ADAPTER_NAMES))
def test_adapters_add_and_train_refuse_the_same_names(case: str, services: Services, home, capsys) -> None:
    model_id, dataset_id, adapter_dir = home
    name = BAD_ADAPTER_NAMES[case]
    with pytest.raises(ValidationError) as caught:
        services.adapters.add(AddAdapterRequest(name=name, model_id=model_id, location=str(adapter_dir)))
    assert caught.value.rule_ids == ["AD-001"]
    assert f"must match {ADAPTER_NAME_PATTERN} and be 1-{ADAPTER_NAME_MAX} characters" in str(caught.value)
    assert len(str(caught.value)) < 300  # a 5,000-character name is not echoed back whole

    code, err = _cli(services, capsys, "adapters", "add", "--name", name, "--model", model_id, "--path", str(adapter_dir))
    assert code == 2 and "AD-001" in err, err

    with services.db.transaction() as tx:
        problems = validate_fine_tune(
            tx, FineTuneRequest(base_model_id=model_id, dataset_id=dataset_id, adapter_name=name, gpus="cpu"), CPU
        )
    train = [p for p in problems if p.rule_id == "FT-002"]
    assert train and train[0].message.replace("adapter_name", "name") == caught.value.problems[0].message
    assert _count(services, "adapters") == 0


def test_the_longest_allowed_adapter_name_is_accepted_by_both(services: Services, home) -> None:
    model_id, dataset_id, adapter_dir = home
    name = "a-" * (ADAPTER_NAME_MAX // 2)
    with services.db.transaction() as tx:
        problems = validate_fine_tune(
            tx, FineTuneRequest(base_model_id=model_id, dataset_id=dataset_id, adapter_name=name, gpus="cpu"), CPU
        )
    assert "FT-002" not in {p.rule_id for p in problems}
    assert services.adapters.add(AddAdapterRequest(name=name, model_id=model_id, location=str(adapter_dir))).name == name


def test_other_names_are_bounded_and_one_line(services: Services, home, tmp_path: Path, capsys) -> None:
    model_id, dataset_id, _adapter_dir = home
    for name in ("x" * (NAME_MAX + 1), "two\nlines"):
        with pytest.raises(ValidationError) as caught:
            services.prompts.add(
                AddPromptRequest(
                    name=name, dataset_id=dataset_id, prompt_template="{question}", input_template="{question}", completion_template=""
                )
            )
        assert caught.value.rule_ids == ["PR-001"]
        with pytest.raises(ValidationError) as caught:
            services.models.add(AddModelRequest(type="project", name=name, location=str(tmp_path / "model")))
        assert caught.value.rule_ids == ["MD-005"]
        with pytest.raises(ValidationError) as caught:
            services.datasets.add(AddDatasetRequest(name=name, location=str(tmp_path / "qa.csv")))
        assert caught.value.rule_ids == ["DS-004"]
        # One rule, one wording (the dataset's length check said "longer than 200 characters" in words of its own).
        assert caught.value.problems == [name_problem(rules.DATASET_NAME, name)]
    code, err = _cli(services, capsys, "prompts", "add", "--name", "p" * 5000, "--dataset", dataset_id, "--template", "{question}")
    assert code == 2 and f"PR-001: name is 5,000 characters long; at most {NAME_MAX}" in err
    assert _count(services, "prompts") == 0 and _count(services, "models") == 1


def _raw_database(services: Services) -> bytes:
    """Every byte SQLite keeps: the database file, its write-ahead log and shared memory."""
    return b"".join(path.read_bytes() for path in sorted(services.settings.home.glob("ftapp.db*")))


SECRET_CONFIGS = {
    "custom, hub_token": ("custom", json.dumps({"hub_token": TOKEN})),
    "custom, nested api_key": ("custom", json.dumps({"callbacks": [{"wandb": {"api_key": "abc123"}}]})),
    "custom, token under another key": ("custom", json.dumps({"notes": f"use {TOKEN} to push"})),
    "custom, token as a key": ("custom", json.dumps({TOKEN: 1})),
    "axolotl yaml, hf_token": ("axolotl", f"base_model: x\nhf_token: {TOKEN}\n"),
    "training_arguments, hub_token": ("training_arguments", json.dumps({"hub_token": TOKEN})),
    "training_arguments, password": ("training_arguments", json.dumps({"password": "hunter2"})),
    "lora_config, token in a list": ("lora_config", json.dumps({"target_modules": ["q_proj", TOKEN]})),
}


@pytest.mark.parametrize("case", sorted(SECRET_CONFIGS))
def test_a_secret_in_a_config_is_refused_and_never_reaches_the_database(case: str, services: Services, capsys) -> None:
    config_type, text = SECRET_CONFIGS[case]
    before = _count(services, "configs")
    with pytest.raises(ValidationError) as caught:
        services.configs.add(AddConfigRequest(type=config_type, config=text))
    assert set(caught.value.rule_ids) == {"CF-005"}
    assert "ftapp token set" in str(caught.value) and TOKEN not in str(caught.value)

    code, err = _cli(services, capsys, "configs", "add", "--type", config_type, "--config", text)
    assert code == 2 and "CF-005" in err and TOKEN not in err, err
    with pytest.raises(gr.Error, match="CF-005"):
        configs_tab.save_config(services, config_type, text, "", "", "")

    assert _count(services, "configs") == before
    raw = _raw_database(services)
    assert TOKEN.encode() not in raw and b"hunter2" not in raw and b"abc123" not in raw


def test_configs_that_only_name_special_tokens_or_flags_are_kept(services: Services) -> None:
    text = "special_tokens:\n  pad_token: <|pad|>\n  eos_token: </s>\nhf_use_auth_token: true\nhub_model_id: me/model\n"
    assert services.configs.add(AddConfigRequest(type="axolotl", config=text)).record.id
    assert services.configs.add(AddConfigRequest(type="custom", config='{"max_new_tokens": 64, "hub_token": null}')).record.id


def test_a_run_spec_never_holds_a_token(services: Services, home, capsys) -> None:
    model_id, dataset_id, _adapter_dir = home
    prompt = services.prompts.add(
        AddPromptRequest(
            name="qa",
            dataset_id=dataset_id,
            prompt_template="{question}{answer}",
            input_template="{question}",
            completion_template="{answer}",
        )
    )
    base = dict(base_model_id=model_id, dataset_id=dataset_id, prompt_id=prompt.id, adapter_name="ok", gpus="cpu")
    for changes in ({"overrides": {"hub_token": TOKEN}}, {"lora_overrides": {"target_modules": [TOKEN]}}):
        with pytest.raises(ValidationError) as caught:
            services.runs.submit(FineTuneRequest(**base, **changes), CPU)
        assert "CF-005" in caught.value.rule_ids, caught.value
    code, err = _cli(
        services,
        capsys,
        "train",
        "--model",
        model_id,
        "--dataset",
        dataset_id,
        "--prompt",
        prompt.id,
        "--name",
        "ok",
        "--gpus",
        "cpu",
        "--set",
        f"hub_token={TOKEN}",
    )
    assert code == 2 and "CF-005" in err and TOKEN not in err, err
    assert _count(services, "runs") == 0 and not any(services.settings.runs_dir.glob("*"))
    assert TOKEN.encode() not in _raw_database(services)

    # A config stored around the checks (an import, an older version) is refused when a run uses it.
    config_id = new_id()
    with services.db.transaction() as tx:
        tx.configs.add(
            id=config_id,
            type="training_arguments",
            name="imported",
            description="",
            model_family="",
            config=json.dumps({"hub_token": TOKEN}),
            content_hash=new_id(),
            is_default=False,
        )
    with pytest.raises(ValidationError) as caught:
        services.runs.submit(FineTuneRequest(**base, training_arguments_config_id=config_id), CPU)
    assert "CF-005" in caught.value.rule_ids
    assert _count(services, "runs") == 0


def test_an_unknown_dataset_type_is_ds_001(services: Services, tmp_path: Path, capsys) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("a\n1\n", encoding="utf-8")
    with pytest.raises(ValidationError) as caught:
        services.datasets.add(AddDatasetRequest(name="d", type="evil", location=str(csv)))
    assert caught.value.rule_ids == ["DS-001"]
    code, err = _cli(services, capsys, "datasets", "add", str(csv), "--type", "evil")
    assert code == 2 and "DS-001: type must be one of" in err and "(got 'evil')" in err, err
    assert _count(services, "datasets") == 0 and not any(services.settings.datasets_dir.glob("*"))
