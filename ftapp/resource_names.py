"""The names users give registry rows: one rule per kind, used by every entry point that names one.

An adapter's name is also its run's name, a model's name after a full fine-tune, a job name in a
cluster bundle's scripts and a label in every table: letters, digits and '-' only, 1-64 characters
(FT-002 when a run names it, AD-001 when an adapter is registered). Other names (datasets, models,
prompts) are free text shown in tables, bounded in length and kept to one printable line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ftapp.errors import Problem
from ftapp.number_bounds import shown_value

if TYPE_CHECKING:  # rules.py imports this module for its texts
    from ftapp.rules import Rule

ADAPTER_NAME_MAX = 64
ADAPTER_NAME_PATTERN = "^[a-zA-Z0-9-]+$"
ADAPTER_NAME_RULE = f"matches {ADAPTER_NAME_PATTERN}, 1-{ADAPTER_NAME_MAX} characters"
_ADAPTER_NAME = re.compile(f"[a-zA-Z0-9-]{{1,{ADAPTER_NAME_MAX}}}")

NAME_MAX = 200
NAME_RULE = f"1-{NAME_MAX} characters on one line (no control characters)"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Descriptions are free text of any lines; a request body has no size limit, so without one a visitor fills the database.
DESCRIPTION_MAX = 10_000
DESCRIPTION_RULE = f"at most {DESCRIPTION_MAX:,} characters"


def is_adapter_name(name: str | None) -> bool:
    return isinstance(name, str) and _ADAPTER_NAME.fullmatch(name) is not None


def adapter_name_problem(rule: Rule, name: str | None, field: str) -> Problem | None:
    """The one adapter-name rule (``fullmatch``: a trailing newline does not slip past ``$``)."""
    if is_adapter_name(name):
        return None
    return Problem(
        rule, f"{field} must match {ADAPTER_NAME_PATTERN} and be 1-{ADAPTER_NAME_MAX} characters (got {shown_value(name)})", field
    )


def description_problem(rule: Rule, description: str | None) -> Problem | None:
    if description is None or len(description) <= DESCRIPTION_MAX:
        return None
    return Problem(rule, f"description is {len(description):,} characters long; at most {DESCRIPTION_MAX:,}", "description")


def name_problem(rule: Rule, name: str, field: str = "name") -> Problem | None:
    """A free-text name (already stripped): required, at most NAME_MAX characters, one printable line."""
    if not name:
        return Problem(rule, f"{field} is required", field)
    if len(name) > NAME_MAX:
        return Problem(rule, f"{field} is {len(name):,} characters long; at most {NAME_MAX}", field)
    if _CONTROL.search(name):
        return Problem(rule, f"{field} may not hold control characters such as newlines (got {shown_value(name)})", field)
    return None
