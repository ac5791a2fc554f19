"""A shared app's and the public demo's endpoints as a hostile user calls them, through the real services over a real
SQLite home: a judge URL aimed inside the host with the host's key, and free text as large as a request body can carry
(gradio puts no limit on one). Each is refused with its rule ID and writes nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ftapp.compare.request import CompareRequest
from ftapp.datasets import hub as hub_datasets
from ftapp.datasets.service import AddDatasetRequest
from ftapp.errors import ValidationError
from ftapp.evaluation.judging import JudgeRequest
from ftapp.evaluation.request import Combination, EvaluationRequest
from ftapp.evaluation.service import EvaluationService
from ftapp.models.service import AddModelRequest
from ftapp.prompts.service import AddPromptRequest
from ftapp.visitors import demo_services, services_for_key

HUGE = 2_000_000  # characters: far below what one HTTP request may carry


def test_a_shared_app_refuses_a_judge_url_that_would_carry_the_hosts_key_anywhere(services, registered, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-hosts-own")
    shared = EvaluationService(replace(services.settings, allowed_roots=(tmp_path,)), services.db, services.supervisor)
    request = EvaluationRequest(
        dataset_id=registered.dataset_id,
        prompt_id=registered.prompt_id,
        gpus="cpu",
        combinations=(Combination(registered.model_id), Combination(registered.model_id)),
        # the cloud metadata address, or the attacker's host: the trainer would send the rows and the key there
        judge=JudgeRequest(url="http://169.254.169.254/v1", api_model="any", api_key_name="OPENAI_API_KEY"),
    )
    before = services.runs.list()
    with pytest.raises(ValidationError) as caught:
        shared.submit(request)
    assert caught.value.rule_ids == ["EV-015"] and "refused in a shared app" in str(caught.value)
    assert services.runs.list() == before
    assert services.evaluations.check(request)[0] == [], "the local, unshared app still uses its own endpoint and key"


def test_a_huge_compare_prompt_is_refused_before_any_worker_starts(services, registered):
    with pytest.raises(ValidationError) as caught:
        services.comparisons.start(CompareRequest(model_id=registered.model_id, prompt="a" * HUGE))
    assert caught.value.rule_ids == ["CP-004"] and "at most 100,000" in str(caught.value)
    assert services.comparisons.workers() == [] and services.runs.list() == []


def test_a_demo_visitors_huge_description_or_template_is_refused_and_stores_nothing(services, registered):
    visitor = services_for_key(demo_services(services), "attacker-key")
    shared = registered.prompt  # the demo's prompt: templates that fit the demo's dataset
    good = dict(
        dataset_id=registered.dataset_id,
        prompt_template=shared.prompt_template,
        input_template=shared.input_template,
        completion_template=shared.completion_template,
    )
    with pytest.raises(ValidationError) as caught:
        visitor.prompts.add(AddPromptRequest(name="fat", description="d" * HUGE, **good))
    assert caught.value.rule_ids == ["DE-001"]
    huge_template = {**good, "prompt_template": "x" * HUGE + shared.prompt_template, "input_template": "x" * HUGE}
    with pytest.raises(ValidationError) as caught:
        visitor.prompts.add(AddPromptRequest(name="fat", **huge_template))
    assert caught.value.rule_ids == ["PR-007", "PR-007"] and "at most 20,000" in str(caught.value)
    assert [p.name for p in services.prompts.list()] == [registered.prompt.name]


def test_a_dataset_name_or_description_cannot_carry_markup_lines_or_fill_the_database(services, demo_kit):
    before = services.datasets.list()
    for request, rule in (
        (AddDatasetRequest(name="ok\n\n# Click [here](https://evil.example)", location=str(demo_kit.dataset_path)), "DS-004"),
        (AddDatasetRequest(name="ok", description="d" * HUGE, location=str(demo_kit.dataset_path)), "DE-001"),
    ):
        with pytest.raises(ValidationError) as caught:
            services.datasets.add(request)
        assert caught.value.rule_ids == [rule]
    assert services.datasets.list() == before


def test_a_config_name_or_description_cannot_carry_lines_or_fill_the_database(services):
    """Configs are refused to demo visitors, but a shared app's users save them: their names fill the Train tab's pickers."""
    from ftapp.prompts import AddConfigRequest

    before = services.configs.list()
    for request, rule in (
        (AddConfigRequest(type="lora_config", config='{"r": 8}', name="ok\n\n# Click [here](https://evil.example)"), "CF-006"),
        (AddConfigRequest(type="lora_config", config='{"r": 8}', name="x" * HUGE), "CF-006"),
        (AddConfigRequest(type="lora_config", config='{"r": 8}', description="d" * HUGE), "DE-001"),
    ):
        with pytest.raises(ValidationError) as caught:
            services.configs.add(request)
        assert caught.value.rule_ids == [rule]
    assert services.configs.list() == before


def test_a_hub_id_that_names_a_folder_on_the_server_is_refused_before_the_libraries_read_it(services, monkeypatch, tmp_path):
    # The app runs from a folder holding someone's files; an attacker owns a Hub repo of the same name (the probe
    # answers), so datasets.load_dataset would stream the local folder as that repo's rows.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "private").mkdir(parents=True)
    (tmp_path / "owner" / "private" / "rows.jsonl").write_text('{"text": "the host\'s secret"}\n')
    monkeypatch.setattr(hub_datasets, "_refuse_when_offline", lambda name: None)
    monkeypatch.setattr(hub_datasets, "_probe", lambda name, token: None)
    with pytest.raises(ValidationError) as caught:
        hub_datasets.read_hub_rows("owner/private", None, "train")
    assert caught.value.rule_ids == ["DS-002"] and "also a path on this server" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        services.datasets.add(AddDatasetRequest(type="huggingface", name="stolen", huggingface_name="owner/private"))
    assert caught.value.rule_ids == ["DS-002"] and services.datasets.list() == []
    with pytest.raises(ValidationError) as caught:
        services.models.add(AddModelRequest(type="huggingface", name="stolen", huggingface_name="owner/private"))
    assert caught.value.rule_ids == ["MD-002"] and "also a path on this server" in str(caught.value)
    assert services.models.list() == []
