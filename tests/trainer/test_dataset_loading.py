"""Reading a run's dataset as ftapp registered it, and the deterministic train/validation split."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainer.data.loading import load_rows, split_rows, write_split
from trainer.protocol import DataSource

ROWS = [{"id": "007", "text": "first", "tags": ["a"]}, {"id": "008", "text": "second"}]


def test_the_split_is_a_pure_function_of_rows_fraction_split_and_seed() -> None:
    first = split_rows(320, fraction=1.0, train_split=0.9, seed=0)
    assert first == split_rows(320, fraction=1.0, train_split=0.9, seed=0)
    assert first.validation_indices != split_rows(320, fraction=1.0, train_split=0.9, seed=1).validation_indices
    assert (len(first.train_indices), len(first.validation_indices)) == (288, 32)
    assert not set(first.train_indices) & set(first.validation_indices)
    assert sorted(first.train_indices + first.validation_indices) == list(range(320))
    assert first.validation_indices == sorted(first.validation_indices)

    half = split_rows(320, fraction=0.5, train_split=0.9, seed=0)
    assert (len(half.train_indices), len(half.validation_indices)) == (144, 16)
    # float products like 0.29 * 100 = 28.999... must not lose a row
    assert len(split_rows(100, fraction=1.0, train_split=0.29, seed=0).train_indices) == 29
    assert split_rows(1, fraction=0.1, train_split=0.5, seed=0).train_indices == [0]
    assert split_rows(50, fraction=1.0, train_split=1.0, seed=0).validation_indices == []


def test_write_split_records_the_held_out_rows(tmp_path: Path) -> None:
    data = DataSource(kind="project_csv", path="/data/x.csv", fraction=0.5, train_split=0.8, seed=3)
    split = split_rows(40, fraction=0.5, train_split=0.8, seed=3)
    write_split(split, data, tmp_path / "split.json")
    written = json.loads((tmp_path / "split.json").read_text())
    assert written["validation_indices"] == split.validation_indices and len(split.validation_indices) == 4
    assert (written["num_rows"], written["num_sampled"], written["num_train"], written["num_validation"]) == (40, 20, 16, 4)
    assert (written["seed"], written["source"]["path"]) == (3, "/data/x.csv")
    assert not list(tmp_path.glob("*.partial"))


def test_csv_cells_stay_strings_like_ftapp_read_them(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('\ufeffid,text\n007,"a, quoted"\n\n008,\n', encoding="utf-8")
    rows = load_rows(DataSource(kind="project_csv", path=str(path)))
    assert rows.to_list() == [{"id": "007", "text": "a, quoted"}, {"id": "008", "text": ""}]


def test_json_rows_may_lack_keys_other_rows_have(tmp_path: Path) -> None:
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n\n" for row in ROWS))
    expected = [ROWS[0], {**ROWS[1], "tags": None}]
    assert load_rows(DataSource(kind="project_json", path=str(tmp_path / "rows.json"))).to_list() == expected
    assert load_rows(DataSource(kind="project_jsonl", path=str(tmp_path / "rows.jsonl"))).to_list() == expected


def test_parquet_and_saved_dataset_directories_load(tmp_path: Path) -> None:
    table = pa.table({"id": ["007", "008"], "text": ["first", "second"]})
    pq.write_table(table, tmp_path / "rows.parquet")
    assert load_rows(DataSource(kind="project_parquet", path=str(tmp_path / "rows.parquet"))).to_list() == table.to_pylist()
    splits = datasets.DatasetDict({"test": datasets.Dataset.from_list([{"x": 1}]), "train": datasets.Dataset.from_list([{"x": 2}])})
    splits.save_to_disk(str(tmp_path / "saved"))
    # The train split, as ftapp previewed it.
    assert load_rows(DataSource(kind="project", path=str(tmp_path / "saved"))).to_list() == [{"x": 2}]


def test_a_missing_file_or_unknown_kind_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_rows(DataSource(kind="project_csv", path=str(tmp_path / "absent.csv")))
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown data.kind"):
        load_rows(DataSource(kind="project_txt", path=str(tmp_path / "rows.txt")))
