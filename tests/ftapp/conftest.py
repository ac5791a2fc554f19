from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ftapp.datasets import AddDatasetRequest
from ftapp.models import AddModelRequest
from ftapp.prompts import AddPromptRequest
from ftapp.services import Services, open_services
from ftapp.settings import Settings
from storage import DatasetRecord, ModelRecord, PromptRecord

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture
def services(tmp_path: Path):
    opened = open_services(Settings.from_env(tmp_path / "home"))
    yield opened
    opened.close()


@dataclass(frozen=True)
class Registered:
    model: ModelRecord
    dataset: DatasetRecord
    prompt: PromptRecord


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


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/data ships beside the repo)")
    return path
