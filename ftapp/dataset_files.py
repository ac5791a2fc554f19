"""Reading and validating local dataset files (CSV, JSON, JSONL, Parquet) and dataset directories.

Every reader turns a file into a stream of records ``(row number, first line, row dict)`` and
reports what is wrong with it as ``Problem``s: DS-003 for the location, DS-005 for content that is
not a dataset, DS-006 for oversized values. Structural faults that make the rest of the file
meaningless (bad encoding, malformed JSON, a broken header) stop the pass at once; per-row faults
(a ragged CSV row, a bad JSONL line, a huge value) are collected so the user sees them together.

Rows keep the types of their source: JSON values stay JSON values, CSV values are always strings
(empty cells are ``""``; no number guessing, so ``"007"`` survives), Parquet and ``datasets`` values
are what ``to_pylist`` gives. JSON/JSONL records are returned as stored: one may lack keys another
has; ``DatasetTable.columns`` is the union of keys in first-seen order.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ftapp.errors import Problem, ValidationError

FILE_TYPES: dict[str, str] = {
    ".csv": "project_csv",
    ".json": "project_json",
    ".jsonl": "project_jsonl",
    ".parquet": "project_parquet",
}
DIRECTORY_TYPE = "project"
HUB_TYPE = "huggingface"
DATASET_TYPES = (HUB_TYPE, DIRECTORY_TYPE, *FILE_TYPES.values())

MAX_FIELD_CHARS = 1_000_000
SAMPLE_ROWS = 20
# Enough to show a pattern without burying the first fault under a thousand identical ones.
MAX_REPORTED_PROBLEMS = 20

_EXTENSION_FOR_TYPE = {dataset_type: ext for ext, dataset_type in FILE_TYPES.items()}
_PARQUET_BATCH_ROWS = 1024


@dataclass(frozen=True)
class DatasetTable:
    """What a full validation pass learned about a dataset."""

    columns: list[str]
    features: dict[str, str]  # column -> string|int|float|bool|list|object|null|mixed
    num_rows: int
    sample_rows: list[dict]  # the first SAMPLE_ROWS rows, for format detection


# A record as the readers yield it: 1-based row number, line where the row starts (None where
# the source has no lines), and the row itself.
_Record = tuple[int, int | None, dict]


def dataset_type_for(path: Path) -> str:
    """The dataset type a location implies: ``project`` for a directory, else by file extension."""
    path = Path(path)
    if path.is_dir():
        return DIRECTORY_TYPE
    dataset_type = FILE_TYPES.get(path.suffix.lower())
    if dataset_type is None:
        supported = ", ".join(FILE_TYPES)
        raise ValidationError(
            Problem("DS-003", f"'{path.name}': unsupported file extension '{path.suffix}'; use one of {supported}", "location")
        )
    return dataset_type


def inspect_file(path: Path, dataset_type: str) -> DatasetTable:
    """Validate the whole dataset at ``path`` and describe it; raises ``ValidationError``.

    ``dataset_type`` ``project`` is accepted too and reads a directory like ``inspect_directory``.
    """
    path = Path(path)
    _check_type(dataset_type)
    _check_location(path, dataset_type)
    problems = _Problems()
    table = _TableBuilder(problems)
    for row_no, line_no, row in _open_records(path, dataset_type, problems):
        table.add(row_no, line_no, row)
    problems.raise_if_any()
    return table.build()


def read_rows(path: Path, dataset_type: str, offset: int = 0, limit: int = 20) -> list[dict]:
    """Rows ``offset`` .. ``offset + limit - 1`` (0-based), for previews.

    Reads only as far as the page ends (a JSON array is parsed whole), so faults past the page go
    unnoticed here; ``inspect_file`` is the full check.
    """
    if offset < 0 or limit < 0:
        raise ValueError(f"offset and limit must be >= 0, got offset={offset}, limit={limit}")
    path = Path(path)
    _check_type(dataset_type)
    _check_location(path, dataset_type)
    problems = _Problems()
    records = _open_records(path, dataset_type, problems, skip=offset)
    rows = [row for _, _, row in itertools.islice(records, limit)]
    problems.raise_if_any()
    return rows


def inspect_directory(path: Path) -> DatasetTable:
    """Validate a type ``project`` directory: a ``save_to_disk`` output (a DatasetDict contributes
    its ``train`` split, else its first) or a folder of data files ``datasets.load_dataset`` reads."""
    return inspect_file(path, DIRECTORY_TYPE)


def read_directory_rows(path: Path, offset: int = 0, limit: int = 20) -> list[dict]:
    """A page of rows of a type ``project`` directory (see ``inspect_directory``)."""
    return read_rows(path, DIRECTORY_TYPE, offset, limit)


# --- problem collection -------------------------------------------------------------------------


class _Problems:
    """Problems of one pass, capped at MAX_REPORTED_PROBLEMS with a count of the rest per rule."""

    def __init__(self) -> None:
        self._shown: list[Problem] = []
        self._hidden: Counter[str] = Counter()

    def add(self, rule_id: str, message: str, field: str | None = "location") -> None:
        if len(self._shown) < MAX_REPORTED_PROBLEMS:
            self._shown.append(Problem(rule_id, message, field))
        else:
            self._hidden[rule_id] += 1

    def fatal(self, rule_id: str, message: str, field: str | None = "location") -> NoReturn:
        """Report a fault after which the rest of the file cannot be read, with what came before."""
        self.add(rule_id, message, field)
        self.raise_if_any()
        raise AssertionError("unreachable: raise_if_any raises once a problem was added")

    def raise_if_any(self) -> None:
        if not self._shown:
            return
        summary = [
            Problem(rule_id, f"... and {count} more problem(s) like these not shown", "location") for rule_id, count in self._hidden.items()
        ]
        raise ValidationError(self._shown + summary)


# --- type and location --------------------------------------------------------------------------


def _check_type(dataset_type: str) -> None:
    if dataset_type == HUB_TYPE:
        # A caller bug rather than a user error: Hub datasets have no local path to read.
        raise ValueError("'huggingface' datasets are read with ftapp.hub_datasets, not from a local path")
    if dataset_type not in DATASET_TYPES:
        raise ValidationError(Problem("DS-001", f"unknown dataset type '{dataset_type}'; use one of {', '.join(DATASET_TYPES)}", "type"))


def _check_location(path: Path, dataset_type: str) -> None:
    def reject(message: str) -> NoReturn:
        raise ValidationError(Problem("DS-003", message, "location"))

    if not path.exists():
        reject(f"'{path}' does not exist")
    if dataset_type == DIRECTORY_TYPE:
        if not path.is_dir():
            reject(
                f"'{path}' is a file, but type 'project' needs a directory (a datasets save_to_disk "
                "output or a folder of data files); pick the type matching the file's extension"
            )
        return
    if path.is_dir():
        reject(f"'{path}' is a directory; use type 'project' for a dataset directory")
    if not path.is_file():
        reject(f"'{path}' is not a regular file")
    expected = _EXTENSION_FOR_TYPE[dataset_type]
    if path.suffix.lower() != expected:
        reject(f"'{path.name}' has extension '{path.suffix}', but type {dataset_type} needs '{expected}'")


# --- record streams -----------------------------------------------------------------------------


def _open_records(path: Path, dataset_type: str, problems: _Problems, skip: int = 0) -> Iterator[_Record]:
    """The records of ``path`` after the first ``skip``; fatal faults raise while iterating."""
    if dataset_type == "project_parquet":
        return _parquet_records(path, problems, skip)
    if dataset_type == DIRECTORY_TYPE:
        return _directory_records(path, problems, skip)
    text_reader = {"project_csv": _csv_records, "project_json": _json_records, "project_jsonl": _jsonl_records}
    text = _read_text(path, problems)
    return itertools.islice(text_reader[dataset_type](text, problems), skip, None)


def _read_text(path: Path, problems: _Problems) -> str:
    """The file decoded as UTF-8 (a BOM is dropped); any other encoding is a DS-005 fault."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationError(Problem("DS-003", f"'{path}' cannot be read ({exc.strerror or exc})", "location")) from exc
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        problems.fatal("DS-005", "the file is UTF-16/UTF-32 encoded; save it as UTF-8")
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        line = data.count(b"\n", 0, offset) + 1
        problems.fatal(
            "DS-005",
            f"byte 0x{data[offset]:02x} at byte offset {offset} (line {line}) is not valid UTF-8; save the file as UTF-8",
        )
    if not text.strip():
        problems.fatal("DS-005", "the file is empty")
    return text


def _csv_records(text: str, problems: _Problems) -> Iterator[_Record]:
    _allow_long_csv_fields()
    # strict: a quote in the wrong place is corruption (usually an unescaped quote) that lenient
    # parsing would turn into silently merged or split rows.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)

    def next_row() -> tuple[int, list[str] | None]:
        start = reader.line_num + 1
        try:
            return start, next(reader, None)
        except csv.Error as exc:
            problems.fatal("DS-005", f"line {start}: malformed CSV ({exc})")

    header: list[str] | None = []
    while header == []:  # csv yields [] for blank lines
        _, header = next_row()
    if header is None:
        problems.fatal("DS-005", "the file is empty")
    _check_column_names(header, problems)
    row_no = 0
    while True:
        line_no, fields = next_row()
        if fields is None:
            break
        if not fields:
            continue
        row_no += 1
        if len(fields) != len(header):
            problems.add("DS-005", f"row {row_no} (line {line_no}) has {len(fields)} fields, the header has {len(header)}")
            continue
        yield row_no, line_no, dict(zip(header, fields))
    if row_no == 0:
        problems.fatal("DS-005", f"the file has a header ({', '.join(header)}) but no rows")


def _allow_long_csv_fields() -> None:
    # The csv module refuses fields over 131072 characters with an error that names neither row
    # nor column. Lifting the limit lets the DS-006 check report the cell; the whole file is in
    # memory already, so no field can cost more than the file. The limit is process-wide and only
    # ever raised here, so concurrent readers elsewhere are never restricted by it.
    ceiling = min(sys.maxsize, 2**31 - 1)  # the C long behind it is 32-bit on Windows
    if csv.field_size_limit() < ceiling:
        csv.field_size_limit(ceiling)


def _check_column_names(names: list[str], problems: _Problems) -> None:
    """Empty or repeated column names make rows ambiguous, so they stop the pass."""
    positions: dict[str, list[int]] = {}
    for number, name in enumerate(names, 1):
        if not name.strip():
            problems.add("DS-005", f"column {number} of the header has an empty name")
        else:
            positions.setdefault(name, []).append(number)
    for name, numbers in positions.items():
        if len(numbers) > 1:
            listed = ", ".join(map(str, numbers))
            problems.add("DS-005", f"column name '{name}' is used more than once (columns {listed})")
    problems.raise_if_any()


def _json_records(text: str, problems: _Problems) -> Iterator[_Record]:
    duplicates = _DuplicateKeys()
    try:
        data = json.loads(text, object_pairs_hook=duplicates)
    except json.JSONDecodeError as exc:
        hint = ""
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            hint = "; this looks like JSON Lines (one object per line): give the file a .jsonl extension"
        problems.fatal("DS-005", f"line {exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno}){hint}")
    except RecursionError:
        problems.fatal("DS-005", "the JSON is nested too deeply to read")
    if not isinstance(data, list):
        problems.fatal("DS-005", _not_an_array(data))
    if not data:
        problems.fatal("DS-005", "the JSON array is empty: the dataset has no rows")
    for row_no, item in enumerate(data, 1):
        if not isinstance(item, dict):
            problems.add("DS-005", f"element {row_no} of the array is {_json_kind(item)}, not an object")
            continue
        for key in duplicates.repeated_in(item):
            problems.add("DS-005", f"row {row_no}: key '{key}' appears more than once")
        yield row_no, None, item


def _not_an_array(data: object) -> str:
    message = f"the file holds {_json_kind(data)}, but a dataset must be a JSON array of objects ([{{...}}, {{...}}])"
    if isinstance(data, dict):
        nested = [key for key, value in data.items() if isinstance(value, list) and value and isinstance(value[0], dict)]
        if nested:
            message += f"; its key '{nested[0]}' holds a list of objects: save that list on its own"
    return message


def _jsonl_records(text: str, problems: _Problems) -> Iterator[_Record]:
    duplicates = _DuplicateKeys()
    row_no = 0
    seen_content = False
    # Split on "\n" only: str.splitlines() also breaks on U+2028 and friends, which JSON allows
    # unescaped inside strings, and would shift every later line number.
    for line_no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if not seen_content and line.lstrip().startswith("["):
            problems.fatal("DS-005", f"line {line_no}: this looks like a JSON array, not JSON Lines; give the file a .json extension")
        seen_content = True
        try:
            value = json.loads(line, object_pairs_hook=duplicates)
        except json.JSONDecodeError as exc:
            problems.add("DS-005", f"line {line_no}: invalid JSON ({exc.msg}, column {exc.colno})")
            continue
        except RecursionError:
            problems.add("DS-005", f"line {line_no}: the JSON is nested too deeply to read")
            continue
        if not isinstance(value, dict):
            problems.add("DS-005", f"line {line_no} is {_json_kind(value)}, not a JSON object")
            continue
        row_no += 1
        for key in duplicates.repeated_in(value):
            problems.add("DS-005", f"line {line_no}: key '{key}' appears more than once")
        yield row_no, line_no, value


class _DuplicateKeys:
    """``object_pairs_hook`` that remembers objects with a repeated key, which ``json`` would
    otherwise resolve silently by keeping the last value."""

    def __init__(self) -> None:
        # Holding the objects keeps them alive, so identity comparison cannot hit a recycled id.
        self._found: list[tuple[dict, list[str]]] = []

    def __call__(self, pairs: list[tuple[str, object]]) -> dict:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            counts = Counter(key for key, _ in pairs)
            self._found.append((obj, [key for key, count in counts.items() if count > 1]))
        return obj

    def repeated_in(self, obj: dict) -> list[str]:
        return next((keys for found, keys in self._found if found is obj), [])


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _parquet_records(path: Path, problems: _Problems, skip: int) -> Iterator[_Record]:
    import pyarrow as pa  # deferred: only Parquet needs it and it slows the UI's start-up
    import pyarrow.parquet as pq

    unreadable = (pa.ArrowException, OSError, ValueError)
    if path.stat().st_size == 0:
        problems.fatal("DS-005", "the file is empty")
    try:
        parquet = pq.ParquetFile(path)
    except unreadable as exc:
        problems.fatal("DS-005", f"not a readable Parquet file ({exc})")
    with parquet:
        _check_column_names(parquet.schema_arrow.names, problems)
        if parquet.metadata.num_rows == 0:
            problems.fatal("DS-005", "the Parquet file has columns but no rows")
        row_no = 0
        batches = parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS)
        for batch in _reading(batches, problems, unreadable, "unreadable Parquet data"):
            if skip >= batch.num_rows:  # skipped batches are never converted to Python
                skip -= batch.num_rows
                row_no += batch.num_rows
                continue
            if skip:
                batch, row_no, skip = batch.slice(skip), row_no + skip, 0
            for row in batch.to_pylist():
                row_no += 1
                yield row_no, None, row


def _directory_records(path: Path, problems: _Problems, skip: int) -> Iterator[_Record]:
    dataset = _open_directory_dataset(path, problems)
    dataset = dataset.skip(skip) if skip else dataset
    # datasets raises from many layers (its own errors, pyarrow, pandas, json); whatever it
    # raises while reading the user's directory is a fault of that data, so all of it is DS-005.
    row_no = 0
    for batch in _reading(dataset.iter(batch_size=1000), problems, (Exception,), "datasets could not read it"):
        for values in zip(*batch.values()):
            row_no += 1
            yield skip + row_no, None, dict(zip(batch, values))
    if row_no == 0 and skip == 0:
        problems.fatal("DS-005", f"the dataset in '{path}' has no rows")


def _open_directory_dataset(path: Path, problems: _Problems):  # -> datasets.Dataset | datasets.IterableDataset
    import datasets  # deferred: heavy, and only directories need it

    saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
    try:
        if saved:
            loaded = datasets.load_from_disk(str(path))
        else:
            # Streaming reads the files in place instead of copying them into the Arrow cache.
            loaded = datasets.load_dataset(str(path), streaming=True)
    except Exception as exc:  # see _directory_records: any failure here is the directory's fault
        how = "datasets.load_from_disk" if saved else "datasets.load_dataset"
        problems.fatal("DS-005", f"'{path}' cannot be loaded with {how} ({type(exc).__name__}: {exc})")
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if not loaded:
            problems.fatal("DS-005", f"'{path}' holds no splits")
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    # A saved dataset remembers its format (say torch); rows here must be plain Python values.
    return loaded.with_format(None)


def _reading(items: Iterable, problems: _Problems, errors: tuple[type[BaseException], ...], what: str) -> Iterator:
    """Iterate ``items``, turning ``errors`` raised by the source (not by our caller) into DS-005."""
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except errors as exc:
            problems.fatal("DS-005", f"{what} ({type(exc).__name__}: {exc})")
        yield item


# --- table summary ------------------------------------------------------------------------------


class _TableBuilder:
    """Accumulates columns, feature kinds, the row count and the sample, checking DS-006 on the way."""

    def __init__(self, problems: _Problems) -> None:
        self._problems = problems
        self._kinds: dict[str, set[str]] = {}  # insertion order = first-seen column order
        self._num_rows = 0
        self._sample: list[dict] = []

    def add(self, row_no: int, line_no: int | None, row: dict) -> None:
        where = f"row {row_no}" if line_no is None else f"row {row_no} (line {line_no})"
        for column, value in row.items():
            kinds = self._kinds.get(column)
            if kinds is None:
                kinds = self._kinds[column] = set()
                if not str(column).strip():
                    self._problems.add("DS-005", f"{where}: a key is empty; every column needs a name")
            kinds.add(_kind_of(value))
            size = _text_size(value)
            if size > MAX_FIELD_CHARS:
                self._problems.add(
                    "DS-006",
                    f"{where}, column '{column}': the value has {size:,} characters; the limit is {MAX_FIELD_CHARS:,}",
                )
        self._num_rows += 1
        if len(self._sample) < SAMPLE_ROWS:
            self._sample.append(row)

    def build(self) -> DatasetTable:
        return DatasetTable(
            columns=list(self._kinds),
            features={column: _merge_kinds(kinds) for column, kinds in self._kinds.items()},
            num_rows=self._num_rows,
            sample_rows=list(self._sample),
        )


def infer_features(rows: Iterable[dict]) -> dict[str, str]:
    """The ``DatasetTable.features`` vocabulary for ``rows`` whose source declares no types."""
    kinds: dict[str, set[str]] = {}
    for row in rows:
        for column, value in row.items():
            kinds.setdefault(column, set()).add(_kind_of(value))
    return {column: _merge_kinds(found) for column, found in kinds.items()}


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    return "object"  # dicts, and Arrow values with no JSON counterpart (timestamps, bytes, decimals)


def _merge_kinds(kinds: set[str]) -> str:
    """One feature per column: nulls are gaps, not a type; ints among floats are floats."""
    present = kinds - {"null"}
    if not present:
        return "null"
    if present == {"int", "float"}:
        return "float"
    if len(present) == 1:
        return next(iter(present))
    return "mixed"


def _text_size(value: object) -> int:
    """Characters a value brings into a prompt: a list/object cell counts all strings inside it."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_size(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_text_size(item) for item in value)
    return 0
