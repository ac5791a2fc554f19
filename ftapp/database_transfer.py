"""Database export to a JSON file and import from one (DB-001), with secrets scrubbed on the way out."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftapp.errors import Problem, ValidationError
from ftapp.secrets import redact_mapping
from storage import Database, SnapshotError
from storage.snapshot import export_snapshot, import_snapshot

JSON_TEXT_COLUMNS = {"configs": "config", "runs": "spec"}


@dataclass(frozen=True)
class ImportReport:
    imported: dict[str, int]
    duplicates: dict[str, int]
    duplicate_keys: dict[str, list[str]]

    @property
    def total_imported(self) -> int:
        return sum(self.imported.values())

    @property
    def total_duplicates(self) -> int:
        return sum(self.duplicates.values())


def _scrub(snapshot: dict[str, Any]) -> dict[str, Any]:
    for table, column in JSON_TEXT_COLUMNS.items():
        for row in snapshot["tables"].get(table, []):
            try:
                parsed = json.loads(row[column])
            except (TypeError, ValueError):
                continue  # YAML axolotl configs; validated free of secrets on the way in
            scrubbed = redact_mapping(parsed)
            if scrubbed != parsed:
                row[column] = json.dumps(scrubbed, sort_keys=True, separators=(",", ":"))
    return snapshot


def dump_snapshot(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class DatabaseTransfer:
    def __init__(self, db: Database):
        self.db = db

    def export_json(self) -> str:
        with self.db.transaction() as tx:
            return dump_snapshot(_scrub(export_snapshot(tx)))

    def export_to(self, path: Path) -> Path:
        text = self.export_json()
        path = Path(path)
        temp = path.with_name(f".{path.name}.partial")
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
        return path

    def import_from(self, path: Path) -> ImportReport:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise ValidationError(Problem("DB-001", f"{path} does not exist", "file")) from error
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValidationError(Problem("DB-001", f"{path} is not JSON: {error}", "file")) from error
        try:
            with self.db.transaction() as tx:
                tables = import_snapshot(tx, data)
        except SnapshotError as error:
            raise ValidationError(Problem("DB-001", str(error), "file")) from error
        return ImportReport(
            {name: t.imported for name, t in tables.items()},
            {name: t.duplicates for name, t in tables.items()},
            {name: t.duplicate_keys for name, t in tables.items() if t.duplicate_keys},
        )
