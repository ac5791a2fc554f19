"""Whole-database export to a JSON-able dict and import from one.

Import is one transaction: either every non-duplicate row lands or nothing does. Rows that
already exist (same id, or same unique key such as a name) are skipped and counted, never
silently dropped; references to a skipped row are pointed at the row that already exists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, Integer, String, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from storage.database import Transaction, head_revision
from storage.errors import SnapshotError
from storage.tables import (
    AdapterRow,
    ArtifactRow,
    Base,
    ComparisonVoteRow,
    ConfigRow,
    DatasetRow,
    EvaluationAnswerRow,
    EvaluationCombinationRow,
    EvaluationScoreRow,
    EvaluationVerdictRow,
    MetricPointRow,
    ModelRow,
    PromptRow,
    RunRow,
    TrainingPresetRow,
)
from storage.types import UTCDateTime

SNAPSHOT_FORMAT = "ftapp-database"
# Older revisions whose exports still import: every column added since is nullable (0006: the runs' outcome
# columns), so their rows come in with NULL there, and a table added since (0007: evaluation_verdicts, 0008:
# training_presets) comes in empty. An export of any other revision is refused.
READABLE_REVISIONS = ("0005", "0006", "0007")


@dataclass(frozen=True)
class TableSpec:
    name: str
    row_cls: type[Base]
    unique_keys: tuple[tuple[str, ...], ...]
    references: dict[str, str]  # column -> referenced table
    exported_id: bool = True
    # Ids inside a JSON object column (column -> key -> referenced table), remapped like ``references`` but no foreign
    # keys: a saved request may name a row this database lacks, which using it reports.
    json_references: dict[str, dict[str, str]] = field(default_factory=dict)


# The ids a training preset's saved request holds (``FineTuneRequest``'s ``*_id`` fields; a test keeps them equal). An
# import that finds a config or a model already here under another id would otherwise leave the preset naming ids this
# database does not have, so that using it fails with "not found".
PRESET_REFERENCES = {
    "base_model_id": "models",
    "dataset_id": "datasets",
    "prompt_id": "prompts",
    "init_adapter_id": "adapters",
    "training_arguments_config_id": "configs",
    "lora_config_id": "configs",
    "bitsandbytes_config_id": "configs",
    "generation_config_id": "configs",
    "axolotl_config_id": "configs",
}

# Parents before children; runs <-> adapters is a cycle, handled with deferred foreign keys.
TABLES: tuple[TableSpec, ...] = (
    TableSpec("models", ModelRow, (("id",), ("name",)), {}),
    TableSpec("datasets", DatasetRow, (("id",), ("name",)), {}),
    TableSpec("prompts", PromptRow, (("id",), ("name",)), {"dataset_id": "datasets"}),
    TableSpec("configs", ConfigRow, (("id",), ("type", "model_family", "content_hash")), {}),
    TableSpec(
        "runs",
        RunRow,
        (("id",),),
        {
            "base_model_id": "models",
            "dataset_id": "datasets",
            "prompt_id": "prompts",
            "adapter_id": "adapters",
            "parent_run_id": "runs",
        },
    ),
    TableSpec(
        "adapters",
        AdapterRow,
        (("id",), ("name",)),
        {"model_id": "models", "run_id": "runs", "prompt_id": "prompts"},
    ),
    # The surrogate integer id of a metric point means nothing outside one database.
    TableSpec("metric_points", MetricPointRow, (("run_id", "name", "step"),), {"run_id": "runs"}, False),
    TableSpec("artifacts", ArtifactRow, (("id",),), {"run_id": "runs"}),
    TableSpec(
        "evaluation_combinations",
        EvaluationCombinationRow,
        (("run_id", "position"),),
        {"run_id": "runs", "model_id": "models", "adapter_id": "adapters"},
        False,
    ),
    TableSpec("evaluation_answers", EvaluationAnswerRow, (("run_id", "position", "row_index"),), {"run_id": "runs"}, False),
    TableSpec("evaluation_scores", EvaluationScoreRow, (("run_id", "position", "metric"),), {"run_id": "runs"}, False),
    TableSpec("evaluation_verdicts", EvaluationVerdictRow, (("run_id", "position", "row_index"),), {"run_id": "runs"}, False),
    TableSpec("comparison_votes", ComparisonVoteRow, (("id",),), {"model_id": "models"}),
    TableSpec("training_presets", TrainingPresetRow, (("id",), ("name",)), {}, json_references={"settings": PRESET_REFERENCES}),
)


@dataclass
class TableImport:
    imported: int = 0
    duplicates: int = 0
    duplicate_keys: list[str] = field(default_factory=list)


def _columns(spec: TableSpec) -> list[str]:
    names = [c.key for c in inspect(spec.row_cls).columns]
    return names if spec.exported_id else [n for n in names if n != "id"]


def _is_datetime(spec: TableSpec, column: str) -> bool:
    return isinstance(spec.row_cls.__table__.c[column].type, UTCDateTime)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return UTCDateTime().process_bind_param(value, None)
    return value


def export_snapshot(tx: Transaction) -> dict[str, Any]:
    tables: dict[str, list[dict[str, Any]]] = {}
    for spec in TABLES:
        columns = _columns(spec)
        order = [spec.row_cls.__table__.c[k] for k in spec.unique_keys[0]]
        rows = tx.session.scalars(select(spec.row_cls).order_by(*order))
        tables[spec.name] = [{c: _encode(getattr(row, c)) for c in columns} for row in rows]
    return {"format": SNAPSHOT_FORMAT, "schema_revision": head_revision(), "tables": tables}


SQLITE_INTEGER = (-(2**63), 2**63 - 1)


def _type_problem(spec: TableSpec, column: str, value: Any) -> str | None:
    """Why ``value`` cannot be stored in ``column`` (JSON types against the column's), or None."""
    if value is None:
        return None
    kind = spec.row_cls.__table__.c[column].type
    if isinstance(kind, UTCDateTime) or isinstance(kind, String):  # Text is a String
        if not isinstance(value, str):
            return f"must be text (got {type(value).__name__})"
        length = 32 if isinstance(kind, UTCDateTime) else kind.length
        return f"is longer than {length} characters" if length and len(value) > length else None
    if isinstance(kind, Boolean):
        return None if isinstance(value, bool) else f"must be true or false (got {type(value).__name__})"
    if isinstance(kind, Integer):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number (got {type(value).__name__})"
        return None if SQLITE_INTEGER[0] <= value <= SQLITE_INTEGER[1] else "is out of the 64-bit range"
    if isinstance(kind, Float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number (got {type(value).__name__})"
        try:
            float(value)
        except OverflowError:
            return "is too large for a number"
    return None


def check_snapshot(data: Any) -> dict[str, list[dict[str, Any]]]:
    """The export's rows by table, once its format, tables, columns and value types are right; else SnapshotError."""
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f'not an ftapp database export (expected "format": "{SNAPSHOT_FORMAT}")')
    revision = data.get("schema_revision")
    if revision != head_revision() and revision not in READABLE_REVISIONS:
        raise SnapshotError(
            f"export has schema revision {str(revision)[:40]!r}; this version reads "
            f"{', '.join(repr(r) for r in (head_revision(), *READABLE_REVISIONS))}"
        )
    tables = data.get("tables")
    if not isinstance(tables, dict):
        raise SnapshotError('"tables" must be an object of table name -> list of rows')
    known = {spec.name for spec in TABLES}
    unknown = sorted(set(tables) - known)
    if unknown:
        raise SnapshotError(f"unknown tables: {', '.join(unknown)}")
    for spec in TABLES:
        rows = tables.get(spec.name, [])
        if not isinstance(rows, list):
            raise SnapshotError(f"{spec.name}: expected a list of rows")
        allowed = set(_columns(spec))
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise SnapshotError(f"{spec.name} row {index}: expected an object")
            extra = sorted(set(row) - allowed)
            if extra:
                raise SnapshotError(f"{spec.name} row {index}: unknown columns {', '.join(extra)}")
            missing = [k for keys in spec.unique_keys for k in keys if row.get(k) is None]
            if missing:
                raise SnapshotError(f"{spec.name} row {index}: missing {', '.join(missing)}")
            wrong = [f"{column} {problem}" for column, value in row.items() if (problem := _type_problem(spec, column, value))]
            if wrong:
                raise SnapshotError(f"{spec.name} row {index}: {'; '.join(wrong)}")
    return {spec.name: tables.get(spec.name, []) for spec in TABLES}


def _decode(spec: TableSpec, row: dict[str, Any], index: int) -> dict[str, Any]:
    out = dict(row)
    for column, value in row.items():
        if value is not None and _is_datetime(spec, column):
            try:
                out[column] = datetime.fromisoformat(value)
            except (TypeError, ValueError) as error:
                raise SnapshotError(f"{spec.name} row {index}: {column} is not a timestamp") from error
            if out[column].tzinfo is None:
                raise SnapshotError(f"{spec.name} row {index}: {column} has no time zone")
    return out


def _remapped_json(value: Any, keys: dict[str, str], remap: dict[str, dict[Any, Any]]) -> Any:
    """A JSON object's text with the ids under ``keys`` pointed at the rows they were found to duplicate; anything
    else as it came (what reads the column judges it)."""
    try:
        values = json.loads(value) if isinstance(value, str) else None
    except (ValueError, RecursionError):
        return value
    if not isinstance(values, dict):
        return value
    found = {
        key: remap[target][values[key]] for key, target in keys.items() if isinstance(values.get(key), str) and values[key] in remap[target]
    }
    return json.dumps({**values, **found}, sort_keys=True) if found else value


def _existing_id(tx: Transaction, spec: TableSpec, keys: tuple[str, ...], row: dict[str, Any]) -> Any:
    table = spec.row_cls.__table__
    query = select(table.c.id).where(*(table.c[k] == row.get(k) for k in keys))
    return tx.session.execute(query).scalar()


# The rows an import will write, by table, each with its position in the export.
Planned = dict[str, list[tuple[int, dict[str, Any]]]]


def import_snapshot(tx: Transaction, data: Any, vet: Callable[[Planned], None] | None = None) -> dict[str, TableImport]:
    """``vet``: the caller's policy, shown the rows that will be written (duplicates left out, timestamps decoded)
    before any is; it may change them in place or raise, which writes nothing."""
    tables = check_snapshot(data)
    report = {spec.name: TableImport() for spec in TABLES}
    remap: dict[str, dict[Any, Any]] = {spec.name: {} for spec in TABLES}
    planned: list[tuple[TableSpec, int, dict[str, Any]]] = []

    # Pass 1: decide which rows are duplicates. A duplicate's id maps to the row that exists.
    for spec in TABLES:
        seen: dict[tuple[str, ...], dict[tuple, Any]] = {keys: {} for keys in spec.unique_keys}
        for index, raw in enumerate(tables[spec.name]):
            row = _decode(spec, raw, index)
            for column, target in spec.references.items():
                if row.get(column) is not None:
                    row[column] = remap[target].get(row[column], row[column])
            match = None
            for keys in spec.unique_keys:
                key = tuple(row.get(k) for k in keys)
                match = seen[keys].get(key) or _existing_id(tx, spec, keys, row)
                if match is not None:
                    break
            if match is not None:
                entry = report[spec.name]
                entry.duplicates += 1
                entry.duplicate_keys.append(str(row.get("name") or row.get("id") or key))
                if spec.exported_id:
                    remap[spec.name][row["id"]] = match
                continue
            for keys in spec.unique_keys:
                seen[keys][tuple(row.get(k) for k in keys)] = row.get("id", True)
            planned.append((spec, index, row))

    if vet is not None:
        vet({spec.name: [(index, row) for planned_spec, index, row in planned if planned_spec is spec] for spec in TABLES})

    # Pass 2: insert, with references that point forward (runs.adapter_id) remapped too.
    tx.session.execute(text("PRAGMA defer_foreign_keys=ON"))
    for spec, _index, row in planned:
        for column, target in spec.references.items():
            if row.get(column) is not None:
                row[column] = remap[target].get(row[column], row[column])
        for column, held in spec.json_references.items():
            row[column] = _remapped_json(row.get(column), held, remap)
        tx.session.add(spec.row_cls(**row))
        report[spec.name].imported += 1
    try:
        tx.session.flush()
    except (IntegrityError, StatementError) as error:
        raise SnapshotError(f"export does not fit this database: {error.orig}") from error
    # Deferred foreign keys are only checked at COMMIT; check now to name the broken reference.
    broken = tx.session.execute(text("PRAGMA foreign_key_check")).all()
    if broken:
        table, _rowid, parent, _fk = broken[0]
        raise SnapshotError(
            f"{len(broken)} row(s) refer to rows that are neither in the export nor in this "
            f"database (first: a row of {table} refers to a missing row of {parent})"
        )
    return report
