"""The Datasets tab's handlers on real files and a real database."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

from ftapp.prompts.service import AddPromptRequest
from ftapp.services import Services
from ui import datasets


def shown(table: gr.Dataframe) -> pd.DataFrame:
    """What a preview table component puts on screen."""
    return pd.DataFrame(table.value["data"], columns=table.value["headers"])


def import_alpaca(services: Services, alpaca: Path) -> str:
    _status, dataset_id = datasets.import_upload(services, str(alpaca), "", "alpaca sample")
    return dataset_id


def test_upload_is_copied_into_the_home_and_listed(services: Services, alpaca: Path) -> None:
    status, dataset_id = datasets.import_upload(services, str(alpaca), "", "alpaca sample")

    assert "alpaca_en_demo" in status and "299" in status and "alpaca" in status
    record = services.datasets.get(dataset_id)
    assert Path(record.location).is_relative_to(services.settings.datasets_dir)
    assert Path(record.location).read_bytes() == alpaca.read_bytes()
    table, picker = datasets.list_datasets(services, dataset_id)
    assert table["name"].tolist() == ["alpaca_en_demo"]
    assert table["id"].tolist() == [dataset_id]
    assert picker.value == dataset_id


def test_an_upload_is_named_by_its_file_not_by_gradios_temp_copy(
    services: Services,
    alpaca: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    upload = tmp_path / "gradio" / "3f9a" / alpaca.name
    upload.parent.mkdir(parents=True)
    upload.write_bytes(alpaca.read_bytes())

    _, dataset_id = datasets.import_upload(services, str(upload), "", "")

    table, _ = datasets.list_datasets(services)
    assert table["source"].tolist() == ["upload: alpaca_en_demo.json"]
    assert "**Source:** `upload: alpaca_en_demo.json`" in datasets.describe_dataset(services, dataset_id)[0]


def test_details_show_format_and_features(services: Services, alpaca: Path) -> None:
    dataset_id = import_alpaca(services, alpaca)

    details, rows_view = datasets.describe_dataset(services, dataset_id)

    assert "**Format:** alpaca" in details
    for column in ("instruction", "input", "output"):
        assert f"| {column} | string |" in details
    assert rows_view.visible is True
    assert datasets.describe_dataset(services, None)[1].visible is False


def test_preview_pages_through_real_rows(services: Services, alpaca: Path) -> None:
    rows = json.loads(alpaca.read_text(encoding="utf-8"))
    dataset_id = import_alpaca(services, alpaca)

    first, label, offset, total = datasets.first_page(services, dataset_id)
    assert (label, offset, total) == ("Rows 1–10 of 299", 0, 299)
    assert shown(first).columns.tolist() == ["instruction", "input", "output"]
    assert shown(first)["instruction"].tolist() == [r["instruction"] for r in rows[:10]]

    second, label, offset, _ = datasets.next_page(services, dataset_id, offset, total)
    assert (label, offset) == ("Rows 11–20 of 299", 10)
    assert shown(second)["instruction"].tolist() == [r["instruction"] for r in rows[10:20]]

    back, label, offset, _ = datasets.previous_page(services, dataset_id, offset)
    assert offset == 0 and shown(back).equals(shown(first))
    _, _, offset, _ = datasets.previous_page(services, dataset_id, 0)
    assert offset == 0


def test_next_stops_on_the_last_page(services: Services, alpaca: Path) -> None:
    dataset_id = import_alpaca(services, alpaca)

    last, label, offset, _ = datasets.next_page(services, dataset_id, 290, 299)

    assert (label, offset, len(shown(last))) == ("Rows 291–299 of 299", 290, 9)


def test_a_missing_path_is_refused_with_its_rule_and_nothing_is_written(services: Services, tmp_path: Path) -> None:
    with pytest.raises(gr.Error) as caught:
        datasets.import_path(services, str(tmp_path / "nowhere.jsonl"), "", "")

    assert "DS-003" in caught.value.message and "nowhere.jsonl" in caught.value.message
    assert services.datasets.list() == []
    assert list(services.settings.datasets_dir.iterdir()) == []


def test_import_without_an_upload_asks_for_a_file_of_the_accepted_types(services: Services) -> None:
    """The picker refused a .txt (or nothing was chosen): the message is about the upload, not about paths or Hub ids."""
    with pytest.raises(gr.Error) as caught:
        datasets.import_upload(services, None, "", "")

    message = caught.value.message
    assert message.startswith("DS-003: no file was uploaded: upload a CSV, JSON, JSON lines or Parquet")
    assert ".jsonl" in message and "location" not in message and "Hugging Face" not in message
    assert "DS-004" not in message  # no "name is required": the name defaults to the file's, and there is no file yet
    assert services.datasets.list() == []


def test_the_table_names_types_in_a_users_words(services: Services, alpaca: Path, tmp_path: Path) -> None:
    import_alpaca(services, alpaca)
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"text": "一行 ✅"}\n', encoding="utf-8")
    datasets.import_path(services, str(lines), "", "")

    table, _ = datasets.list_datasets(services)
    assert sorted(table["type"]) == ["JSON", "JSON lines"]
    assert not any("project" in str(cell) for cell in table.to_numpy().ravel())


def test_every_problem_of_a_request_is_reported(services: Services, alpaca: Path, tmp_path: Path) -> None:
    import_alpaca(services, alpaca)
    bad = tmp_path / "notes.txt"
    bad.write_text("hello", encoding="utf-8")

    with pytest.raises(gr.Error) as caught:
        datasets.import_path(services, str(bad), "alpaca_en_demo", "")

    lines = caught.value.message.split("<br>")
    assert lines[0].startswith("DS-003: ") and ".txt" in lines[0]  # no dataset type has that extension
    assert lines[1] == "DS-004: a dataset named &#x27;alpaca_en_demo&#x27; already exists"
    assert len(services.datasets.list()) == 1


def test_remove_needs_confirmation_and_can_take_the_prompts(services: Services, alpaca: Path) -> None:
    dataset_id = import_alpaca(services, alpaca)
    generated = services.prompts.generate(dataset_id)

    services.prompts.add(
        AddPromptRequest(
            name="alpaca-prompt",
            dataset_id=dataset_id,
            prompt_template=generated.prompt_template,
            input_template=generated.input_template,
            completion_template=generated.completion_template,
        )
    )

    with pytest.raises(gr.Error, match="confirmation"):
        datasets.remove_dataset(services, dataset_id, False, True)
    with pytest.raises(gr.Error, match="alpaca-prompt"):  # ConflictError: the prompt would dangle
        datasets.remove_dataset(services, dataset_id, True, False)
    assert len(services.datasets.list()) == 1

    status, chosen, confirm = datasets.remove_dataset(services, dataset_id, True, True)

    assert "alpaca-prompt" in status and (chosen, confirm) == (None, False)
    assert services.datasets.list() == [] and services.prompts.list() == []
    assert not (services.settings.datasets_dir / dataset_id).exists()
