"""Training presets: a Train form (or an ``ftapp train`` command) saved under a name, to start runs from again.

A preset holds the fine-tuning request it builds, less what differs from run to run (the adapter's name, an
output folder, CPU threads), and the shipped config preset its configs come from (None when the command line
named configs by id). A preset may leave the model and dataset out: a recipe to apply to any of them. Saving
checks the request as a run would be checked, apart from those; a stored row is untrusted (a database import
may bring any text), so reading one checks its fields again (TP-002) before anything uses them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

from ftapp import rules
from ftapp.demo.visitor import Visitor, require_own, visible_to
from ftapp.errors import NotFoundError, Problem, ValidationError
from ftapp.ids import new_id
from ftapp.number_bounds import shown_value
from ftapp.prompts.configs import ConfigService
from ftapp.resource_names import name_problem
from ftapp.runs.fine_tune_request import FineTuneRequest, preset_configs, validate_fine_tune
from ftapp.runs.machine import Machine, detect_machine
from ftapp.settings import Settings
from storage import Database, DuplicateError, TrainingPresetRecord
from storage.types import utc_now
from trainer.protocol import RewardSpec

# Given anew for every run, so never part of a preset.
PER_RUN_FIELDS = ("adapter_name", "output_dir", "cpu_threads")
STORED_FIELDS = tuple(f.name for f in fields(FineTuneRequest) if f.name not in PER_RUN_FIELDS)


@dataclass(frozen=True)
class TrainingPreset:
    id: str
    name: str
    config_preset: str | None  # the shipped config preset the request's configs come from
    request: FineTuneRequest  # without an adapter name
    created_at: datetime


def preset_settings(request: FineTuneRequest) -> dict[str, Any]:
    """The stored form of a request: its fields as JSON values, less the per-run ones."""
    values = {name: getattr(request, name) for name in STORED_FIELDS}
    values["rewards"] = [asdict(r) if isinstance(r, RewardSpec) else dict(r) for r in request.rewards]
    return values


def _kind(annotation: str) -> tuple[type, ...]:
    """The JSON types a field of ``FineTuneRequest`` takes, from its annotation (a string under postponed annotations)."""
    optional = "None" in annotation
    base = annotation.split("|")[0].strip()
    if base.startswith("dict"):
        kinds: tuple[type, ...] = (dict,)
    elif base.startswith("tuple"):
        kinds = (list,)
    elif base == "float":
        kinds = (int, float)
    elif base in ("int", "str", "bool"):
        kinds = {"int": (int,), "str": (str,), "bool": (bool,)}[base]
    else:  # a field of a kind this does not know yet: any JSON value, and the run's validation judges it
        kinds = (str, int, float, bool, dict, list)
    return kinds + ((type(None),) if optional else ())


FIELD_KINDS = {f.name: _kind(str(f.type)) for f in fields(FineTuneRequest) if f.name in STORED_FIELDS}


def request_from_settings(name: str, text: str) -> FineTuneRequest:
    """The request a stored preset holds; TP-002 naming every field that is unknown or of the wrong kind."""
    try:
        values = json.loads(text)
    except (ValueError, RecursionError):
        values = None
    if not isinstance(values, dict):
        raise ValidationError(Problem(rules.TRAINING_PRESET, f"preset '{name}' holds no readable settings (a JSON object)", "preset"))
    problems = []
    for key, value in values.items():
        kinds = FIELD_KINDS.get(key)
        if kinds is None:
            problems.append(Problem(rules.TRAINING_PRESET, f"preset '{name}' holds the unknown field {shown_value(key)}", "preset"))
        elif isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            problems.append(
                Problem(rules.TRAINING_PRESET, f"preset '{name}': {key} has the wrong kind of value ({shown_value(value)})", "preset")
            )
        elif isinstance(value, list) and not all(isinstance(reward, dict) for reward in value):  # rewards
            problems.append(Problem(rules.TRAINING_PRESET, f"preset '{name}': rewards must be a list of objects", "preset"))
    if problems:
        raise ValidationError(problems)
    values["rewards"] = tuple(values.get("rewards") or ())
    values.setdefault("base_model_id", "")
    values.setdefault("dataset_id", "")
    return FineTuneRequest(adapter_name="", **values)


def _preset(record: TrainingPresetRecord) -> TrainingPreset:
    return TrainingPreset(
        record.id, record.name, record.config_preset, request_from_settings(record.name, record.settings), record.created_at
    )


class TrainingPresetService:
    def __init__(self, settings: Settings, db: Database, configs: ConfigService, visitor: Visitor | None = None):
        self.settings, self.db, self.configs, self.visitor = settings, visible_to(db, visitor), configs, visitor

    def shipped(self) -> list[str]:
        """The shipped config presets' names: a request starts from one of them unless it names configs by id."""
        return [p.name for p in self.configs.presets()]

    def start_from(self, name: str) -> tuple[FineTuneRequest, str | None]:
        """What ``ftapp train --preset NAME`` starts from: a saved preset's request and config preset, or for a shipped
        config preset's name an empty request and that name; TP-002 when ``name`` is neither."""
        saved = self.find(name)
        if saved is not None:
            return saved.request, saved.config_preset
        if name in self.shipped():
            return FineTuneRequest(base_model_id="", dataset_id="", adapter_name=""), name
        choices = ", ".join([*self.shipped(), *(r.name for r in self.list())])
        raise ValidationError(
            Problem(rules.TRAINING_PRESET, f"no saved or shipped preset is named '{name}' (there are: {choices})", "preset")
        )

    def config_ids(self, config_preset: str, training_mode: str) -> dict[str, str | None]:
        """The config ids ``training_mode`` takes from the shipped config preset (``preset_configs``)."""
        preset = next((p for p in self.configs.presets() if p.name == config_preset), None)
        if preset is None:
            raise ValidationError(Problem(rules.TRAINING_PRESET, f"'{config_preset}' is no shipped config preset", "preset"))
        return preset_configs(preset, training_mode)

    def save(self, name: str, request: FineTuneRequest, config_preset: str | None, machine: Machine | None = None) -> TrainingPreset:
        """Store ``request`` under ``name``, once the name is free (TP-001) and the request is one a run would
        accept but for its adapter's name, model and dataset; a refused preset writes nothing."""
        name = (name or "").strip()
        problems = self._name_problems(name)
        if config_preset is not None and config_preset not in self.shipped():
            problems.append(
                Problem(rules.TRAINING_PRESET, f"'{config_preset}' is no shipped config preset ({', '.join(self.shipped())})", "preset")
            )
        problems += self._request_problems(request, machine or detect_machine())
        if problems:
            raise ValidationError(problems)
        settings = json.dumps(preset_settings(request), sort_keys=True)
        try:
            with self.db.transaction() as tx:
                record = tx.training_presets.add(
                    id=new_id(), name=name, config_preset=config_preset, settings=settings, created_at=utc_now()
                )
        except DuplicateError as error:  # saved by someone else in the meantime (or another visitor's preset)
            raise ValidationError(Problem(rules.TRAINING_PRESET_NAME, f"a preset named '{name}' already exists", "name")) from error
        return _preset(record)

    def _name_problems(self, name: str) -> list[Problem]:
        if problem := name_problem(rules.TRAINING_PRESET_NAME, name):
            return [problem]
        if name in self.shipped():
            return [Problem(rules.TRAINING_PRESET_NAME, f"'{name}' is the name of a shipped config preset; choose another", "name")]
        with self.db.transaction() as tx:
            if tx.training_presets.find_one(name=name):
                return [
                    Problem(
                        rules.TRAINING_PRESET_NAME, f"a preset named '{name}' already exists; delete it first or choose another", "name"
                    )
                ]
        return []

    def _request_problems(self, request: FineTuneRequest, machine: Machine) -> list[Problem]:
        # A placeholder adapter name, so that only the adapter-name problems are left to drop.
        with self.db.transaction() as tx:
            problems = validate_fine_tune(tx, replace(request, adapter_name="preset-check"), machine, self.settings)
        left_out = {rules.ADAPTER_NAME}
        left_out |= {rules.TRAIN_BASE_MODEL} if not request.base_model_id else set()
        left_out |= {rules.TRAIN_DATASET} if not request.dataset_id else set()
        return [p for p in problems if p.rule not in left_out]

    def list(self) -> list[TrainingPresetRecord]:
        """Every preset this user sees, as stored (``get`` reads one's request)."""
        with self.db.transaction() as tx:
            return sorted(tx.training_presets.list(), key=lambda r: r.name.lower())

    def find(self, name: str) -> TrainingPreset | None:
        with self.db.transaction() as tx:
            record = tx.training_presets.find_one(name=name)
        return _preset(record) if record else None

    def get(self, name: str) -> TrainingPreset:
        if not name:
            raise ValidationError(Problem(rules.TRAINING_PRESET, "choose a saved preset", "preset"))
        preset = self.find(name)
        if preset is None:
            raise NotFoundError("training preset", name, rules.TRAINING_PRESET)
        return preset

    def for_form(self, name: str) -> TrainingPreset:
        """A preset the Train tab can show: one whose configs come from a shipped config preset (the tab's Preset
        picker), not configs named by id on the command line (TP-002)."""
        preset = self.get(name)
        if preset.config_preset is None:
            request = preset.request
            ids = ", ".join(
                f"{field} {value}"
                for field in ("training_arguments_config_id", "lora_config_id", "bitsandbytes_config_id")
                if (value := getattr(request, field))
            )
            raise ValidationError(
                Problem(
                    rules.TRAINING_PRESET,
                    f"preset '{name}' uses configs chosen by id ({ids}), which the Train tab cannot show; "
                    f"start it with `ftapp train --preset` instead",
                    "preset",
                )
            )
        return preset

    def remove(self, name: str) -> None:
        if not name:
            raise ValidationError(Problem(rules.TRAINING_PRESET, "choose a saved preset", "preset"))
        with self.db.transaction() as tx:
            record = tx.training_presets.find_one(name=name)
            if record is None:
                raise NotFoundError("training preset", name, rules.TRAINING_PRESET)
            require_own(self.visitor, record.owner, "training preset", record.name)
            tx.training_presets.remove(record.id)
