"""The Settings tab: the token is stored but never shown; the database exports and imports."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.services import Services, open_services
from ftapp.settings import Settings
from ui import settings

TOKEN = "hf_" + "a1B2c3D4e5" * 3


def test_the_token_is_stored_and_never_echoed(services: Services) -> None:
    assert "none" in settings.token_status(services)

    status, box = settings.save_token(services, TOKEN)

    assert box == ""
    assert "stored in the home" in status
    assert services.hf_token.value() == TOKEN
    shown = [status, *settings.show_settings(services)]
    assert not any(TOKEN in text or TOKEN[3:12] in text for text in shown)
    assert "none" in settings.clear_token(services)


def test_a_token_from_the_environment_names_the_variable(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    status = settings.token_status(services)

    assert "`HF_TOKEN`" in status and TOKEN not in status


def test_an_empty_token_is_refused(services: Services) -> None:
    with pytest.raises(gr.Error):
        settings.save_token(services, "   ")
    assert services.hf_token.value() is None


def test_export_then_import_into_another_home_reports_per_table(services: Services, alpaca: Path, tmp_path: Path) -> None:
    services.datasets.add(AddDatasetRequest(location=str(alpaca)))
    download = settings.export_database(services)
    assert download.visible is True
    exported = Path(download.value["path"])
    assert json.loads(exported.read_text(encoding="utf-8"))["tables"]["datasets"][0]["name"] == "alpaca_en_demo"

    other = open_services(Settings.from_env(tmp_path / "other"))
    try:
        summary, report = settings.import_database(other, str(exported))
        assert report.visible is True
        rows = pd.DataFrame(**{"data": report.value["data"], "columns": report.value["headers"]}).set_index("table")
        assert rows.loc["datasets", "imported"] == 1
        # Both homes ship the same presets: those are duplicates, left as they were.
        assert rows.loc["configs", "imported"] == 0 and rows.loc["configs", "duplicates"] > 0
        assert "Imported 1 rows" in summary
        assert [d.name for d in other.datasets.list()] == ["alpaca_en_demo"]
    finally:
        other.close()


def test_a_file_that_is_not_an_export_is_refused_with_its_rule(services: Services, alpaca: Path) -> None:
    with pytest.raises(gr.Error) as caught:
        settings.import_database(services, str(alpaca))

    assert "DB-001" in caught.value.message
    assert services.datasets.list() == []
