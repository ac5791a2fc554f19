"""Dataset sources beyond single files: local Hugging Face dataset directories (type project) and
the real sample files in tests/data."""

from __future__ import annotations

import csv
import json

import pytest

from ftapp.datasets.files import dataset_type_for, inspect_directory, inspect_file, read_directory_rows, read_rows
from ftapp.errors import ValidationError
from tests.conftest import TEST_DATA

# --- directories (type project) -----------------------------------------------------------------


def test_save_to_disk_dataset_dict_uses_train(tmp_path):
    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {
            "test": datasets.Dataset.from_dict({"a": [9]}),
            "train": datasets.Dataset.from_dict({"a": [1, 2, 3], "b": ["x", "y", None]}),
        }
    ).save_to_disk(str(saved))
    table = inspect_directory(saved)
    assert (table.columns, table.num_rows) == (["a", "b"], 3)
    assert table.features == {"a": "int", "b": "string"}
    assert read_directory_rows(saved, offset=1, limit=5) == [{"a": 2, "b": "y"}, {"a": 3, "b": None}]
    assert inspect_file(saved, "project") == table


def test_save_to_disk_without_train_uses_the_first_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {"validation": datasets.Dataset.from_dict({"v": ["a", "b"]}), "test": datasets.Dataset.from_dict({"t": [1]})}
    ).save_to_disk(str(saved))
    assert inspect_directory(saved).columns == ["v"]


def test_save_to_disk_single_dataset_keeps_no_torch_format(tmp_path):
    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "saved"
    dataset = datasets.Dataset.from_dict({"n": list(range(5))}).with_format("numpy")
    dataset.save_to_disk(str(saved))
    rows = read_directory_rows(saved, offset=3, limit=10)
    assert rows == [{"n": 3}, {"n": 4}] and type(rows[0]["n"]) is int


def test_folder_of_jsonl_files(tmp_path):
    pytest.importorskip("datasets")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps({"i": i, "t": f"r{i}"}) for i in range(30)))
    (folder / "test.jsonl").write_text(json.dumps({"i": -1, "t": "test"}))
    table = inspect_directory(folder)
    assert (table.columns, table.num_rows) == (["i", "t"], 30)
    assert read_directory_rows(folder, offset=25, limit=2) == [{"i": 25, "t": "r25"}, {"i": 26, "t": "r26"}]


def test_directory_without_data_is_ds005(tmp_path):
    pytest.importorskip("datasets")
    (tmp_path / "notes.md").write_text("no data here")
    with pytest.raises(ValidationError) as caught:
        inspect_directory(tmp_path)
    assert caught.value.rule_ids == ["DS-005"]
    assert "cannot be loaded with datasets.load_dataset" in str(caught.value)


# --- the real sample files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "num_rows", "columns"),
    [
        ("alpaca_en_demo.json", 299, ["instruction", "input", "output"]),
        ("identity.json", 91, ["instruction", "input", "output"]),
        ("dpo_en_demo.json", 69, ["conversations", "chosen", "rejected"]),
        ("kto_en_demo.json", 50, ["messages", "label"]),
        ("glaive_toolcall_en_demo.json", 50, ["conversations", "tools"]),
        ("clean_ticketing.csv", 3_088, ["instruction", "intent"]),
        ("test_dataset_csv_healthy.csv", 2, ["input", "output", "score"]),
    ],
)
def test_real_sample_files(name, num_rows, columns):
    path = TEST_DATA / name
    table = inspect_file(path, dataset_type_for(path))
    assert (table.num_rows, table.columns) == (num_rows, columns)
    assert len(table.sample_rows) == min(num_rows, 20)


def test_real_json_features():
    dpo = inspect_file(TEST_DATA / "dpo_en_demo.json", "project_json")
    kto = inspect_file(TEST_DATA / "kto_en_demo.json", "project_json")
    assert dpo.features == {"conversations": "list", "chosen": "object", "rejected": "object"}
    assert kto.features == {"messages": "list", "label": "bool"}


def test_clean_ticketing_keeps_non_ascii_text_and_pages_match_an_independent_reader():
    path = TEST_DATA / "clean_ticketing.csv"
    table = inspect_file(path, "project_csv")
    assert table.sample_rows[0]["instruction"].startswith("\uff0c")  # a full-width comma
    with path.open(encoding="utf-8", newline="") as handle:
        expected = list(csv.DictReader(handle))
    assert read_rows(path, "project_csv", offset=1_234, limit=7) == expected[1_234:1_241]
    assert read_rows(path, "project_csv", offset=3_086, limit=20) == expected[3_086:]


def test_healthy_csv_values():
    rows = read_rows(TEST_DATA / "test_dataset_csv_healthy.csv", "project_csv")
    assert rows[1] == {
        "input": "What is the best way to fine tune a PEFT adapter on a 7b model?",
        "output": "Fine Tuning Studio, of course!",
        "score": "25.0",
    }


def test_project_defaults_is_not_a_dataset():
    with pytest.raises(ValidationError) as caught:
        inspect_file(TEST_DATA / "project_defaults.json", "project_json")
    assert caught.value.rule_ids == ["DS-005"]
    assert "holds a JSON object" in str(caught.value)
