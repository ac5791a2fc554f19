"""Which server paths a request may name. A shared or network-exposed app must not let a visitor
read the host's files by typing a path: there, only uploads (and folders the operator allowed) count."""

from __future__ import annotations

from pathlib import Path

from ftapp.errors import Problem
from ftapp.settings import Settings


def path_problem(settings: Settings, location: str | Path, rule_id: str, field: str) -> Problem | None:
    if settings.allowed_roots is None:
        return None
    path = Path(location).expanduser().resolve()
    roots = (settings.home, *settings.allowed_roots)  # the app's own files (the demo kit) always count
    if any(path.is_relative_to(Path(root).resolve()) for root in roots):
        return None
    return Problem(rule_id, f"{location} is outside the folders this shared app may read; upload the file instead", field)
