"""Every rule of the validation catalogue is triggered by a real request here.

``test_every_rule_has_a_trigger`` fails when a rule is added to ftapp.rules without a case
below; each case then proves its rule fires, with the rule ID leading the message.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ftapp.compare.request import CompareRequest, validate_compare, validate_vote
from ftapp.datasets.service import AddDatasetRequest
from ftapp.demo.policy import DemoCaps, owner_of
from ftapp.errors import NotFoundError, Problem, ValidationError
from ftapp.evaluation.judging import JudgeRequest
from ftapp.evaluation.request import Combination, EvaluationRequest, validate_evaluation
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.prompts.configs import AddConfigRequest
from ftapp.prompts.service import AddPromptRequest
from ftapp.references import resolve_reference
from ftapp.rules import RULES
from ftapp.runs.fine_tune_request import FineTuneRequest, validate_fine_tune
from ftapp.runs.machine import GpuInfo, Machine
from ftapp.shipping.bundles import BundleRequest, BundleService
from ftapp.shipping.export_request import ExportRequest, validate_export
from ftapp.shipping.gguf_request import GgufTools
from ftapp.shipping.serve_request import ServeRequest, validate_serve
from ftapp.visitors import demo_services, services_for_key

CPU = Machine(gpus=(), cpu_count=2, memory_available_mib=16_000)
ONE_GPU = Machine(gpus=(GpuInfo(0, "NVIDIA H200", 143_771, 1_000),), cpu_count=16, memory_available_mib=120_000)


def fine_tune(ctx, machine: Machine = CPU, **changes) -> list[Problem]:
    values = dict(
        base_model_id=ctx.reg.model.id, dataset_id=ctx.reg.dataset.id, prompt_id=ctx.reg.prompt.id, adapter_name="ok-adapter", gpus="cpu"
    )
    values.update(changes)
    with ctx.services.db.transaction() as tx:
        return validate_fine_tune(tx, FineTuneRequest(**values), machine)


def without_axolotl(ctx) -> list[Problem]:
    ctx.monkeypatch.delenv("FTAPP_AXOLOTL_PYTHON", raising=False)  # and ftapp's own Python has no axolotl
    template = ctx.services.configs.list("axolotl")[0]
    return fine_tune(ctx, framework="axolotl", axolotl_config_id=template.id)


def preflight_problems(ctx, machine: Machine) -> list[Problem]:
    request = FineTuneRequest(
        base_model_id=ctx.reg.model.id, dataset_id=ctx.reg.dataset.id, prompt_id=ctx.reg.prompt.id, adapter_name="ok-adapter", gpus="cpu"
    )
    problems, preflight = ctx.services.runs.check(request, machine)
    assert preflight is not None and not preflight.fits
    return problems


def evaluation(ctx, **changes) -> list[Problem]:
    values = dict(dataset_id=ctx.reg.dataset.id, prompt_id=ctx.reg.prompt.id, combinations=(Combination(ctx.reg.model.id),), gpus="cpu")
    values.update(changes)
    with ctx.services.db.transaction() as tx:
        return validate_evaluation(tx, EvaluationRequest(**values), CPU)


def export(ctx, **changes) -> list[Problem]:
    values = dict(base_model_id=ctx.reg.model.id, adapter_id=ctx.adapter().id, model_name="tiny-merged")
    values.update(changes)
    with ctx.services.db.transaction() as tx:
        return validate_export(tx, ExportRequest(**values), CPU)


def gguf_export(ctx, tools: GgufTools = GgufTools(converter=True, quantizer=None), **changes) -> list[Problem]:
    values = dict(base_model_id=ctx.reg.model.id, adapter_id=ctx.adapter().id, model_name="tiny-gguf", action="gguf")
    values.update(changes)
    with ctx.services.db.transaction() as tx:
        return validate_export(tx, ExportRequest(**values), CPU, gguf_tools=tools)


def serve(ctx, **changes) -> list[Problem]:
    values = dict(model_id=ctx.reg.model.id, adapter_id=ctx.adapter().id, gpus="cpu")
    values.update(changes)
    with ctx.services.db.transaction() as tx:
        return validate_serve(tx, ServeRequest(**values), CPU, has_vllm=False)


def failed_run(ctx) -> str:
    with ctx.services.db.transaction() as tx:
        return tx.runs.add(id="failed-run", kind="finetune", name="failed", status="failed", spec="{}").id


def twin_runs(ctx) -> list:
    """Two runs with one name: the name alone names neither."""
    with ctx.services.db.transaction() as tx:
        return [tx.runs.add(id=str(uuid.uuid4()), kind="finetune", name="twin", status="failed", spec="{}") for _ in range(2)]


def adapter_dir(tmp: Path, name: str = "adapter") -> Path:
    path = tmp / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "tiny"}))
    return path


class Ctx:
    def __init__(self, services, reg, tmp: Path, monkeypatch, demo_kit):
        self.services, self.reg, self.tmp, self.monkeypatch, self.kit = services, reg, tmp, monkeypatch, demo_kit
        self._adapter = None

    def adapter(self):
        if self._adapter is None:
            self._adapter = self.services.adapters.add(
                AddAdapterRequest(name="tiny-lora", model_id=self.reg.model.id, location=str(adapter_dir(self.tmp)))
            )
        return self._adapter

    def file(self, name: str, content: str | bytes) -> str:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return str(path)

    def offline(self) -> None:
        self.monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        # An empty cache, so a model cached on a developer's machine cannot satisfy the look-up.
        self.monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(self.tmp / "empty-hub-cache"))


def not_found(call: Callable[[], object]) -> list[Problem]:
    """A NotFoundError's rule as a problem (an id that names nothing is no request with fields to list)."""
    with pytest.raises(NotFoundError) as caught:
        call()
    return [Problem(caught.value.rule, str(caught.value).removeprefix(f"{caught.value.rule_id}: "))]


def raised(call: Callable[[], object]) -> list[Problem]:
    with pytest.raises(ValidationError) as caught:
        call()
    return caught.value.problems


def other_model_adapter(ctx) -> str:
    copy = ctx.tmp / "other-model"
    shutil.copytree(ctx.kit.model_dir, copy)
    other = ctx.services.models.add(AddModelRequest(type="project", name="other", location=str(copy)))
    return ctx.services.adapters.add(
        AddAdapterRequest(name="other-lora", model_id=other.id, location=str(adapter_dir(ctx.tmp, "other-adapter")))
    ).id


def vanished_model(ctx) -> str:
    copy = ctx.tmp / "vanishing-model"
    shutil.copytree(ctx.kit.model_dir, copy)
    model = ctx.services.models.add(AddModelRequest(type="project", name="vanishing", location=str(copy)))
    shutil.rmtree(copy)
    return model.id


def hub_adapter(ctx) -> str:
    with ctx.services.db.transaction() as tx:
        return tx.adapters.add(
            id="hub-adapter", name="hub-lora", type="huggingface", model_id=ctx.reg.model.id, huggingface_name="someone/lora"
        ).id


def text_only_prompt(ctx) -> str:
    """A language-modelling prompt: it trains, but leaves no reference answer to score against."""
    with ctx.services.db.transaction() as tx:
        return tx.prompts.add(
            id="text-only",
            name="text-only",
            dataset_id=ctx.reg.dataset.id,
            prompt_template=ctx.reg.prompt.prompt_template,
            input_template="",
            completion_template="",
        ).id


def uncounted_dataset_evaluation(ctx) -> list[Problem]:
    with ctx.services.db.transaction() as tx:
        tx.datasets.update(ctx.reg.dataset.id, num_rows=None)
    request = EvaluationRequest(
        dataset_id=ctx.reg.dataset.id, prompt_id=ctx.reg.prompt.id, combinations=(Combination(ctx.reg.model.id),), gpus="cpu"
    )
    return ctx.services.evaluations.check(request, CPU)[0]


def compare(ctx, **changes) -> list[Problem]:
    values = dict(model_id=ctx.reg.model.id, adapter_ids=(ctx.adapter().id,), include_base=True, prompt="Where is my order?")
    values.update(changes)
    with ctx.services.db.transaction() as tx:
        return validate_compare(tx, CompareRequest(**values))


def sample(ctx, **changes) -> list[Problem]:
    values = dict(dataset_id=ctx.reg.dataset.id, prompt_id=ctx.reg.prompt.id, row_index=0)
    values.update(changes)
    return raised(lambda: ctx.services.comparisons.sample_prompt(**values))


def deduplicated_config(ctx) -> list[Problem]:
    first = ctx.services.configs.add(AddConfigRequest(type="lora_config", config='{"r": 8, "lora_alpha": 16}'))
    again = ctx.services.configs.add(AddConfigRequest(type="lora_config", config='{"lora_alpha":16,"r":8}'))
    if first.deduplicated or not again.deduplicated or again.record.id != first.record.id:
        return []
    assert again.notice and again.notice.startswith("CF-004: ")
    return [Problem(RULES["CF-004"], again.notice.removeprefix("CF-004: "))]


def crafted_import(ctx, table: str, row: dict) -> list[Problem]:
    """This home's own export with one crafted row added, imported."""
    data = json.loads(ctx.services.database.export_json())
    data["tables"][table].append(row)
    return raised(lambda: ctx.services.database.import_from(Path(ctx.file("crafted.json", json.dumps(data)))))


def registry_missing(ctx):
    return ctx.services.models.add(AddModelRequest(type="model_registry", name="r", registry_name="no-such-model"))


def visitor(ctx, **caps):
    """The public demo's view of the services for one visitor (ftapp.visitors), with these caps."""
    return services_for_key(demo_services(ctx.services, DemoCaps(**caps)), "catalogue-visitor")


def demo_training(ctx, caps: dict | None = None, live_owner: str | None = None, **changes) -> list[Problem]:
    """A demo visitor's training check; ``live_owner`` first queues a run of that owner ("me": the visitor)."""
    if live_owner:
        owner = owner_of("catalogue-visitor") if live_owner == "me" else live_owner
        with ctx.services.db.for_owner(owner).transaction() as tx:
            tx.runs.add(id=f"live-{owner}", kind="finetune", name="live", status="queued", spec="{}")
    values = dict(
        base_model_id=ctx.reg.model.id, dataset_id=ctx.reg.dataset.id, prompt_id=ctx.reg.prompt.id, adapter_name="demo-adapter", gpus="cpu"
    )
    return visitor(ctx, **(caps or {})).runs.check(FineTuneRequest(**{**values, **changes}), CPU)[0]


def crowded_address(ctx) -> list[Problem]:
    """A fresh cookie from an address whose other cookie already runs a job: the cap holds per address."""
    page = demo_services(ctx.services, DemoCaps(max_runs_per_visitor=5, max_runs_per_address=1))
    services_for_key(page, "first-cookie", "203.0.113.7")
    with ctx.services.db.for_owner(owner_of("first-cookie")).transaction() as tx:
        tx.runs.add(id="live-first-cookie", kind="finetune", name="first", status="queued", spec="{}")
    request = FineTuneRequest(
        base_model_id=ctx.reg.model.id, dataset_id=ctx.reg.dataset.id, prompt_id=ctx.reg.prompt.id, adapter_name="second-cookie", gpus="cpu"
    )
    return services_for_key(page, "second-cookie", "203.0.113.7").runs.check(request, CPU)[0]


TRIGGERS: dict[str, Callable[[Ctx], list[Problem]]] = {
    "FT-001": lambda c: fine_tune(c, training_mode="lorax"),
    "FT-001a": lambda c: fine_tune(c, method="ppo"),
    "FT-001b": lambda c: fine_tune(c, framework="megatron"),
    "FT-001c": lambda c: without_axolotl(c),
    "FT-002": lambda c: fine_tune(c, adapter_name="my adapter"),
    "FT-003": lambda c: fine_tune(c, output_dir=str(c.tmp / "missing")),
    "FT-004": lambda c: fine_tune(c, cpu_threads=99),
    "FT-005": lambda c: fine_tune(c, gpus="3"),
    "FT-006": lambda c: preflight_problems(c, Machine((), 2, memory_available_mib=1)),
    "FT-007": lambda c: fine_tune(c, num_processes=2),
    "FT-008": lambda c: fine_tune(c, num_epochs=0),
    "FT-009": lambda c: fine_tune(c, learning_rate=-1e-4),
    "FT-010": lambda c: fine_tune(c, dataset_fraction=1.5),
    "FT-011": lambda c: fine_tune(c, train_test_split=0),
    "FT-012": lambda c: fine_tune(c, machine=ONE_GPU, gpus="0", training_mode="qlora"),
    "FT-012a": lambda c: fine_tune(c, framework="axolotl"),
    "FT-013": lambda c: fine_tune(c, base_model_id="no-such-model"),
    "FT-014": lambda c: fine_tune(c, dataset_id="no-such-dataset"),
    "FT-015": lambda c: fine_tune(c, prompt_id="no-such-prompt"),
    "FT-015a": lambda c: fine_tune(
        c, dataset_id=c.services.datasets.add(AddDatasetRequest(name="other-columns", location=c.file("other.csv", "a,b\n1,2\n"))).id
    ),
    "FT-015b": lambda c: fine_tune(c, prompt_id=None),  # the demo dataset has plain columns
    "FT-016": lambda c: fine_tune(c, lora_config_id=c.services.configs.presets()[0].configs["training_arguments"].id),
    "FT-017": lambda c: fine_tune(c, method="dpo"),  # the demo dataset has plain columns, not preference pairs
    "FT-018": lambda c: fine_tune(c, method="grpo", rewards=({"kind": "regex_match", "pattern": "(unclosed"},)),
    "FT-019": lambda c: fine_tune(c, method="grpo", rewards=({"kind": "exact_match"},), method_settings={"temperature": -1}),
    "FT-019a": lambda c: fine_tune(c, method="grpo", rewards=({"kind": "exact_match"},), method_settings={"num_generations": 3}),
    "FT-019b": lambda c: fine_tune(c, method="grpo", rewards=({"kind": "exact_match"},), init_adapter_id="no-such-adapter"),
    "FT-020": lambda c: fine_tune(c, strategy="fsdp2"),  # on the CPU: nothing to shard over
    "EV-001": lambda c: evaluation(c, combinations=()),
    "EV-002": lambda c: evaluation(c, dataset_id=""),
    "EV-003": lambda c: evaluation(c, prompt_id=""),
    "EV-004": lambda c: evaluation(c, gpus="7"),
    "EV-005": lambda c: evaluation(c, combinations=(Combination("no-such-model"),)),
    "EV-006": lambda c: evaluation(c, combinations=(Combination(c.reg.model.id, other_model_adapter(c)),)),
    "EV-007": lambda c: evaluation(c, dataset_id="no-such-dataset"),
    "EV-008": lambda c: evaluation(c, prompt_id="no-such-prompt"),
    "EV-009": lambda c: evaluation(c, prompt_id=text_only_prompt(c)),
    "EV-010": lambda c: evaluation(c, dataset_fraction=0, max_rows=0, batch_size=0),
    "EV-011": lambda c: uncounted_dataset_evaluation(c),
    "EV-012": lambda c: evaluation(c, generation_config_id=c.services.configs.list()[0].id),
    "EV-013": lambda c: evaluation(c, rewards=({"kind": "regex_match", "pattern": "(unclosed"},)),
    "EV-014": lambda c: evaluation(c, benchmarks=("mmlu; rm -rf /",), benchmark_dir=str(c.tmp / "no-such-folder")),
    "EV-015": lambda c: evaluation(c, judge=JudgeRequest(model_id=c.reg.model.id, rubric="Which is better? {answer_a}")),
    "DS-001": lambda c: raised(
        lambda: c.services.datasets.add(AddDatasetRequest(name="x", type="xml", location=c.file("a.csv", "a\n1\n")))
    ),
    "DS-002": lambda c: (c.offline(), raised(lambda: c.services.datasets.add(AddDatasetRequest(huggingface_name="tatsu-lab/alpaca"))))[1],
    "DS-003": lambda c: raised(lambda: c.services.datasets.add(AddDatasetRequest(location=str(c.tmp / "absent.csv")))),
    "DE-001": lambda c: raised(
        lambda: c.services.datasets.add(AddDatasetRequest(name="long", description="d" * 10_001, location=str(c.kit.dataset_path)))
    ),
    "DS-004": lambda c: raised(lambda: c.services.datasets.add(AddDatasetRequest(name="intents", location=str(c.kit.dataset_path)))),
    "DS-005": lambda c: raised(lambda: c.services.datasets.add(AddDatasetRequest(location=c.file("bad.jsonl", '{"a": 1}\n{"a": \n')))),
    "DS-006": lambda c: raised(
        lambda: c.services.datasets.add(AddDatasetRequest(location=c.file("huge.csv", "a,b\n1," + "x" * 1_000_001 + "\n")))
    ),
    "DS-007": lambda c: raised(
        lambda: c.services.datasets.add(
            AddDatasetRequest(location=c.file("pairs.jsonl", '{"prompt": "Hi", "chosen": "Hello!", "rejected": "Hello!"}\n'))
        )
    ),
    "MD-001": lambda c: raised(lambda: c.services.models.add(AddModelRequest(type="cml", name="m"))),
    "MD-002": lambda c: (c.offline(), raised(lambda: c.services.models.add(AddModelRequest(huggingface_name="meta-llama/Llama-3.2-1B"))))[
        1
    ],
    "MD-003": lambda c: raised(lambda: registry_missing(c)),
    "MD-004": lambda c: raised(lambda: c.services.models.add(AddModelRequest(type="project", name="m", location=str(adapter_dir(c.tmp))))),
    "MD-005": lambda c: raised(lambda: c.services.models.add(AddModelRequest(type="project", name="tiny", location=str(c.kit.model_dir)))),
    "MD-006": lambda c: raised(lambda: c.services.models.add(AddModelRequest(type="project", location=c.file("model.gguf", "not gguf")))),
    "AD-001": lambda c: raised(
        lambda: c.services.adapters.add(AddAdapterRequest(name=" ", model_id=c.reg.model.id, location=str(adapter_dir(c.tmp))))
    ),
    "AD-002": lambda c: raised(
        lambda: c.services.adapters.add(AddAdapterRequest(name="a", model_id="no-such-model", location=str(adapter_dir(c.tmp))))
    ),
    "AD-003": lambda c: raised(
        lambda: c.services.adapters.add(AddAdapterRequest(name="a", model_id=c.reg.model.id, location=str(c.kit.model_dir)))
    ),
    "AD-004": lambda c: raised(
        lambda: c.services.adapters.add(
            AddAdapterRequest(name="a", model_id=c.reg.model.id, location=str(adapter_dir(c.tmp)), run_id="no-such-run")
        )
    ),
    "AD-005": lambda c: raised(
        lambda: c.services.adapters.add(
            AddAdapterRequest(name="a", model_id=c.reg.model.id, location=str(adapter_dir(c.tmp)), prompt_id="no-such-prompt")
        )
    ),
    "AD-006": lambda c: (
        c.offline(),
        raised(
            lambda: c.services.adapters.add(
                AddAdapterRequest(name="a", model_id=c.reg.model.id, type="huggingface", huggingface_name="someone/lora")
            )
        ),
    )[1],
    "PR-001": lambda c: raised(
        lambda: c.services.prompts.add(
            AddPromptRequest(
                name="intent-prompt",
                dataset_id=c.reg.dataset.id,
                prompt_template="{request}",
                input_template="{request}",
                completion_template="",
            )
        )
    ),
    "PR-002": lambda c: raised(
        lambda: c.services.prompts.add(
            AddPromptRequest(name="p", dataset_id="", prompt_template="x", input_template="x", completion_template="")
        )
    ),
    "PR-003": lambda c: raised(
        lambda: c.services.prompts.add(
            AddPromptRequest(name="p", dataset_id=c.reg.dataset.id, prompt_template="  ", input_template="", completion_template="")
        )
    ),
    "PR-004": lambda c: raised(
        lambda: c.services.prompts.add(
            AddPromptRequest(
                name="p", dataset_id=c.reg.dataset.id, prompt_template="{request}", input_template=None, completion_template=""
            )
        )
    ),
    "PR-005": lambda c: raised(
        lambda: c.services.prompts.add(
            AddPromptRequest(
                name="p", dataset_id=c.reg.dataset.id, prompt_template="{request}", input_template="{request}", completion_template=None
            )
        )
    ),
    "PR-006": lambda c: raised(
        lambda: c.services.prompts.add(
            AddPromptRequest(
                name="p", dataset_id=c.reg.dataset.id, prompt_template="{question}", input_template="{question}", completion_template=""
            )
        )
    ),
    "PR-007": lambda c: raised(
        lambda: c.services.prompts.add(
            AddPromptRequest(
                name="p", dataset_id=c.reg.dataset.id, prompt_template="{request", input_template="{0}", completion_template=""
            )
        )
    ),
    "CF-001": lambda c: raised(lambda: c.services.configs.add(AddConfigRequest(type="yaml", config="{}"))),
    "CF-002": lambda c: raised(lambda: c.services.configs.add(AddConfigRequest(type="lora_config", config='{"r": 8,'))),
    "CF-003": lambda c: raised(lambda: c.services.configs.add(AddConfigRequest(type="axolotl", config="base_model: [unclosed"))),
    "CF-003a": lambda c: raised(
        lambda: c.services.configs.add(
            AddConfigRequest(type="axolotl", config="datasets: [{path: a, type: alpaca}]\ntrust_remote_code: true\n")
        )
    ),
    "CF-004": lambda c: deduplicated_config(c),
    "CF-005": lambda c: raised(lambda: c.services.configs.add(AddConfigRequest(type="training_arguments", config='{"learning_rat": 0.1}'))),
    "CF-006": lambda c: raised(lambda: c.services.configs.add(AddConfigRequest(type="lora_config", config='{"r": 8}', name="two\nlines"))),
    "EX-001": lambda c: export(c, base_model_id=""),
    "EX-002": lambda c: export(c, adapter_id="no-such-adapter"),
    "EX-003": lambda c: export(c, model_name="bad name!"),
    "EX-004": lambda c: export(c, adapter_id=hub_adapter(c)),
    "EX-005": lambda c: export(
        c,
        base_model_id=vanished_model(c),
        adapter_id=c.services.adapters.add(
            AddAdapterRequest(name="lost-base-lora", model_id=c.services.models.list()[-1].id, location=str(adapter_dir(c.tmp, "lost")))
        ).id,
    ),
    "EX-006": lambda c: export(c, run_id=failed_run(c)),
    "EX-007": lambda c: export(c, action="publish"),
    "EX-008": lambda c: export(c, action="push", repo_id="not a repo id!"),
    "EX-009": lambda c: export(c, gpus="7"),
    "EX-010": lambda c: serve(c, engine="vllm"),
    "EX-011": lambda c: serve(c, max_tokens=0, request_timeout_s=float("nan"), max_queue=10**9),
    "EX-012": lambda c: gguf_export(c, gguf_types=("q9_9", "f16", "f16")),
    "EX-013": lambda c: gguf_export(c, gguf_types=("q4_k_m",)),  # a k-quant where llama-quantize is not on PATH
    "CP-001": lambda c: compare(c, model_id="no-such-model"),
    "CP-002": lambda c: compare(c, adapter_ids=(other_model_adapter(c),)),
    "CP-003": lambda c: compare(c, adapter_ids=(), include_base=False),
    "CP-004": lambda c: compare(c, prompt="  \n"),
    "CP-005": lambda c: compare(c, generation={"temperature": 0, "num_beams": 4}),
    "CP-006": lambda c: compare(c, seed=-1),
    "CP-007": lambda c: sample(c, prompt_id="no-such-prompt"),
    "CP-008": lambda c: sample(c, row_index=10**6),
    "CP-009": lambda c: validate_vote(("A", "B"), "C", finished=True),
    "RN-001": lambda c: not_found(lambda: c.services.runs.cancel(str(uuid.uuid4()))),
    "RF-001": lambda c: raised(lambda: resolve_reference("run", "twin", twin_runs(c))),
    "DB-001": lambda c: raised(lambda: c.services.database.import_from(Path(c.file("export.json", "not json")))),
    "DB-002": lambda c: crafted_import(c, "datasets", {"id": "../../victim", "name": "evil", "type": "project_csv"}),
    "DB-003": lambda c: crafted_import(
        c, "datasets", {"id": str(uuid.uuid4()), "name": "passwd", "type": "project_csv", "location": "/etc/passwd"}
    ),
    "BU-001": lambda c: raised(
        lambda: BundleService(c.services.settings, c.services.db, c.services.adapters).export(
            BundleRequest(run_id=failed_run(c), out_dir=str(c.tmp / "bundle"), nodes=0)
        )
    ),
    "BU-002": lambda c: raised(lambda: BundleService(c.services.settings, c.services.db, c.services.adapters).import_run(c.tmp)),
    "DM-001": lambda c: demo_training(c, caps={"max_dataset_rows": 5}),
    "DM-002": lambda c: demo_training(c, overrides={"max_steps": 10**6}),
    "DM-003": lambda c: demo_training(c, live_owner="me"),
    "DM-004": lambda c: demo_training(c, caps={"max_runs_total": 1}, live_owner="someone-else"),
    "DM-005": lambda c: demo_training(c, training_mode="full"),
    "DM-006": lambda c: raised(lambda: visitor(c).datasets.add(AddDatasetRequest(huggingface_name="tatsu-lab/alpaca"))),
    "DM-007": lambda c: raised(lambda: visitor(c).hf_token.store("hf_" + "x" * 34)),
    "DM-008": lambda c: raised(lambda: visitor(c).datasets.remove(c.reg.dataset.id)),
    "DM-009": lambda c: crowded_address(c),
    "TP-001": lambda c: raised(
        lambda: c.services.training_presets.save(
            "modern default", FineTuneRequest(base_model_id="", dataset_id="", adapter_name=""), None, CPU
        )
    ),
    "TP-002": lambda c: raised(lambda: c.services.training_presets.start_from("no-such-preset")),
    "SK-001": lambda c: raised(lambda: c.services.api_keys.store("judge-key", "two words")),
}


def test_every_rule_has_a_trigger():
    assert sorted(set(RULES) - set(TRIGGERS)) == [], "rules without a test that triggers them"
    assert sorted(set(TRIGGERS) - set(RULES)) == [], "triggers for rules not in the catalogue"


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_fires(rule_id, services, registered, tmp_path, monkeypatch, demo_kit):
    problems = TRIGGERS[rule_id](Ctx(services, registered, tmp_path, monkeypatch, demo_kit))
    fired = [p for p in problems if p.rule_id == rule_id]
    assert fired, f"{rule_id} did not fire; got {[str(p) for p in problems]}"
    assert all(str(p).startswith(f"{rule_id}: ") for p in fired)


def test_valid_requests_have_no_problems(services, registered, tmp_path, monkeypatch, demo_kit):
    ctx = Ctx(services, registered, tmp_path, monkeypatch, demo_kit)
    assert fine_tune(ctx) == []
    assert fine_tune(ctx, machine=ONE_GPU, gpus="0") == []
    assert fine_tune(ctx, method="grpo", rewards=({"kind": "exact_match"},)) == []
    request = FineTuneRequest(
        base_model_id=registered.model.id,
        dataset_id=registered.dataset.id,
        prompt_id=registered.prompt.id,
        adapter_name="ok-adapter",
        gpus="cpu",
    )
    problems, preflight = services.runs.check(request, CPU)
    assert problems == [] and preflight.fits and preflight.train_tokens > 0 and preflight.seconds > 0
    assert evaluation(ctx, combinations=(Combination(registered.model.id), Combination(registered.model.id, ctx.adapter().id))) == []
    assert export(ctx) == [] and serve(ctx) == []
    assert compare(ctx) == [] and compare(ctx, blind=True, generation={"do_sample": True, "temperature": 0.7}) == []


def test_all_problems_of_one_request_come_together(services, registered, tmp_path, monkeypatch, demo_kit):
    ctx = Ctx(services, registered, tmp_path, monkeypatch, demo_kit)
    problems = fine_tune(ctx, adapter_name="bad name", num_epochs=0, learning_rate=0, gpus="5", dataset_id="x")
    assert {p.rule_id for p in problems} >= {"FT-002", "FT-008", "FT-009", "FT-005", "FT-014"}


def test_a_gated_model_needs_its_licence_accepted_before_training(services, registered, tmp_path, monkeypatch, demo_kit):
    ctx = Ctx(services, registered, tmp_path, monkeypatch, demo_kit)
    with services.db.transaction() as tx:
        tx.models.update(registered.model.id, gated=True, license="llama3.2")
    problems = fine_tune(ctx)
    assert [p.rule_id for p in problems] == ["FT-013"] and "accept its licence" in problems[0].message
    services.models.accept_license(registered.model.id)
    assert fine_tune(ctx) == []
