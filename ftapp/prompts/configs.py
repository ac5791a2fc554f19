"""Config use cases: typed, validated, content-deduplicated blobs (CF-001..CF-005) and presets."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from ftapp import rules
from ftapp.demo.policy import host_only
from ftapp.demo.visitor import Visitor
from ftapp.errors import ConflictError, Problem, ValidationError, require_found
from ftapp.ids import new_id
from ftapp.prompts.axolotl_formats import FORMATS
from ftapp.prompts.axolotl_template import TEMPLATE_NAME, TEMPLATE_YAML
from ftapp.prompts.axolotl_yaml import read_axolotl_yaml
from ftapp.prompts.config_schemas import check_config
from ftapp.prompts.presets import DESCRIPTIONS, PRESETS
from ftapp.resource_names import description_problem, name_problem
from storage import ConfigRecord, Database, DuplicateError
from storage.types import utc_now

PRESET_NAMESPACE = uuid.UUID("6f0a3c52-9d7e-4b8f-a1e2-5c3d4b6a7f80")
SHIPPED_AT = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG_TYPES = (
    "training_arguments",
    "bitsandbytes_config",
    "generation_config",
    "lora_config",
    "custom",
    "axolotl",
    "axolotl_dataset_formats",
)


@dataclass(frozen=True)
class AddConfigRequest:
    type: str = ""
    config: str | dict | list = ""
    description: str = ""
    model_family: str = ""
    name: str | None = None


@dataclass(frozen=True)
class AddConfigResult:
    record: ConfigRecord
    deduplicated: bool  # CF-004: identical content existed and its record is returned

    @property
    def notice(self) -> str | None:
        return f"CF-004: an identical {self.record.type} config exists; returned {self.record.id}" if self.deduplicated else None


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    configs: dict[str, ConfigRecord]


def parse_config(config_type: str, config: str | dict | list) -> tuple[Any, list[Problem]]:
    if config_type == "axolotl":  # hostile YAML: read within limits and checked for keys that run code (CF-003a)
        return read_axolotl_yaml(axolotl_text(config))
    if not isinstance(config, str):
        return config, []
    try:
        return json.loads(config), []
    except json.JSONDecodeError as error:
        return None, [
            Problem(rules.CONFIG_JSON, f"config is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}", "config")
        ]


def axolotl_text(config: str | dict | list) -> str:
    """The YAML stored for an Axolotl config: the user's text byte for byte (comments and key order kept), or the
    values given as data written out in their own order."""
    return config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def canonical(values: Any) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class ConfigService:
    def __init__(self, db: Database, visitor: Visitor | None = None):
        # Configs have no owner: a demo visitor uses the presets and the Train tab's fields, and stores none.
        self.db, self.visitor = db, visitor

    def add(self, request: AddConfigRequest) -> AddConfigResult:
        if self.visitor:
            raise ValidationError(host_only("saving configs (the Train tab's fields and presets are yours to use)"))
        return self._store(request, is_default=False, config_id=new_id(), created_at=utc_now())

    def _store(self, request: AddConfigRequest, is_default: bool, config_id: str, created_at: datetime) -> AddConfigResult:
        if request.type not in CONFIG_TYPES:
            raise ValidationError(
                Problem(rules.CONFIG_TYPE, f"type must be one of {', '.join(CONFIG_TYPES)} (got {request.type!r})", "type")
            )
        values, problems = parse_config(request.type, request.config)
        # A config's name and description are shown in the Train tab's pickers: one line, and bounded (a request
        # body is not).
        if request.name is not None and (invalid := name_problem(rules.CONFIG_NAME, request.name.strip())):
            problems.append(invalid)
        if too_long := description_problem(rules.DESCRIPTION, request.description):
            problems.append(too_long)
        if not problems and values is None:
            problems = [Problem(rules.CONFIG_JSON, "config is empty; give a JSON object", "config")]
        if not problems:
            problems = check_config(request.type, values)
        if problems:
            raise ValidationError(problems)
        text = canonical(values)  # identical content, whatever its comments, key order or spacing, is one config (CF-004)
        content_hash = hashlib.sha256(text.encode()).hexdigest()
        stored = axolotl_text(request.config) if request.type == "axolotl" else text
        with self.db.transaction() as tx:
            existing = tx.configs.find_one(type=request.type, model_family=request.model_family, content_hash=content_hash)
            if existing:
                return AddConfigResult(existing, True)
            try:
                record = tx.configs.add(
                    id=config_id,
                    created_at=created_at,
                    type=request.type,
                    name=request.name,
                    description=request.description,
                    config=stored,
                    content_hash=content_hash,
                    model_family=request.model_family,
                    is_default=is_default,
                )
            except DuplicateError:  # a concurrent writer stored the same content first
                record = None
        if record is None:
            with self.db.transaction() as tx:
                stored_first = require_found(
                    tx.configs.find_one(type=request.type, model_family=request.model_family, content_hash=content_hash),
                    "config",
                    content_hash,
                )
            return AddConfigResult(stored_first, True)
        return AddConfigResult(record, False)

    def ensure_presets(self) -> None:
        """Install the shipped presets with the same ids and time in every home, so that an
        export from one home imports into another without the presets differing."""
        for preset, configs in PRESETS.items():
            for config_type, values in configs.items():
                request = AddConfigRequest(config_type, values, DESCRIPTIONS[preset], name=preset)
                preset_id = str(uuid.uuid5(PRESET_NAMESPACE, f"{preset}/{config_type}/{canonical(values)}"))
                self._store(request, is_default=True, config_id=preset_id, created_at=SHIPPED_AT)
        template = AddConfigRequest("axolotl", TEMPLATE_YAML, "seed 001's Axolotl template: a LoRA run", name=TEMPLATE_NAME)
        self._store(template, is_default=True, config_id=str(uuid.uuid5(PRESET_NAMESPACE, TEMPLATE_YAML)), created_at=SHIPPED_AT)
        for dataset_type, columns in FORMATS.items():  # seed 001's axolotl_dataset_formats, found by their description
            request = AddConfigRequest("axolotl_dataset_formats", columns, dataset_type, name=f"axolotl {dataset_type}")
            format_id = str(uuid.uuid5(PRESET_NAMESPACE, f"axolotl_dataset_formats/{dataset_type}/{canonical(columns)}"))
            self._store(request, is_default=True, config_id=format_id, created_at=SHIPPED_AT)

    def presets(self) -> list[Preset]:
        with self.db.transaction() as tx:
            defaults = tx.configs.find(is_default=True)
        return [Preset(name, DESCRIPTIONS[name], {c.type: c for c in defaults if c.name == name}) for name in PRESETS]

    def list(self, config_type: str | None = None, model_family: str | None = None) -> list[ConfigRecord]:
        with self.db.transaction() as tx:
            records = tx.configs.find(type=config_type) if config_type else tx.configs.list()
        if model_family is not None:
            records = [r for r in records if r.model_family in ("", model_family)]
        return records

    def get(self, config_id: str) -> ConfigRecord:
        with self.db.transaction() as tx:
            return require_found(tx.configs.get(config_id), "config", config_id)

    def remove(self, config_id: str) -> None:
        if self.visitor:
            raise ValidationError(host_only("removing configs"))
        record = self.get(config_id)
        if record.is_default:
            raise ConflictError(f"config {config_id} is part of the '{record.name}' preset and cannot be removed")
        with self.db.transaction() as tx:
            tx.configs.remove(config_id)
