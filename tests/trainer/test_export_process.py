"""The export and serve verbs on their own: spec checks, shipped files, server command lines, verification."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from trainer.export import process as export
from trainer.export.files import refuse_secrets, shipped_files, write_archive
from trainer.inference import serve
from trainer.protocol import ExportSpec, ModelSource, ServeSpec, read_events, write_spec

TOKEN = "hf_" + "x" * 34
ROOT = Path(__file__).resolve().parents[2]


def adapter_dir(tmp_path: Path, rank: int = 12) -> Path:
    path = tmp_path / "adapter"
    (path / "checkpoint-5").mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank}))
    (path / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    (path / "training_args.bin").write_bytes(b"pickle")
    (path / "README.md").write_text("PEFT's template card naming /home/someone/base")
    (path / "checkpoint-5" / "optimizer.pt").write_bytes(b"state")
    return path


def test_only_the_adapter_itself_ships_with_the_card_in_place_of_its_readme(tmp_path, monkeypatch):
    source = adapter_dir(tmp_path)
    files = shipped_files(source)
    assert [f.as_posix() for f in files] == ["adapter_config.json", "adapter_model.safetensors"]
    target = write_archive(source, files, "# card", tmp_path / "lora.tar.gz", "lora")
    with tarfile.open(target) as archive:
        assert sorted(archive.getnames()) == ["lora/README.md", "lora/adapter_config.json", "lora/adapter_model.safetensors"]
        assert archive.extractfile("lora/README.md").read() == b"# card"
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    refuse_secrets(source, files, "# card")  # nothing to find: no error
    with pytest.raises(ValueError, match="token appears in model card"):
        refuse_secrets(source, files, f"token: {TOKEN}")


def test_export_specs_that_cannot_run_are_refused_before_any_import(tmp_path):
    source = adapter_dir(tmp_path)
    base = dict(run_id="r", run_dir=str(tmp_path), source=str(source), name="x")
    with pytest.raises(ValueError, match="spec.action must be one of"):
        export.check_spec(ExportSpec(action="publish", **base))
    with pytest.raises(ValueError, match="spec.base is required"):
        export.check_spec(ExportSpec(action="merge", **base))
    with pytest.raises(ValueError, match="repo_id is required"):
        export.check_spec(ExportSpec(action="push", **base))
    (source / "adapter_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="only a LoRA adapter can be merged"):
        export.check_spec(ExportSpec(action="merge", base=ModelSource("tiny"), **base))


def test_the_archive_verb_runs_as_a_process_on_the_standard_library_alone(tmp_path):
    spec = ExportSpec(
        run_id="r", run_dir=str(tmp_path / "run"), action="archive", source=str(adapter_dir(tmp_path)), name="lora", model_card="# lora\n"
    )
    Path(spec.run_dir).mkdir()
    blocked = tmp_path / "blocked"  # importing any of these fails the run: an archive needs none of them
    for name in ("torch", "transformers", "mlflow", "huggingface_hub"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('the archive imported {name}')")
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "export", str(write_spec(spec))],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(ROOT)])},
    )
    assert result.returncode == 0, result.stderr
    assert "JOB_DONE" in result.stdout
    events = read_events(spec.events_path).events
    assert [e.type for e in events] == ["started", "artifact", "done"] and events[1].data["kind"] == "archive"
    assert spec.archive_path.is_file() and events[-1].data["files"] == 3


def serve_spec(tmp_path: Path, **changes) -> ServeSpec:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    values = dict(run_id="s", run_dir=str(tmp_path), model=ModelSource(str(model)), served_name="tiny-lora")
    return ServeSpec(**{**values, **changes})


def test_vllm_serves_the_adapter_itself_and_gets_its_key_from_the_environment_only(tmp_path, monkeypatch):
    key = tmp_path / "api_key"
    key.write_text("s3cret-key")
    spec = serve_spec(tmp_path, engine="vllm", adapter_path=str(adapter_dir(tmp_path, rank=12)), api_key_file=str(key))
    command = serve.vllm_command(spec, 8123)
    assert command[1:5] == ["-m", "vllm.entrypoints.cli.main", "serve", spec.model.source]
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[command.index("--port") + 1] == "8123"
    assert command[command.index("--lora-modules") + 1] == f"tiny-lora={spec.adapter_path}"
    assert command[command.index("--max-lora-rank") + 1] == "16" and "--enable-lora" in command
    assert command[command.index("--served-model-name") + 1] == "tiny-lora-base"
    assert "s3cret-key" not in " ".join(command) and "--api-key" not in command
    assert serve.server_environment(spec)["VLLM_API_KEY"] == "s3cret-key"
    plain = serve.vllm_command(serve_spec(tmp_path, engine="vllm"), 8123)
    assert plain[-2:] == ["--served-model-name", "tiny-lora"] and "--enable-lora" not in plain
    monkeypatch.setattr(serve, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="vllm is not installed"):
        serve.check_spec(spec)


def test_transformers_serve_runs_on_loopback_under_the_served_name(tmp_path):
    spec = serve_spec(tmp_path)
    command = serve.transformers_command(spec, 8124)
    assert command[1:5] == ["-m", "transformers.cli.transformers", "serve", "tiny-lora"]
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[command.index("--device") + 1] == "cpu"
    assert "VLLM_API_KEY" not in serve.server_environment(spec)
    serve.check_spec(spec)
    with pytest.raises(ValueError, match="loopback"):
        serve.check_spec(serve_spec(tmp_path, host="0.0.0.0"))
    with pytest.raises(ValueError, match="served_name"):
        serve.check_spec(serve_spec(tmp_path, served_name="org/model@main"))


@pytest.fixture(scope="module")
def reference(demo_kit, tmp_path_factory):
    """Greedy traces of the demo model, standing in for base + adapter before a merge."""
    from transformers import AutoModelForCausalLM

    from trainer.export.verify import greedy_traces, save_traces
    from trainer.model_loading import load_tokenizer

    path = tmp_path_factory.mktemp("verify") / "reference.pt"
    model = AutoModelForCausalLM.from_pretrained(demo_kit.model_dir).eval()
    save_traces(greedy_traces(model, load_tokenizer(ModelSource(str(demo_kit.model_dir))), 16), path)
    return path


def exported_copy(demo_kit, tmp_path: Path) -> Path:
    target = tmp_path / "export"
    shutil.copytree(demo_kit.model_dir, target)
    return target


def test_a_faithful_export_verifies(demo_kit, reference, tmp_path):
    from trainer.export.verify import verify

    outcome = verify(exported_copy(demo_kit, tmp_path), reference, 16, "cpu")
    assert outcome["verified"] and outcome["max_logit_diff"] == 0.0
    assert all(row["prompt_ids_match"] and row["reference"] == row["exported"] and row["diagnosis"] is None for row in outcome["rows"])


def test_a_broken_chat_template_or_eos_fails_verification(demo_kit, reference, tmp_path):
    from trainer.export.verify import verify

    broken_template = exported_copy(demo_kit, tmp_path / "template")
    jinja = broken_template / "chat_template.jinja"
    jinja.write_text(jinja.read_text().replace("<|assistant|>", "<|bot|>"))
    outcome = verify(broken_template, reference, 16, "cpu")
    assert not outcome["verified"] and not any(row["prompt_ids_match"] for row in outcome["rows"])
    assert "chat template changed" in outcome["rows"][0]["diagnosis"]

    wrong_eos = exported_copy(demo_kit, tmp_path / "eos")
    config = json.loads((wrong_eos / "generation_config.json").read_text())
    (wrong_eos / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": 5}))
    outcome = verify(wrong_eos, reference, 16, "cpu")
    assert not outcome["verified"] and outcome["prompts_matched"] < outcome["prompts"]
    assert all(row["prompt_ids_match"] for row in outcome["rows"]) and outcome["max_logit_diff"] == 0.0
    assert any("eos_token_id" in (row["diagnosis"] or "") for row in outcome["rows"])
