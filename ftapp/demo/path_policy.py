"""Which server paths a request may name. A shared or network-exposed app must not let a visitor
read the host's files by typing a path: there, only uploads (and folders the operator allowed) count."""

from __future__ import annotations

from pathlib import Path

from ftapp.errors import Problem
from ftapp.home_paths import inside
from ftapp.rules import Rule
from ftapp.settings import Settings


def path_problem(settings: Settings, location: str | Path, rule: Rule, field: str, uploads_only: bool = False) -> Problem | None:
    """``uploads_only``: a demo visitor's request, for whom even the home (other visitors' files) is off limits."""
    if settings.allowed_roots is None and not uploads_only:
        return None
    # The app's own files (the demo kit) count, except for a demo visitor.
    roots = tuple(settings.allowed_roots or ()) if uploads_only else (settings.home, *(settings.allowed_roots or ()))
    if inside(location, roots) is not None:  # the one containment check (ftapp.home_paths), symlinks followed
        return None
    return Problem(rule, f"{location} is outside the folders this shared app may read; upload the file instead", field)
