"""Axolotl YAML, read as hostile input: bounded text, ``yaml.safe_load`` only, no anchors, plain JSON-like values.

ftapp stores the user's text byte for byte (comments and key order are theirs) and reads it with ``read_axolotl_yaml``
wherever it is used, since an import or an older version may have stored any text. Anchors and aliases are refused
before anything is built from them: a few lines of them expand to gigabytes once the values are walked ("billion
laughs"), and nobody needs them in a training config. Values must be what JSON holds, because the parsed config
travels in the run's spec.json: a date or a binary blob gets a message that says to quote it.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from ftapp import rules
from ftapp.errors import Problem
from ftapp.number_bounds import shown_value
from storage import ConfigRecord
from trainer.protocol import MAX_CONFIG_CHARS, MAX_DEPTH, axolotl_config_problems

_STARTS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_ENDS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _shape_problem(text: str) -> str | None:
    """Why the event stream of ``text`` may not be built into values, before any value is built."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            return "uses YAML anchors or aliases (&name, *name), which are refused: write each value out"
        if isinstance(event, _STARTS):
            depth += 1
            if depth > MAX_DEPTH:
                return f"is nested deeper than {MAX_DEPTH} levels"
        elif isinstance(event, _ENDS):
            depth -= 1
    return None


def _plain_problem(value: Any, where: str) -> str | None:
    """The first value JSON cannot hold (a date, bytes, a set, a non-text key, an infinite number)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where or 'the config'} has a key that is not text ({shown_value(key)}): quote it"
            if problem := _plain_problem(item, f"{where}.{key}" if where else key):
                return problem
        return None
    if isinstance(value, list):
        return next((p for i, item in enumerate(value) if (p := _plain_problem(item, f"{where}[{i}]"))), None)
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is {value}: give a finite number"
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    return f"{where} is a {type(value).__name__} ({shown_value(value)}): quote it to make it text"


def read_axolotl_yaml(text: str, field: str = "config", to_run: bool = False) -> tuple[Any, list[Problem]]:
    """The parsed config and no problem, or None and why not: CF-003 for text that is no YAML, CF-003a for YAML that
    is not a usable Axolotl config (too big, anchors, odd values, keys that run code or leave the run's folder; and,
    ``to_run``, what a run needs filled in: its one dataset entry and type)."""
    if not isinstance(text, str):
        return None, [Problem(rules.CONFIG_YAML, f"an Axolotl config is YAML text, got {type(text).__name__}", field)]
    if len(text) > MAX_CONFIG_CHARS:
        return None, [
            Problem(rules.AXOLOTL_CONFIG_SAFE, f"the Axolotl config is {len(text):,} characters long; at most {MAX_CONFIG_CHARS:,}", field)
        ]
    try:
        if problem := _shape_problem(text):
            return None, [Problem(rules.AXOLOTL_CONFIG_SAFE, f"the Axolotl config {problem}", field)]
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return None, [Problem(rules.CONFIG_YAML, f"config is not valid YAML: {str(error)[:500]}", field)]
    if values is None:
        return None, [Problem(rules.CONFIG_YAML, "config is empty; give the Axolotl settings as YAML", field)]
    if problem := _plain_problem(values, ""):
        return None, [Problem(rules.AXOLOTL_CONFIG_SAFE, problem, field)]
    found = axolotl_config_problems(values, to_run=to_run)
    problems = [Problem(rules.AXOLOTL_CONFIG_SAFE, f"{where} {why}", where) for where, why in found]
    return (None, problems) if problems else (values, [])


def stored_axolotl_values(record: ConfigRecord, field: str) -> tuple[dict[str, Any] | None, list[Problem]]:
    """A stored Axolotl config read again as the hostile text it may be, its problems named by the request's ``field``."""
    values, problems = read_axolotl_yaml(record.config, field, to_run=True)
    named = record.name or record.id
    return values, [Problem(p.rule, f"{field} '{named}': {p.message}", p.field) for p in problems]
