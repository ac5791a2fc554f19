"""Dataset import through the service on the real sample files in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.errors import ConflictError
from ftapp.prompts.service import AddPromptRequest
from tests.conftest import TEST_DATA

EXPECTED = {
    "alpaca_en_demo.json": (299, "alpaca", ["instruction", "input", "output"]),
    "identity.json": (91, "alpaca", ["instruction", "input", "output"]),
    "dpo_en_demo.json": (69, "preference", ["conversations", "chosen", "rejected"]),
    "kto_en_demo.json": (50, "messages", ["messages", "label"]),
    "glaive_toolcall_en_demo.json": (50, "sharegpt", ["conversations", "tools"]),
    "clean_ticketing.csv": (3_088, "plain", ["instruction", "intent"]),
    "test_dataset_csv_healthy.csv": (2, "plain", ["input", "output", "score"]),
}


def sample(name: str) -> Path:
    return TEST_DATA / name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_import_real_sample_files(services, name):
    rows, fmt, columns = EXPECTED[name]
    record = services.datasets.add(AddDatasetRequest(location=str(sample(name))))
    assert (record.num_rows, record.format, record.columns) == (rows, fmt, columns)
    # The registry points at a copy inside the home, never at the caller's file.
    assert Path(record.location).is_relative_to(services.settings.datasets_dir)
    assert Path(record.location).read_bytes() == sample(name).read_bytes()
    page = services.datasets.preview(record.id, offset=1, limit=2)
    assert len(page.rows) == min(2, rows - 1) and page.total == rows and set(page.rows[0]) <= set(columns)


def test_preview_shows_the_real_rows(services):
    record = services.datasets.add(AddDatasetRequest(location=str(sample("clean_ticketing.csv"))))
    first = services.datasets.preview(record.id, 0, 2).rows
    assert first[0]["intent"] == "cancel_ticket" and first[0]["instruction"].startswith("，I would like to cancel")
    last = services.datasets.preview(record.id, 3_086, 5).rows
    assert len(last) == 2


def test_features_keep_json_types(services):
    record = services.datasets.add(AddDatasetRequest(location=str(sample("kto_en_demo.json"))))
    assert record.feature_types == {"messages": "list", "label": "bool"}


def test_project_defaults_is_not_a_dataset(services):
    from ftapp.errors import ValidationError

    with pytest.raises(ValidationError) as caught:
        services.datasets.add(AddDatasetRequest(location=str(sample("project_defaults.json"))))
    assert caught.value.rule_ids == ["DS-005"]
    assert services.datasets.list() == []


def test_remove_refuses_while_prompts_use_it_then_cascades_on_request(services):
    record = services.datasets.add(AddDatasetRequest(location=str(sample("test_dataset_csv_healthy.csv"))))
    services.prompts.add(
        AddPromptRequest(
            name="p", dataset_id=record.id, prompt_template="{input} {output}", input_template="{input} ", completion_template="{output}"
        )
    )
    with pytest.raises(ConflictError, match="used by prompts p"):
        services.datasets.remove(record.id)
    assert services.datasets.remove(record.id, remove_prompts=True) == ["p"]
    assert services.datasets.list() == [] and services.prompts.list() == []
    assert not (services.settings.datasets_dir / record.id).exists()


def test_column_statistics_count_empties_and_lengths(services):
    record = services.datasets.add(AddDatasetRequest(location=str(sample("alpaca_en_demo.json"))))
    stats = {s.column: s for s in services.datasets.column_stats(record.id)}
    assert stats["instruction"].rows == 299 and stats["instruction"].empty == 0
    # Most alpaca rows have no input: the statistics must show that before anyone trains on it.
    assert 0.5 < stats["input"].empty / 299 < 1
    assert stats["output"].max_chars >= stats["output"].mean_chars > 0
