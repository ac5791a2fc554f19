"""DB export -> import into an empty home -> export again: identical, and no secrets in it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ftapp.configs import AddConfigRequest
from ftapp.services import open_services
from ftapp.settings import Settings

TOKEN = "hf_" + "A1b2C3d4" * 5


def test_round_trip_is_identical_and_secret_free(services, registered, tmp_path: Path, monkeypatch):
    services.hf_token.store(TOKEN)
    services.configs.add(AddConfigRequest(type="lora_config", config='{"r": 4}'))
    first = services.database.export_to(tmp_path / "export.json").read_text()
    assert TOKEN not in first and "hf_token" not in first
    data = json.loads(first)
    assert {len(data["tables"][t]) for t in ("models", "datasets", "prompts")} == {1}

    other = open_services(Settings.from_env(tmp_path / "other-home"))
    try:
        report = other.database.import_from(tmp_path / "export.json")
        # Presets already exist in a fresh home, so those configs come back as counted duplicates.
        assert report.imported["models"] == 1 and report.imported["prompts"] == 1
        assert report.duplicates["configs"] == len(data["tables"]["configs"]) - 1
        assert other.database.export_json() == first
        again = other.database.import_from(tmp_path / "export.json")
        assert again.total_imported == 0 and again.duplicates["models"] == 1
    finally:
        other.close()


def test_token_file_is_private_and_never_in_the_database(services, tmp_path: Path):
    services.hf_token.store(TOKEN)
    mode = stat.S_IMODE(os.stat(services.hf_token.path).st_mode)
    assert mode == 0o600
    assert services.hf_token.status().source in ("file", "environment")
    assert TOKEN.encode() not in services.settings.db_path.read_bytes()
    services.hf_token.clear()
    assert services.hf_token.status().source in ("none", "environment")
