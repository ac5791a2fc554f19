"""A shared app reads only uploads (and folders the operator allowed), never any server path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.errors import ValidationError
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.services import open_services
from ftapp.settings import Settings


@pytest.fixture
def shared(tmp_path: Path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    services = open_services(Settings.from_env(tmp_path / "home", allowed_roots=(uploads,)))
    yield services, uploads
    services.close()


def test_server_paths_are_refused_and_uploads_accepted(shared, tmp_path: Path, demo_kit):
    services, uploads = shared
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("a,b\n1,2\n")
    with pytest.raises(ValidationError, match="DS-003: .*outside the folders this shared app may read"):
        services.datasets.add(AddDatasetRequest(location=str(outside)))
    with pytest.raises(ValidationError, match="MD-004: .*outside"):
        services.models.add(AddModelRequest(type="project", name="m", location=str(demo_kit.model_dir)))
    inside = uploads / "upload.csv"
    shutil.copy(outside, inside)
    assert services.datasets.add(AddDatasetRequest(location=str(inside))).num_rows == 1
    # A path that climbs out of the upload folder is outside too.
    with pytest.raises(ValidationError, match="DS-003"):
        services.datasets.add(AddDatasetRequest(name="sneaky", location=str(uploads / ".." / "elsewhere.csv")))
    model_copy = services.settings.models_dir / "copy"
    shutil.copytree(demo_kit.model_dir, model_copy)  # the app's own home always counts (the demo kit lives there)
    model = services.models.add(AddModelRequest(type="project", name="own", location=str(model_copy)))
    with pytest.raises(ValidationError, match="AD-003: .*outside"):
        services.adapters.add(AddAdapterRequest(name="a", model_id=model.id, location=str(tmp_path)))


def test_a_local_app_reads_any_path(services, tmp_path: Path):
    path = tmp_path / "anywhere.csv"
    path.write_text("a\n1\n")
    assert services.settings.allowed_roots is None
    assert services.datasets.add(AddDatasetRequest(location=str(path))).num_rows == 1
