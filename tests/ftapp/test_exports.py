"""Export runs through the real services, supervisor and a `python -m trainer export` child on CPU."""

from __future__ import annotations

import base64
import json
import shutil
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli.main import main as cli_main
from ftapp.errors import ConflictError, ValidationError
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.shipping.export_request import ExportRequest
from trainer.export.verify import PROMPTS
from trainer.protocol import DataSource, ModelSource, TrainSpec

SECRET = "hf_" + "S3cr3tT0k3n" * 3  # looks like a real token, so redact() would catch it by shape too


@pytest.fixture
def adapter(services, registered, random_adapter):
    return services.adapters.add(AddAdapterRequest(name="rand", model_id=registered.model_id, location=str(random_adapter(7, 0.5))))


def trained_adapter(services, registered, random_adapter, status: str = "succeeded"):
    """An adapter with a training run of ``status`` behind it (a run row, not a real training: seconds saved)."""
    spec = TrainSpec(
        run_id=f"run-{status}",
        run_dir="",
        method="sft",
        training_mode="lora",
        model=ModelSource("tiny"),
        data=DataSource("project_jsonl", fraction=1.0, train_split=0.9),
        adapter_name=f"lora-{status}",
        training={"learning_rate": 0.002, "hub_token": SECRET},
        lora={"r": 4},
    )
    with services.db.transaction() as tx:
        run = tx.runs.add(
            id=f"run-{status}",
            kind="finetune",
            name="trained",
            status=status,
            spec=json.dumps(spec.to_dict()),
            base_model_id=registered.model_id,
            dataset_id=registered.dataset_id,
            prompt_id=registered.prompt_id,
        )
        tx.metric_points.add_many([{"run_id": run.id, "step": 10, "name": "eval_loss", "value": 0.25, "time": 0.0}])
    return services.adapters.add(
        AddAdapterRequest(name=f"lora-{status}", model_id=registered.model_id, location=str(random_adapter(11)), run_id=run.id)
    )


@pytest.mark.slow
def test_merge_reloads_with_identical_greedy_outputs_and_registers_in_mlflow(services, registered, adapter):
    run = services.exports.submit(ExportRequest(registered.model_id, adapter.id, "tiny-merged", action="merge", gpus="cpu"))
    final = services.runs.wait(run.id, timeout_s=300)
    assert final.status == "succeeded", final.error_text
    result = services.exports.result(run.id)
    assert result.verified is True and result.prompts_matched == result.prompts == len(PROMPTS)
    assert result.max_logit_diff < 1e-3 and result.dtype == "float32"
    merged = Path(result.merged_dir)
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {
        p.name for p in merged.iterdir()
    }
    card = (merged / "README.md").read_text()
    assert "rand merged into its base model tiny" in card and "**verified**" in card

    # Independently of the export's own check: the reloaded merge answers like base + adapter, which differs from base.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Where is my order?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    greedy = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    base = AutoModelForCausalLM.from_pretrained(registered.model.location)
    base_logits = base(ids).logits
    adapted = PeftModel.from_pretrained(base, adapter.location)
    reloaded = AutoModelForCausalLM.from_pretrained(merged)
    assert not torch.allclose(adapted(ids).logits, base_logits, atol=1e-3), "the adapter must change the model"
    assert torch.equal(adapted.generate(ids, **greedy), reloaded.generate(ids, **greedy))

    # The merged model is a model of the app now; registered in MLflow, it loads back through the app.
    merged_model = next(m for m in services.models.list() if m.name == "tiny-merged")
    assert Path(merged_model.location) == merged
    run = services.exports.submit(ExportRequest(merged_model.id, "", "tiny-merged-registry", action="register"))
    final = services.runs.wait(run.id, timeout_s=300)
    assert final.status == "succeeded", final.error_text
    Path(final.run_dir, "events.jsonl").unlink()  # the result comes from the run's row, not its events file
    registered_version = services.exports.result(run.id).registered
    assert registered_version.version == "1" and registered_version.kind == "model"
    assert registered_version.link.endswith("/#/models/tiny-merged-registry/versions/1")
    back = services.models.add(AddModelRequest(type="model_registry", name="from-registry", registry_name="tiny-merged-registry"))
    assert back.registry_version == "1" and (Path(back.location) / "README.md").read_text() == card
    again = AutoModelForCausalLM.from_pretrained(back.location)
    assert torch.equal(again.generate(ids, **greedy), reloaded.generate(ids, **greedy))


def test_archive_holds_the_files_and_the_card_never_a_secret(services, registered, random_adapter, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET)  # the supervisor hands it to every child
    lora = trained_adapter(services, registered, random_adapter)
    assert cli_main(["--home", str(services.settings.home), "export", "archive", "--adapter", lora.id, "--wait"]) == 0
    run = services.exports.list()[0]
    assert f"archive: {services.exports.archive_file(run.id)}" in capsys.readouterr().out
    with tarfile.open(services.exports.archive_file(run.id)) as archive:
        names = sorted(archive.getnames())
        contents = {name: archive.extractfile(name).read() for name in names}
    assert services.exports.archive_file(run.id).parent == services.settings.exports_dir / run.id
    assert names == ["lora-succeeded/README.md", "lora-succeeded/adapter_config.json", "lora-succeeded/adapter_model.safetensors"]
    card = contents["lora-succeeded/README.md"].decode()
    assert "library_name: peft" in card and "| learning_rate | 0.002 |" in card and "final eval_loss: 0.25" in card
    everything = (
        b"".join(contents.values()) + Path(run.run_dir, "trainer.log").read_bytes() + Path(run.run_dir, "events.jsonl").read_bytes()
    )
    assert SECRET.encode() not in everything and SECRET not in run.spec

    # A file with the token in it is refused, and the download fails closed.
    leaky = Path(lora.location).parent / "leaky"
    shutil.copytree(lora.location, leaky)
    (leaky / "notes.txt").write_text(f"push with {SECRET}")
    other = services.adapters.add(AddAdapterRequest(name="leaky", model_id=registered.model_id, location=str(leaky)))
    failed = services.runs.wait(services.exports.submit(ExportRequest(registered.model_id, other.id, "leaky", action="archive")).id)
    assert failed.status == "failed" and "token appears in notes.txt" in failed.error_text and SECRET not in failed.error_text
    assert not list(services.settings.exports_dir.rglob(f"{failed.id}/*"))
    with pytest.raises(ConflictError, match="no archive"):
        services.exports.archive_file(failed.id)
    services.exports.archive_file(run.id).unlink()
    with pytest.raises(ConflictError, match="missing"):
        services.exports.archive_file(run.id)


class FakeHub(BaseHTTPRequestHandler):
    """The Hub's HTTP API, as much of it as create_repo + create_commit use: the only thing mocked."""

    calls: list[tuple[str, str, str, bytes]] = []

    def _reply(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        FakeHub.calls.append(("POST", self.path, self.headers.get("Authorization", ""), body))
        base = f"http://127.0.0.1:{self.server.server_port}"
        if self.path == "/api/repos/create":
            request = json.loads(body)
            self._reply({"url": f"{base}/{request.get('organization')}/{request['name']}"})
        elif "/preupload/" in self.path:
            self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in json.loads(body)["files"]]})
        elif "/commit/" in self.path:
            self._reply({"commitUrl": f"{base}/me/tiny-lora/commit/1234", "commitOid": "1234" * 10})
        else:
            self._reply({})

    def do_GET(self) -> None:  # noqa: N802
        FakeHub.calls.append(("GET", self.path, self.headers.get("Authorization", ""), b""))
        self._reply({})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_hub(monkeypatch) -> Iterator[list]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeHub.calls = []
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")  # read by the child's huggingface_hub
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield FakeHub.calls
    server.shutdown()


def test_push_creates_a_private_repo_and_commits_files_with_the_card(services, registered, random_adapter, fake_hub, monkeypatch):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    lora = trained_adapter(services, registered, random_adapter)
    request = ExportRequest(registered.model_id, lora.id, "", action="push", repo_id="me/tiny-lora")
    with pytest.raises(ValidationError, match="EX-008: pushing needs a Hugging Face token"):
        services.exports.submit(request)
    services.hf_token.store(SECRET)
    final = services.runs.wait(services.exports.submit(request).id, timeout_s=120)
    assert final.status == "succeeded", final.error_text
    pushed = services.exports.result(final.id).pushed
    assert pushed.repo_id == "me/tiny-lora" and pushed.private and pushed.commit_url.endswith("/commit/1234")
    posts = {path: (auth, body) for method, path, auth, body in fake_hub if method == "POST"}
    created = json.loads(posts["/api/repos/create"][1])
    assert (created["organization"], created["name"], created["visibility"]) == ("me", "tiny-lora", "private")
    assert all(auth == f"Bearer {SECRET}" for auth, _ in posts.values())
    commit = [json.loads(line) for line in posts["/api/models/me/tiny-lora/commit/main"][1].splitlines()]
    files = {c["value"]["path"]: base64.b64decode(c["value"]["content"]) for c in commit if c["key"] == "file"}
    assert sorted(files) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert b"lora-succeeded" in files["README.md"] and SECRET.encode() not in files["README.md"]
    assert SECRET not in Path(final.log_path).read_text()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runs_before = len(services.runs.list())
    with pytest.raises(ValidationError, match=r"EX-008: the Hub cannot be reached"):
        services.exports.submit(request)
    assert len(services.runs.list()) == runs_before


def test_bad_exports_name_their_rule_and_write_nothing(services, registered, random_adapter, demo_kit, tmp_path):
    failed = trained_adapter(services, registered, random_adapter, status="failed")
    copy = tmp_path / "vanishing"
    shutil.copytree(demo_kit.model_dir, copy)
    vanishing = services.models.add(AddModelRequest(type="project", name="vanishing", location=str(copy)))
    orphan = services.adapters.add(AddAdapterRequest(name="orphan", model_id=vanishing.id, location=str(random_adapter(12))))
    shutil.rmtree(copy)
    dirs_before = set(services.settings.runs_dir.iterdir())
    runs_before = len(services.runs.list())
    cases = {
        "EX-005": ExportRequest("", orphan.id, "", action="merge", gpus="cpu"),  # its base model's files are gone
        "EX-006": ExportRequest("", failed.id, "", action="archive"),  # trained by a run that failed
        "EX-003": ExportRequest("", failed.id, "not a registry name!", action="register"),
    }
    for rule, request in cases.items():
        with pytest.raises(ValidationError) as caught:
            services.exports.submit(request)
        assert rule in caught.value.rule_ids, caught.value
    with pytest.raises(ValidationError, match=r"EX-006: run 'run-failed' is failed"):
        services.exports.submit(ExportRequest("", "", "", action="archive", run_id="run-failed"))
    assert set(services.settings.runs_dir.iterdir()) == dirs_before and len(services.runs.list()) == runs_before
    assert not services.settings.exports_dir.exists()
