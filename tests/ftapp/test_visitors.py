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
from ftapp.visitors import demo_services, services_for_key

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
    values = dict(
        base_model_id=services.models.list()[0].id,
        dataset_id=shared.id,
        prompt_id=prompt.id,
        adapter_name=name,
        gpus="cpu",
        cpu_threads=1,
        overrides=dict(FAST),
    )
    return FineTuneRequest(**{**values, **changes})


def test_two_visitors_see_the_shared_demo_and_only_their_own_uploads(demo):
    services, uploads = demo
    page = demo_services(services)
    alice, bob = services_for_key(page, "alice"), services_for_key(page, "bob")

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
    again = services_for_key(page, "alice")  # a reload (a new request with the same cookie) finds the same visitor
    assert {d.name for d in again.datasets.list()} == {"demo-support-intents", "alice-notes"}


def test_a_visitor_may_name_no_server_path_and_no_hub_id(demo):
    services, _uploads = demo
    alice = services_for_key(demo_services(services), "alice")
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
    alice = services_for_key(demo_services(services, DemoCaps(max_dataset_rows=10)), "alice")

    with pytest.raises(ValidationError) as too_big:
        alice.datasets.add(AddDatasetRequest(name="big", location=upload(uploads, "big.jsonl", 11)))

    assert rules(too_big) == ["DM-001"] and "at most 10 rows" in str(too_big.value)
    assert [d.name for d in alice.datasets.list()] == ["demo-support-intents"]
    assert not any(visitor_dir(services.settings, owner_of("alice")).rglob("*.jsonl"))


def test_training_caps_custom_code_and_concurrency(demo, tmp_path: Path):
    services, _uploads = demo
    page = demo_services(services, DemoCaps(max_train_steps=50, max_runs_per_visitor=1, max_runs_total=2))
    alice, bob, carol = (services_for_key(page, key) for key in ("alice", "bob", "carol"))
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
    page = demo_services(services, DemoCaps(max_runs_per_visitor=1, max_runs_total=4, max_runs_per_address=2))
    page.visitor.book.keep = 20  # a small book, to show that a flood of fresh cookies does not empty it
    one, two = (services_for_key(page, cookie, "203.0.113.7") for cookie in ("cookie-1", "cookie-2"))
    one.runs.submit(train(one, "one"), CPU)  # queued: no supervisor ticks in this test
    two.runs.submit(train(two, "two"), CPU)
    for i in range(100):  # cookies thrown away after one request each
        services_for_key(page, f"flood-{i}", "203.0.113.7")

    three = services_for_key(page, "cookie-3", "203.0.113.7")  # (each request of a visitor notes its address)
    with pytest.raises(ValidationError) as crowded:
        three.runs.submit(train(three, "three"), CPU)
    assert rules(crowded) == ["DM-009"] and "'one'" in str(crowded.value) and "'two'" in str(crowded.value)
    elsewhere = services_for_key(page, "cookie-4", "198.51.100.9")  # another client still finds a free slot
    assert elsewhere.runs.submit(train(elsewhere, "four"), CPU)[0].status == "queued"
    assert sorted(r.name for r in services.runs.list()) == ["four", "one", "two"]


@pytest.mark.slow
def test_a_visitors_run_trains_and_its_adapter_is_theirs_alone(demo):
    services, _uploads = demo
    page = demo_services(services)
    alice, bob = services_for_key(page, "alice"), services_for_key(page, "bob")
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
    alice = services_for_key(demo_services(services, DemoCaps(max_runs_total=1)), "alice")

    with pytest.raises(ValidationError) as busy:
        alice.comparisons.start(
            CompareRequest(model_id=services.models.list()[0].id, adapter_ids=(), include_base=True, prompt="Where is my order?")
        )
    assert rules(busy) == ["DM-004"] and [r.id for r in services.runs.list()] == ["bobs-worker"]


def test_what_only_the_host_may_do(demo):
    services, _uploads = demo
    alice = services_for_key(demo_services(services), "alice")
    shared_dataset = services.datasets.list()[0]
    model = services.models.list()[0]

    refused = {
        "push": lambda: alice.exports.submit(
            ExportRequest(base_model_id=model.id, adapter_id="", model_name="x", action="push", repo_id="me/x")
        ),
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


def snapshot(services: Services) -> tuple[str, set[Path]]:
    """Every row (the host's export of the whole database) and every file of the home."""
    home = services.settings.home
    return services.database.export_json(), {p.relative_to(home) for p in home.rglob("*") if "ftapp.db" not in p.name}


def test_each_service_given_a_visitor_refuses_with_the_dm_rule_and_writes_nothing(demo, tmp_path: Path):
    """The services themselves, built with a ``Visitor`` and nothing else (no composition, no subclass)."""
    from ftapp.compare.request import CompareRequest
    from ftapp.compare.service import ComparisonService
    from ftapp.datasets.service import DatasetService
    from ftapp.demo.visitor import Visitor
    from ftapp.evaluation.request import Combination, EvaluationRequest
    from ftapp.evaluation.service import EvaluationService
    from ftapp.models.adapters import AdapterService
    from ftapp.models.service import ModelService
    from ftapp.prompts.configs import AddConfigRequest, ConfigService
    from ftapp.prompts.service import PromptService
    from ftapp.runs.service import RunService
    from ftapp.secrets import HfToken
    from ftapp.shipping.exports import ExportService
    from ftapp.shipping.serving import ServeService
    from ftapp.transfer.service import DatabaseTransfer

    services, uploads = demo
    settings, db, supervisor = services.settings, services.db, services.supervisor
    alice = Visitor(owner_of("alice"), DemoCaps(max_dataset_rows=10, max_runs_total=1))
    with db.for_owner(owner_of("bob")).transaction() as tx:  # the demo's one slot for Compare workers is taken
        tx.runs.add(id="bobs-worker", kind="inference", name="compare", status="running", spec="{}")
    datasets = DatasetService(settings, db, alice)
    model = services.models.list()[0]
    shared = services.datasets.list()[0]
    prompt = services.prompts.list(shared.id)[0]
    services.database.export_to(export := tmp_path / "export.json")
    before = snapshot(services)

    refused = {
        "rows": ("DM-001", lambda: datasets.add(AddDatasetRequest(name="big", location=upload(uploads, "big.jsonl", 11)))),
        "hub dataset": ("DM-006", lambda: datasets.add(AddDatasetRequest(huggingface_name="tatsu-lab/alpaca"))),
        "model": ("DM-006", lambda: ModelService(settings, db, alice).add(AddModelRequest(huggingface_name="Qwen/Qwen2.5-0.5B"))),
        "licence": ("DM-008", lambda: ModelService(settings, db, alice).accept_license(model.id)),
        "adapter": (
            "DM-006",
            lambda: AdapterService(settings, db, alice).add(AddAdapterRequest(name="a", model_id=model.id, location=str(tmp_path))),
        ),
        "prompt": ("DM-008", lambda: PromptService(db, datasets, alice).remove(prompt.id)),
        "config": ("DM-007", lambda: ConfigService(db, alice).add(AddConfigRequest("training_arguments", {"max_steps": 5}))),
        "full fine-tune": (
            "DM-005",
            lambda: RunService(settings, db, datasets, supervisor, alice).submit(train(services, "full", training_mode="full"), CPU),
        ),
        "evaluation on a GPU": (
            "DM-005",
            lambda: EvaluationService(settings, db, supervisor, alice).submit(
                EvaluationRequest(shared.id, prompt.id, (Combination(model.id),), gpus="0"), CPU
            ),
        ),
        "Compare worker": (
            "DM-004",
            lambda: ComparisonService(settings, db, datasets, supervisor, visitor=alice).start(
                CompareRequest(model_id=model.id, prompt="Where is my order?")
            ),
        ),
        "merge": (
            "DM-007",
            lambda: ExportService(settings, db, supervisor, alice).submit(
                ExportRequest(base_model_id=model.id, adapter_id="", model_name="x", action="merge"), CPU
            ),
        ),
        "serve": ("DM-007", lambda: ServeService(settings, db, supervisor, alice).submit(ServeRequest(model_id=model.id), CPU)),
        "token": ("DM-007", lambda: HfToken(settings.secrets_dir, alice).store("hf_" + "x" * 30)),
        "import": ("DM-007", lambda: DatabaseTransfer(db, settings, alice).import_from(export)),
    }
    for action, (rule, call) in refused.items():
        with pytest.raises(ValidationError) as caught:
            call()
        assert rule in caught.value.rule_ids, (action, caught.value.rule_ids)
    assert snapshot(services) == before


def test_two_owners_see_none_of_each_others_rows(demo):
    """Each service filters by its visitor's owner and stamps it on what it writes; the host sees both."""
    from ftapp.demo.visitor import Visitor
    from ftapp.prompts.service import AddPromptRequest
    from ftapp.visitors import visitor_services

    services, uploads = demo
    alice = visitor_services(services, Visitor(owner_of("alice"), DemoCaps()))
    bob = visitor_services(services, Visitor(owner_of("bob"), DemoCaps()))
    made = {}
    for name, visitor in (("alice", alice), ("bob", bob)):
        dataset = visitor.datasets.add(AddDatasetRequest(name=f"{name}-notes", location=upload(uploads, f"{name}.jsonl", 5)))
        prompt = visitor.prompts.add(
            AddPromptRequest(
                name=f"{name}-prompt",
                dataset_id=dataset.id,
                prompt_template="{instruction}",
                input_template="{instruction}",
                completion_template="{output}",
            )
        )
        run, _ = visitor.runs.submit(train(visitor, f"{name}-lora", dataset_id=dataset.id, prompt_id=prompt.id), CPU)
        made[name] = (dataset, prompt, run)
        assert {dataset.owner, prompt.owner, run.owner} == {owner_of(name)}

    for me, other in (("alice", "bob"), ("bob", "alice")):
        mine = alice if me == "alice" else bob
        assert {d.name for d in mine.datasets.list()} == {"demo-support-intents", f"{me}-notes"}
        assert f"{other}-prompt" not in {p.name for p in mine.prompts.list()}
        assert [r.name for r in mine.runs.list()] == [f"{me}-lora"]
        theirs_dataset, theirs_prompt, theirs_run = made[other]
        for lookup, ident in (
            (mine.datasets.get, theirs_dataset.id),
            (mine.prompts.get, theirs_prompt.id),
            (mine.runs.get, theirs_run.id),
            (mine.runs.cancel, theirs_run.id),
        ):
            with pytest.raises(NotFoundError):
                lookup(ident)
    assert {r.name for r in services.runs.list()} == {"alice-lora", "bob-lora"}  # the host sees everyone's
