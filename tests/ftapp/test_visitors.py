"""The public demo's visitors, through the real services on a real home: isolation and the DM- caps.

The host registers the offline demo the way the app does (``DemoInstaller`` over a kit in the home);
visitors upload from the upload folder, as gradio's uploads arrive.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.demo.policy import DemoCaps, owner_of, visitor_dir
from ftapp.errors import NotFoundError, ValidationError
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.runs.fine_tune_request import FineTuneRequest
from ftapp.runs.machine import Machine
from ftapp.services import Services, open_services
from ftapp.settings import Settings
from ftapp.shipping.export_request import ExportRequest
from ftapp.shipping.serve_request import ServeRequest
from ftapp.visitors import Visitors

CPU = Machine(gpus=(), cpu_count=2, memory_available_mib=16_000)
FAST = {"max_steps": 4, "logging_steps": 1, "eval_steps": 2, "save_steps": 2, "per_device_train_batch_size": 4, "max_length": 64}


@pytest.fixture
def demo(tmp_path: Path, demo_kit) -> Iterator[tuple[Services, Path]]:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings = Settings(home=tmp_path / "home", demo=True, allowed_roots=(uploads,), mlflow_enabled=False)
    services = open_services(settings)
    shutil.copytree(Path(demo_kit.model_dir).parent, settings.models_dir / "demo-tiny-llama")  # built once per session
    services.demo.install()
    yield services, uploads
    services.close()


def upload(uploads: Path, name: str, rows: int) -> str:
    path = uploads / name
    path.write_text("".join(json.dumps({"instruction": f"question {i}", "output": f"answer {i}"}) + "\n" for i in range(rows)))
    return str(path)


def rules(error: pytest.ExceptionInfo) -> list[str]:
    return error.value.rule_ids


def train(services: Services, name: str, **changes) -> FineTuneRequest:
    shared = {d.name: d for d in services.datasets.list()}["demo-support-intents"]
    prompt = services.prompts.list(shared.id)[0]
    values = dict(base_model_id=services.models.list()[0].id, dataset_id=shared.id, prompt_id=prompt.id,
                  adapter_name=name, gpus="cpu", cpu_threads=1, overrides=dict(FAST))
    return FineTuneRequest(**{**values, **changes})


def test_two_visitors_see_the_shared_demo_and_only_their_own_uploads(demo):
    services, uploads = demo
    visitors = Visitors(services)
    alice, bob = visitors.for_key("alice"), visitors.for_key("bob")

    mine = alice.datasets.add(AddDatasetRequest(name="alice-notes", location=upload(uploads, "notes.jsonl", 5)))

    assert mine.owner == owner_of("alice")
    assert Path(mine.location).is_relative_to(visitor_dir(services.settings, owner_of("alice")))
    assert {d.name for d in alice.datasets.list()} == {"demo-support-intents", "alice-notes"}
    assert {d.name for d in bob.datasets.list()} == {"demo-support-intents"}
    assert {d.name for d in services.datasets.list()} == {"demo-support-intents", "alice-notes"}  # the host sees all
    with pytest.raises(NotFoundError):
        bob.datasets.preview(mine.id)
    with pytest.raises(NotFoundError):
        bob.datasets.remove(mine.id)
    assert visitors.for_key("alice") is alice  # a reload finds the same visitor


def test_a_visitor_may_name_no_server_path_and_no_hub_id(demo):
    services, _uploads = demo
    alice = Visitors(services).for_key("alice")
    kit_file = next(d for d in services.datasets.list()).location  # inside the home: another visitor's files live there too

    with pytest.raises(ValidationError) as in_home:
        alice.datasets.add(AddDatasetRequest(name="sneaky", location=kit_file))
    with pytest.raises(ValidationError) as elsewhere:
        alice.datasets.add(AddDatasetRequest(name="sneaky", location="/etc/hostname"))
    with pytest.raises(ValidationError) as hub:
        alice.datasets.add(AddDatasetRequest(huggingface_name="tatsu-lab/alpaca"))
    with pytest.raises(ValidationError) as model:
        alice.models.add(AddModelRequest(huggingface_name="Qwen/Qwen2.5-0.5B"))
    with pytest.raises(ValidationError) as adapter:
        alice.adapters.add(AddAdapterRequest(name="a", model_id="m", location="/tmp"))

    assert (rules(in_home), rules(elsewhere)) == (["DS-003"], ["DS-003"])
    assert rules(hub) == rules(model) == rules(adapter) == ["DM-006"]
    assert [d.name for d in alice.datasets.list()] == ["demo-support-intents"]


def test_an_upload_over_the_row_cap_leaves_nothing_behind(demo):
    services, uploads = demo
    alice = Visitors(services, DemoCaps(max_dataset_rows=10)).for_key("alice")

    with pytest.raises(ValidationError) as too_big:
        alice.datasets.add(AddDatasetRequest(name="big", location=upload(uploads, "big.jsonl", 11)))

    assert rules(too_big) == ["DM-001"] and "at most 10 rows" in str(too_big.value)
    assert [d.name for d in alice.datasets.list()] == ["demo-support-intents"]
    assert not any(visitor_dir(services.settings, owner_of("alice")).rglob("*.jsonl"))


def test_training_caps_custom_code_and_concurrency(demo, tmp_path: Path):
    services, _uploads = demo
    visitors = Visitors(services, DemoCaps(max_train_steps=50, max_runs_per_visitor=1, max_runs_total=2))
    alice, bob, carol = visitors.for_key("alice"), visitors.for_key("bob"), visitors.for_key("carol")
    reward = tmp_path / "reward.py"
    reward.write_text("def reward(completions, **kwargs):\n    return [1.0 for _ in completions]\n")

    cases = {
        "DM-002": train(alice, "long", overrides={**FAST, "max_steps": 5000}),
        "DM-005": train(alice, "big", gpus="0", training_mode="full"),
        "DM-006": train(alice, "out", output_dir=str(tmp_path)),
        "FT-018": train(alice, "coded", method="grpo", rewards=({"kind": "custom_python", "code_path": str(reward)},)),
    }
    for rule, request in cases.items():
        problems, _ = alice.runs.check(request, CPU)
        assert rule in [p.rule_id for p in problems], (rule, [str(p) for p in problems])

    run, _ = alice.runs.submit(train(alice, "first"), CPU)  # queued: no supervisor ticks in this test
    clash, _ = bob.runs.check(train(bob, "first"), CPU)  # adapter names are shared: said before training, not after
    assert [p.rule_id for p in clash] == ["FT-002"]
    with pytest.raises(ValidationError) as second:
        alice.runs.submit(train(alice, "second"), CPU)
    bob.runs.submit(train(bob, "bobs"), CPU)
    with pytest.raises(ValidationError) as busy:
        carol.runs.submit(train(carol, "carols"), CPU)

    assert run.owner == owner_of("alice")
    assert rules(second) == ["DM-003"] and rules(busy) == ["DM-004"]
    assert [r.name for r in bob.runs.list()] == ["bobs"] and len(services.runs.list()) == 2
    with pytest.raises(NotFoundError):
        bob.runs.cancel(run.id)
    assert alice.runs.cancel(run.id).status == "cancelled"


def test_the_caps_hold_per_address_however_many_cookies_ask(demo):
    services, _uploads = demo
    visitors = Visitors(services, DemoCaps(max_runs_per_visitor=1, max_runs_total=4, max_runs_per_address=2))
    visitors.addresses.keep = 20  # a small book, to show that a flood of fresh cookies does not empty it
    one, two = (visitors.for_key(cookie, "203.0.113.7") for cookie in ("cookie-1", "cookie-2"))
    one.runs.submit(train(one, "one"), CPU)  # queued: no supervisor ticks in this test
    two.runs.submit(train(two, "two"), CPU)
    for i in range(100):  # cookies thrown away after one request each
        visitors.for_key(f"flood-{i}", "203.0.113.7")

    three = visitors.for_key("cookie-3", "203.0.113.7")  # (each request of a visitor notes its address)
    with pytest.raises(ValidationError) as crowded:
        three.runs.submit(train(three, "three"), CPU)
    assert rules(crowded) == ["DM-009"] and "'one'" in str(crowded.value) and "'two'" in str(crowded.value)
    elsewhere = visitors.for_key("cookie-4", "198.51.100.9")  # another client still finds a free slot
    assert elsewhere.runs.submit(train(elsewhere, "four"), CPU)[0].status == "queued"
    assert sorted(r.name for r in services.runs.list()) == ["four", "one", "two"]


@pytest.mark.slow
def test_a_visitors_run_trains_and_its_adapter_is_theirs_alone(demo):
    services, _uploads = demo
    visitors = Visitors(services)
    alice, bob = visitors.for_key("alice"), visitors.for_key("bob")
    run, _ = alice.runs.submit(train(alice, "alice-lora"), CPU)

    final = alice.runs.wait(run.id, timeout_s=300)  # the shared supervisor starts and finishes it

    assert final.status == "succeeded", final.error_text
    assert [step for step, _ in alice.runs.metrics(run.id)["loss"]] == [1, 2, 3, 4]
    (adapter,) = alice.adapters.list()
    assert (adapter.name, adapter.run_id, adapter.owner) == ("alice-lora", run.id, owner_of("alice"))
    assert bob.adapters.list() == [] and bob.runs.list() == []
    with pytest.raises(NotFoundError):
        bob.runs.metrics(run.id)


def test_compare_workers_are_capped_over_all_visitors(demo):
    from ftapp.compare.request import CompareRequest

    services, _uploads = demo
    with services.db.for_owner(owner_of("bob")).transaction() as tx:
        tx.runs.add(id="bobs-worker", kind="inference", name="compare", status="running", spec="{}")
    alice = Visitors(services, DemoCaps(max_runs_total=1)).for_key("alice")

    with pytest.raises(ValidationError) as busy:
        alice.comparisons.start(CompareRequest(model_id=services.models.list()[0].id, adapter_ids=(), include_base=True,
                                               prompt="Where is my order?"))
    assert rules(busy) == ["DM-004"] and [r.id for r in services.runs.list()] == ["bobs-worker"]


def test_what_only_the_host_may_do(demo):
    services, _uploads = demo
    alice = Visitors(services).for_key("alice")
    shared_dataset = services.datasets.list()[0]
    model = services.models.list()[0]

    refused = {
        "push": lambda: alice.exports.submit(ExportRequest(base_model_id=model.id, adapter_id="", model_name="x",
                                                           action="push", repo_id="me/x")),
        "serve": lambda: alice.serving.submit(ServeRequest(model_id=model.id, gpus="cpu")),
        "token": lambda: alice.hf_token.store("hf_" + "x" * 30),
        "database": lambda: alice.database.export_json(),
        "remove shared dataset": lambda: alice.datasets.remove(shared_dataset.id),
        "remove shared model": lambda: alice.models.remove(model.id),
    }
    for action, call in refused.items():
        with pytest.raises(ValidationError) as caught:
            call()
        assert caught.value.rule_ids[-1] in ("DM-007", "DM-008"), action
    assert services.datasets.get(shared_dataset.id) and services.hf_token.status().source != "file"


def test_spaces_turn_the_demo_on_and_its_home_is_persistent_storage_when_there_is_some(tmp_path: Path):
    from ftapp.settings import demo_home, demo_requested

    assert demo_requested({"SYSTEM": "spaces", "SPACE_ID": "someone/ftapp"})
    assert demo_requested({"FTAPP_DEMO": "1"}) and not demo_requested({})
    assert not demo_requested({"SPACE_ID": "someone/ftapp", "FTAPP_DEMO": "0"})  # a private Space opts out
    data = tmp_path / "data"
    data.mkdir()
    assert demo_home(data) == data / "ftapp"
    fallback = demo_home(tmp_path / "no-persistent-storage")
    assert fallback.is_dir() and fallback.name.startswith("ftapp-demo-")
    fallback.rmdir()
