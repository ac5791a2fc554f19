"""GGUF files as base models: what is refused before anything is converted (MD-004, MD-006), and a failed conversion.

The conversion of a real GGUF file is tested on SmolLM2 in test_real_model.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ftapp.errors import ValidationError
from ftapp.models.service import AddModelRequest
from ftapp.services import Services, open_services
from ftapp.settings import Settings


def refused(services: Services, location: Path) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        services.models.add(AddModelRequest(type="project", location=str(location)))
    return [str(problem) for problem in caught.value.problems]


def nothing_written(services: Services) -> bool:
    return services.models.list() == [] and list(services.settings.models_dir.iterdir()) == []


def test_a_file_that_is_not_gguf_is_refused_unread_by_any_trainer(services: Services, tmp_path: Path):
    weights = tmp_path / "pytorch_model.bin"
    weights.write_bytes(b"PK\x03\x04 a zip, not a GGUF file")
    (problem,) = refused(services, weights)
    assert problem.startswith(f"MD-006: {weights} is not a GGUF file (it does not start with the bytes 'GGUF')")
    assert nothing_written(services)


def test_a_gguf_path_that_cannot_be_read_is_refused(services: Services, tmp_path: Path):
    (problem,) = refused(services, tmp_path / "missing.gguf")
    assert problem.startswith(f"MD-006: {tmp_path / 'missing.gguf'} cannot be read as a GGUF file")
    (tmp_path / "folder.gguf").mkdir()
    (problem,) = refused(services, tmp_path / "folder.gguf")
    assert problem.startswith("MD-006:") and "cannot be read" in problem
    assert nothing_written(services)


def test_a_gguf_file_outside_the_allowed_roots_is_refused_before_it_is_opened(tmp_path: Path):
    outside = tmp_path / "elsewhere" / "model.gguf"
    outside.parent.mkdir()
    outside.write_bytes(b"GGUF")
    shared = open_services(Settings.from_env(tmp_path / "home", allowed_roots=(tmp_path / "uploads",)))
    try:
        (problem,) = refused(shared, outside)
        assert problem.startswith("MD-004:") and "outside the folders this shared app may read" in problem
        assert nothing_written(shared)
    finally:
        shared.close()


@pytest.mark.slow  # starts a trainer child
def test_a_gguf_file_that_cannot_be_converted_leaves_nothing_behind(services: Services, tmp_path: Path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\xff" * 64)  # the magic, then no valid header
    (problem,) = refused(services, broken)
    assert problem.startswith(f"MD-006: {broken} could not be converted: ")
    assert services.models.list() == []
    # The log stays for the curious; no model folder, staging folder or request file does.
    assert [p.name for p in services.settings.models_dir.iterdir() if not p.name.endswith(".import.log")] == []
