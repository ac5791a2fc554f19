from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ftapp.datasets import AddDatasetRequest
from ftapp.models import AddModelRequest
from ftapp.prompts import AddPromptRequest
from ftapp.services import Services, open_services
from ftapp.settings import Settings
from storage import DatasetRecord, ModelRecord, PromptRecord


@pytest.fixture(scope="session")
def demo_kit(tmp_path_factory):
    """The offline demo model, dataset and prompt, built once per test session."""
    # Imported here: torch is costly and most tests never need the kit.
    from trainer.demo_model import build_demo_kit

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
    prompt = services.prompts.add(AddPromptRequest(
        name="intent-prompt", dataset_id=dataset.id, prompt_template=demo_kit.prompt["prompt_template"],
        input_template=demo_kit.prompt["input_template"], completion_template=demo_kit.prompt["completion_template"],
    ))
    return Registered(model, dataset, prompt)
