"""Real services on a throw-away home: handlers are tested against SQLite and real files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ftapp.prompts.presets import MODERN
from tests.conftest import TEST_DATA
from ui.train_form import TrainForm

ALPACA = TEST_DATA / "alpaca_en_demo.json"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing here may reach the Hub; a Hub look-up must fail fast instead of retrying.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def alpaca() -> Path:
    return ALPACA


# Small enough for a few seconds per step on two CPU cores, with an eval and a checkpoint on the way.
FAST_EXTRA = '{"logging_steps": 1, "eval_steps": 2, "save_steps": 2}'


@pytest.fixture
def train_form(registered) -> Callable[..., TrainForm]:
    """The Train tab's form as the browser sends it, for the demo kit; keywords change fields."""

    def form(**changes: Any) -> TrainForm:
        return replace(
            TrainForm(
                model_id=registered.model_id,
                dataset_id=registered.dataset_id,
                prompt_id=registered.prompt_id,
                adapter_name="tiny-intents",
                method="sft",
                training_mode="lora",
                preset=MODERN,
                devices="cpu",
                num_epochs=1.0,
                max_steps=4,
                learning_rate=3e-3,
                batch_size=4,
                grad_accumulation=1,
                max_length=64,
                lora_r=16,
                lora_alpha=32,
                dataset_fraction=1.0,
                train_split=0.9,
                extra_arguments=FAST_EXTRA,
            ),
            **changes,
        )

    return form
